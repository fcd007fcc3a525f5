"""Enforce ``max_message_size`` inside wsproto's frame decoder.

wsproto hands payload to its extensions as it arrives and tells them each
frame header before any payload is read, which is the earliest point at which
a too-large message can be refused. This extension is never negotiated with
the peer; it is appended to the negotiated ones so that it sees payload after
any decompression.
"""

from __future__ import annotations

from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

_NO_RSV_BITS = RsvBits(False, False, False)


class MessageSizeLimit(Extension):
    """Fail the connection with 1009 once a message crosses ``max_size`` bytes."""

    name = "trio-ws-message-size-limit"

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        #: The text of the last violation, sent as the close reason.
        self.violation: str | None = None
        self._received = 0
        self._in_control_frame = False

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool:
        return False

    def _too_big(self, size: int) -> CloseReason:
        self.violation = f"message of at least {size} bytes exceeds limit of {self.max_size}"
        return CloseReason.MESSAGE_TOO_BIG

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
        if opcode is not Opcode.CONTINUATION:
            self._received = 0
        # A frame with a reserved bit set is compressed (its inflated size is
        # unknown yet) or invalid (wsproto rejects it with 1002 right after).
        announced = self._received + payload_length
        if not any(rsv) and announced > self.max_size:
            return self._too_big(announced)
        return _NO_RSV_BITS

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._in_control_frame:
            self._received += len(data)
            if self._received > self.max_size:
                return self._too_big(self._received)
        return data
