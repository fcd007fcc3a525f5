"""Fragmented data messages on the fast branch, sans-I/O.

A message sent with ``send_message_stream`` arrives as a run of data frames:
a first text or binary frame without FIN, continuation frames, and a final
one. wsproto decodes such frames several microseconds of Python at a time
and unmasks them byte by byte; here an uncompressed fragmented message is
decoded chunk by chunk instead, as its bytes arrive, so a streamed message
moves at close to the speed of whole ones, with memory bounded by one read.
A compressed one (RSV1 on its first frame) is inflated piece by piece too,
by the connection's decompressor, in chunks of bounded size
(:class:`trio_ws.core.inflater.MessageInflater`).

:class:`FragmentedMessage` holds the state of one such message and applies
the rules wsproto would (size limit, after decompression when compressed;
fragment count; UTF-8 of text); the connection's reader does the I/O and
decides which frames come here: see :func:`fragment_kind`. Every frame that
breaks a rule this module does not check stays with wsproto.
"""

from __future__ import annotations

import codecs
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING

from ..close_codes import (
    INVALID_FRAME_PAYLOAD_DATA,
    MESSAGE_TOO_BIG,
    POLICY_VIOLATION,
    PROTOCOL_ERROR,
)
from .events import Chunk
from .events import Violation as ViolationEvent
from .frames import CONTINUATION, OPCODE_TEXT
from .size_limit import max_fragments

if TYPE_CHECKING:
    from .inflater import MessageInflater

#: ``(close code, reason)``: what the peer did wrong.
Violation = tuple[int, str]

_FIN = 0x80
_RSV1 = 0x40
_MASKED = 0x80
_LENGTH = 0x7F
_LENGTH_TOP_BIT = 1 << 63

#: What :func:`fragment_kind` answers.
START = 1  # the first frame of a fragmented message (text or binary, no FIN)
CONTINUE = 2  # a continuation frame, final or not
NEW_DATA = 3  # a text or binary frame while a message is in progress: 1002


def fragment_kind(
    data: bytes | bytearray,
    pos: int,
    header: int,
    size: int,
    *,
    masked: bool,
    in_progress: bool,
    compressed: bool = False,
) -> int | None:
    """How the frame at *data[pos:]* (a *header* and *size* bytes in all)
    takes part in a fragmented message; *in_progress*: one has started here;
    *compressed*: permessage-deflate was negotiated, so a first frame may
    carry RSV1 (see :func:`is_compressed`).

    ``None`` if the frame is not for this module: control frames, frames
    with RSV bits other than that one (violations), masked the wrong way or
    with a length not in its shortest form or a 64-bit length with its top
    bit set (wsproto reports those as protocol errors), final
    text or binary frames (whole messages), and continuation frames with no
    message in progress. A text or binary frame during a message is
    :data:`NEW_DATA` whatever else is wrong with it.
    """
    first, second = data[pos], data[pos + 1]
    opcode = first & 0x0F
    if in_progress and opcode in (0x1, 0x2):
        return NEW_DATA
    payload = size - header
    allowed = _RSV1 if compressed and opcode != CONTINUATION else 0
    if (
        first & 0x70 & ~allowed
        or opcode > 2
        or bool(second & _MASKED) is not masked
        or (payload < 126) is not ((second & _LENGTH) < 126)
        or (payload < 0x10000) is not ((second & _LENGTH) < 127)
        or payload >= _LENGTH_TOP_BIT  # RFC 6455 5.2: the top bit must be 0
    ):
        return None
    if opcode == CONTINUATION:
        return CONTINUE if in_progress else None
    return None if first & _FIN else START


def is_compressed(data: bytes | bytearray, pos: int) -> bool:
    """Whether the frame at *data[pos:]* has RSV1 set: the first frame of a
    compressed message, once :func:`fragment_kind` has said :data:`START`."""
    return bool(data[pos] & _RSV1)


class FragmentedMessage:
    """One fragmented message being decoded, chunk by chunk.

    The reader calls :meth:`frame` for each frame header, then :meth:`chunks`
    (or, for an uncompressed message, :meth:`payload`) for each piece of
    that frame's payload as it arrives (already unmasked), and learns the
    message's end from *final*. A compressed message takes the *inflater*
    the connection's deflate extension made for it.
    """

    __slots__ = ("_decoder", "_fragments", "_inflater", "_max_size", "finished", "size", "text")

    def __init__(self, opcode: int, inflater: MessageInflater | None = None) -> None:
        #: Whether the message is text (``str`` chunks) or binary.
        self.text = opcode == OPCODE_TEXT
        self._decoder = codecs.getincrementaldecoder("utf-8")() if self.text else None
        self._inflater = inflater
        #: Payload bytes announced so far, inflated when compressed (the
        #: message's size once it ends).
        self.size = 0
        self._fragments = 0
        self._max_size = 0
        #: Whether the last chunk :meth:`chunks` gave ended the message.
        self.finished = False

    def frame(self, payload_size: int, max_size: int) -> Violation | None:
        """Check a frame of *payload_size* bytes before reading any of it:
        the message may not cross *max_size* bytes (1009, refused before the
        payload is read, or for a compressed message as soon as inflating
        crosses it) nor arrive in more fragments than its limit allows
        (1008)."""
        self._fragments += 1
        self._max_size = max_size
        if self._fragments > max_fragments(max_size):
            return POLICY_VIOLATION, f"message has more than {max_fragments(max_size)} fragments"
        if self._inflater is not None:
            return None  # its size is known only once inflated
        total = self.size + payload_size
        if total > max_size:
            return MESSAGE_TOO_BIG, f"message of at least {total} bytes exceeds limit of {max_size}"
        self.size = total
        return None

    def chunks(self, piece: bytes | bytearray, final: bool) -> Iterator[str | bytes | Violation]:
        """The chunks *piece* of payload makes, as :meth:`payload` says,
        lazily: a compressed piece is inflated one bounded chunk per step,
        so the caller can hand each on before the next is made. After the
        chunk that ends the message, :attr:`finished` is true. A violation
        ends the iteration."""
        inflater = self._inflater
        if inflater is None:
            self.finished = final
            yield self.payload(piece, final)
            return
        for output in inflater.chunks(piece, final, self._max_size):
            if isinstance(output, tuple):
                yield output
                return
            self.size = inflater.size
            self.finished = inflater.finished
            if self._decoder is None:
                yield output
                continue
            try:
                yield self._decoder.decode(output, inflater.finished)
            except UnicodeDecodeError:
                yield INVALID_FRAME_PAYLOAD_DATA, "invalid UTF-8 in a text message"
                return

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


def fragment_events(
    message: FragmentedMessage, piece: bytes | bytearray, final: bool
) -> Generator[Chunk | ViolationEvent, None, bool]:
    """The events of one *piece* of a fragmented message's payload (*final*:
    its last); ``False`` once a violation ended them. A compressed piece
    inflates lazily, one bounded chunk per event, so nothing is inflated
    ahead of what the consumer takes."""
    for chunk in message.chunks(piece, final):
        if isinstance(chunk, tuple):
            yield ViolationEvent(*chunk)
            return False
        if chunk or message.finished:
            yield Chunk(chunk, message.finished)
    return True
