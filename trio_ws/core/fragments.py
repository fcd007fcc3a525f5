"""Fragmented data messages on the fast branch, sans-I/O.

A message sent with ``send_message_stream`` arrives as a run of data frames:
a first text or binary frame without FIN, continuation frames, and a final
one. wsproto decodes such frames several microseconds of Python at a time
and unmasks them byte by byte; here an uncompressed fragmented message is
decoded chunk by chunk instead, as its bytes arrive, so a streamed message
moves at close to the speed of whole ones, with memory bounded by one read.

:class:`FragmentedMessage` holds the state of one such message and applies
the rules wsproto would (size limit, fragment count, UTF-8 of text); the
connection's reader does the I/O and decides which frames come here: see
:func:`fragment_kind`. Compressed fragmented messages, and every frame that
breaks a rule this module does not check, stay with wsproto.
"""

from __future__ import annotations

import codecs

from ..close_codes import (
    INVALID_FRAME_PAYLOAD_DATA,
    MESSAGE_TOO_BIG,
    POLICY_VIOLATION,
    PROTOCOL_ERROR,
)
from .frames import CONTINUATION, OPCODE_TEXT
from .size_limit import max_fragments

#: ``(close code, reason)``: what the peer did wrong.
Violation = tuple[int, str]

_FIN = 0x80
_MASKED = 0x80
_LENGTH = 0x7F

#: What :func:`fragment_kind` answers.
START = 1  # the first frame of a fragmented message (text or binary, no FIN)
CONTINUE = 2  # a continuation frame, final or not
NEW_DATA = 3  # a text or binary frame while a message is in progress: 1002


def fragment_kind(
    data: bytes | bytearray, pos: int, header: int, size: int, *, masked: bool, in_progress: bool
) -> int | None:
    """How the frame at *data[pos:]* (a *header* and *size* bytes in all)
    takes part in a fragmented message; *in_progress*: one has started here.

    ``None`` if the frame is not for this module: control frames, frames
    with RSV bits (compressed, or a violation), masked the wrong way or
    with a length not in its shortest form (wsproto reports those), final
    text or binary frames (whole messages), and continuation frames with no
    message in progress. A text or binary frame during a message is
    :data:`NEW_DATA` whatever else is wrong with it.
    """
    first, second = data[pos], data[pos + 1]
    opcode = first & 0x0F
    if in_progress and opcode in (0x1, 0x2):
        return NEW_DATA
    payload = size - header
    if (
        first & 0x70
        or opcode > 2
        or bool(second & _MASKED) is not masked
        or (payload < 126) is not ((second & _LENGTH) < 126)
        or (payload < 0x10000) is not ((second & _LENGTH) < 127)
    ):
        return None
    if opcode == CONTINUATION:
        return CONTINUE if in_progress else None
    return None if first & _FIN else START


class FragmentedMessage:
    """One fragmented message being decoded, chunk by chunk.

    The reader calls :meth:`frame` for each frame header, then
    :meth:`payload` for each piece of that frame's payload as it arrives
    (already unmasked), and learns the message's end from *final*.
    """

    __slots__ = ("_decoder", "_fragments", "size", "text")

    def __init__(self, opcode: int) -> None:
        #: Whether the message is text (``str`` chunks) or binary.
        self.text = opcode == OPCODE_TEXT
        self._decoder = codecs.getincrementaldecoder("utf-8")() if self.text else None
        #: Payload bytes announced so far (the message's size once it ends).
        self.size = 0
        self._fragments = 0

    def frame(self, payload_size: int, max_size: int) -> Violation | None:
        """Check a frame of *payload_size* bytes before reading any of it:
        the message may not cross *max_size* bytes (1009, refused before the
        payload is read) nor arrive in more fragments than its limit
        allows (1008)."""
        self._fragments += 1
        if self._fragments > max_fragments(max_size):
            return POLICY_VIOLATION, f"message has more than {max_fragments(max_size)} fragments"
        total = self.size + payload_size
        if total > max_size:
            return MESSAGE_TOO_BIG, f"message of at least {total} bytes exceeds limit of {max_size}"
        self.size = total
        return None

    def payload(self, piece: bytes | bytearray, final: bool) -> str | bytes | Violation:
        """The chunk *piece* of payload makes: ``bytes``, or ``str`` for
        text (a character split across pieces comes with the next one).
        *final*: this piece ends the message. Invalid UTF-8 is 1007."""
        if self._decoder is None:
            return bytes(piece)
        try:
            return self._decoder.decode(piece, final)
        except UnicodeDecodeError:
            return INVALID_FRAME_PAYLOAD_DATA, "invalid UTF-8 in a text message"


def new_data_violation() -> Violation:
    """A text or binary frame arrived while a fragmented message was in progress."""
    return PROTOCOL_ERROR, "new data frame while a fragmented message is in progress"
