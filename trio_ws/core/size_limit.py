"""Enforce ``max_message_size`` inside wsproto's frame decoder.

wsproto hands payload to its extensions as it arrives and tells them each
frame header before any payload is read, which is the earliest point at which
a too-large message can be refused. This extension is never negotiated with
the peer; it is appended to the negotiated ones so that it sees payload after
any decompression (the deflate extension also asks it for its budget, so it
never inflates more than the message may still grow).
"""

from __future__ import annotations

from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from ..options import BYTES_PER_FRAGMENT, MIN_FRAGMENTS

_NO_RSV_BITS = RsvBits(False, False, False)


def max_fragments(max_size: int) -> int:
    """Most frames one message may arrive in: one per 64 bytes of its size limit."""
    return max(MIN_FRAGMENTS, max_size // BYTES_PER_FRAGMENT)


class MessageSizeLimit(Extension):
    """Fail the connection with 1009 once a message crosses ``max_size`` bytes."""

    name = "trio-ws-message-size-limit"

    def __init__(self, max_size: int) -> None:
        #: The limit for the current message; a message stream may change it.
        self.max_size = max_size
        self._fragments = 0
        self._in_message = False  # a data message has begun and not yet ended
        #: The text of the last violation, sent as the close reason.
        self.violation: str | None = None
        self._received = 0
        self._compressed = False
        self._in_control_frame = False

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool:
        return False

    @property
    def in_message(self) -> bool:
        """Whether wsproto is in the middle of a data message (its first
        frame decoded, its last not yet)."""
        return self._in_message

    def remaining(self) -> int:
        """Bytes the current message may still grow by."""
        return max(0, self.max_size - self._received)

    def overflow(self, size: int) -> CloseReason:
        """Record that the current message grew past the limit by *size* bytes."""
        total = self._received + size
        self.violation = f"message of at least {total} bytes exceeds limit of {self.max_size}"
        return CloseReason.MESSAGE_TOO_BIG

    def account(self, size: int) -> CloseReason | None:
        """Count *size* more bytes of the current message."""
        if self._received + size > self.max_size:
            return self.overflow(size)
        self._received += size
        return None

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        self._in_control_frame = opcode.iscontrol()
        if self._in_control_frame:
            return _NO_RSV_BITS
        if opcode is Opcode.CONTINUATION and not self._in_message:
            return _NO_RSV_BITS  # nothing to continue: wsproto fails it with 1002
        if opcode is not Opcode.CONTINUATION:
            self._in_message = True
            self._received = self._fragments = 0
            # A compressed message's size is known only once inflated.
            self._compressed = any(rsv)
        if not self._compressed and self._received + payload_length > self.max_size:
            return self.overflow(payload_length)
        return _NO_RSV_BITS

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        # Counted here, once per frame: wsproto may call frame_inbound_header
        # twice for one frame (again once a late masking key has arrived).
        if self._in_control_frame or not self._in_message:
            return None
        self._fragments += 1
        if self._fragments > max_fragments(self.max_size):
            # Empty or tiny fragments would cost time and memory without
            # ever reaching the size limit.
            self.violation = f"message has more than {max_fragments(self.max_size)} fragments"
            return CloseReason.POLICY_VIOLATION
        if fin:
            self._in_message = False
        return None

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if self._in_control_frame or not self._in_message:
            return data  # control frames and orphan continuations are not counted
        return self.account(len(data)) or data
