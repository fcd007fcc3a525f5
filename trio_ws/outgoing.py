"""A message encoded once, for sending to many connections.

Broadcasting the same message to thousands of connections must not encode it
thousands of times. A :class:`PreparedMessage` holds the payload and, made on
first use, the frames it needs: the uncompressed frame, which every
connection without compression shares byte for byte (server frames are not
masked), and one compressed frame per set of compression parameters whose
output does not depend on a connection's history (``no_context_takeover``).
A connection whose compressor keeps its context compresses the payload for
itself, through :meth:`PerMessageDeflate.compress_message`, so whatever
policy that method applies applies to broadcasts too.

This module knows nothing of connections: a connection asks for the frame
that suits its own compression state.
"""

from __future__ import annotations

from collections.abc import Hashable

from .core.deflate import PerMessageDeflate
from .core.frames import OPCODE_BINARY, OPCODE_TEXT, encode_message

#: A whole frame, as pieces to write one after the other.
Frame = tuple[bytes, bytes | bytearray]


class PreparedMessage:
    """One text (``str``) or binary (``bytes``) message, encoded once.

    Pass it to :func:`trio_ws.broadcast`, :meth:`trio_ws.Rooms.publish` or
    :meth:`WebSocketConnection.try_send_message` in place of the message to
    reuse its frames across several calls. It is immutable from the
    outside; the frames it caches are never changed once made.
    """

    __slots__ = ("_frames", "_plain", "is_text", "payload")

    def __init__(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.is_text, self.payload = True, message.encode()
        elif isinstance(message, (bytes, bytearray, memoryview)):
            self.is_text, self.payload = False, bytes(message)
        else:
            raise TypeError(f"message must be str or bytes, not {type(message).__name__}")
        self._plain: Frame | None = None
        # At most one entry per distinct set of negotiated parameters.
        self._frames: dict[Hashable, Frame] = {}

    def __len__(self) -> int:
        """The payload's size in bytes, before compression."""
        return len(self.payload)

    @property
    def opcode(self) -> int:
        return OPCODE_TEXT if self.is_text else OPCODE_BINARY

    def frame(self, deflate: PerMessageDeflate | None, *, mask: bool) -> Frame:
        """The frame of this message for a connection compressing with *deflate*.

        ``None`` means uncompressed. A compressed frame advances *deflate*'s
        context unless its parameters make the output context-free, so the
        caller must send every frame it asks for, in order. Masked frames
        (a client's) get a fresh key each time and are never shared.
        """
        if deflate is None:
            if mask:
                return encode_message(self.opcode, self.payload, mask=True)
            if self._plain is None:
                self._plain = encode_message(self.opcode, self.payload)
            return self._plain
        key = None if mask else deflate.shared_output_key()
        if key is not None:
            cached = self._frames.get(key)
            if cached is None:
                cached = self._frames[key] = self._compressed(deflate, mask=False)
            return cached
        return self._compressed(deflate, mask=mask)

    def _compressed(self, deflate: PerMessageDeflate, *, mask: bool) -> Frame:
        payload = deflate.compress_message(self.payload)
        return encode_message(self.opcode, payload, rsv1=True, mask=mask)
