"""permessage-deflate (RFC 7692): negotiation and bounded (de)compression.

The extension plugs into wsproto's frame decoder. Its one departure from a
plain implementation is that inflating never produces more than the message's
remaining size budget (plus one byte, to notice the overflow): a small frame
that would expand to gigabytes is refused with 1009 after at most
``max_message_size + 1`` bytes of output, so a compression bomb costs no
more memory than an honest message of the maximum size.
"""

from __future__ import annotations

import sys
import zlib
from typing import TYPE_CHECKING

from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from ..close_codes import INVALID_FRAME_PAYLOAD_DATA, MESSAGE_TOO_BIG, PROTOCOL_ERROR
from ..options import DeflateOptions
from .inflater import TAIL as _TAIL
from .inflater import MessageInflater, stream_ended

if TYPE_CHECKING:
    from .size_limit import MessageSizeLimit

NAME = "permessage-deflate"
_RSV1 = RsvBits(True, False, False)
_NONE = RsvBits(False, False, False)


class NegotiationError(ValueError):
    """A permessage-deflate offer or answer breaks RFC 7692's rules."""


def parse_offer(text: str) -> tuple[str, dict[str, str | None]]:
    """Split ``name; a=1; b`` into the name and its parameters.

    Raises :class:`NegotiationError` for a repeated parameter.
    """
    name, *raw = (part.strip() for part in text.split(";"))
    params: dict[str, str | None] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if key in params:
            raise NegotiationError(f"parameter {key} repeated")
        params[key] = value.strip().strip('"') if sep else None
    return name.lower(), params


def _bits(value: str | None, *, required: bool) -> int | None:
    if value is None:
        if required:
            raise NegotiationError("window bits parameter needs a value")
        return None
    if not value.isdigit() or not 8 <= int(value) <= 15:
        raise NegotiationError(f"invalid window bits {value!r}")
    return int(value)


def _flag(value: str | None, key: str) -> bool:
    if value is not None:
        raise NegotiationError(f"{key} takes no value")
    return True


_KNOWN = {
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
}


class PerMessageDeflate(Extension):
    """One connection's permessage-deflate state (never shared)."""

    name = NAME

    def __init__(self, options: DeflateOptions, limit: MessageSizeLimit, *, client: bool) -> None:
        self.options = options
        self._limit = limit
        self._client = client
        self._enabled = False
        # Negotiated values, set by offer/accept/finalize.
        self.local_bits = (
            options.client_max_window_bits if client else options.server_max_window_bits
        )
        self.remote_bits = 15
        self.local_no_context = False
        self.remote_no_context = False
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None
        self._inbound_compressed = False  # the current inbound message
        self._in_control_frame = False
        self._skip_next = False
        #: What the peer did wrong, when a frame is refused (wsproto's own
        #: reason would be "error in extension").
        self.violation: str | None = None
        #: Output per input byte of the last inflated message: the reader's
        #: guess at how much work the next compressed bytes will be.
        self.inflate_ratio = 8.0
        self._message_in = self._message_out = 0
        # The outgoing policy for binary data (see should_compress).
        self._binary_compresses = False  # the last binary message compressed well
        self._binary_skips = 0  # binary messages still to send without a probe

    # ------------------------------------------------------------ negotiation

    def enabled(self) -> bool:
        return self._enabled

    def offer(self) -> str:
        """The client's offer: like a browser's, plus what the options ask."""
        o = self.options
        parts = [NAME, "client_max_window_bits"]
        if o.server_max_window_bits < 15:
            parts.append(f"server_max_window_bits={o.server_max_window_bits}")
        if o.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if o.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        return "; ".join(parts)

    def accept(self, offer: str) -> str | None:
        """Server side: the response parameters for *offer*, or None to decline."""
        try:
            _, params = parse_offer(offer)
            if set(params) - _KNOWN:
                return None
            o = self.options
            wanted_server_bits = _bits(
                params.get("server_max_window_bits"), required="server_max_window_bits" in params
            )
            client_bits_allowed = "client_max_window_bits" in params
            client_bits_hint = _bits(params.get("client_max_window_bits"), required=False)
            server_no_context = "server_no_context_takeover" in params and _flag(
                params["server_no_context_takeover"], "server_no_context_takeover"
            )
            client_no_context = "client_no_context_takeover" in params and _flag(
                params["client_no_context_takeover"], "client_no_context_takeover"
            )
        except NegotiationError:
            return None
        if wanted_server_bits == 8:
            return None  # zlib cannot compress with a 256-byte window

        self.local_bits = min(o.server_max_window_bits, wanted_server_bits or 15)
        self.local_no_context = o.server_no_context_takeover or server_no_context
        self.remote_no_context = o.client_no_context_takeover or client_no_context
        answer = [NAME]
        if self.local_no_context:
            answer.append("server_no_context_takeover")
        if self.remote_no_context:
            answer.append("client_no_context_takeover")
        if self.local_bits < 15 or wanted_server_bits is not None:
            answer.append(f"server_max_window_bits={self.local_bits}")
        self.remote_bits = client_bits_hint or 15
        if client_bits_allowed and o.client_max_window_bits < self.remote_bits:
            self.remote_bits = o.client_max_window_bits
            answer.append(f"client_max_window_bits={self.remote_bits}")
        self._enabled = True
        return "; ".join(answer[1:])

    def finalize(self, answer: str) -> None:
        """Client side: apply the server's answer, or raise NegotiationError."""
        name, params = parse_offer(answer)
        if name != NAME or set(params) - _KNOWN:
            raise NegotiationError(f"unexpected extension answer {answer!r}")
        o = self.options
        server_bits = _bits(
            params.get("server_max_window_bits"), required="server_max_window_bits" in params
        )
        client_bits = _bits(
            params.get("client_max_window_bits"), required="client_max_window_bits" in params
        )
        if server_bits is not None and server_bits > o.server_max_window_bits:
            raise NegotiationError("server_max_window_bits larger than we asked")
        if o.server_no_context_takeover and "server_no_context_takeover" not in params:
            raise NegotiationError("server ignored server_no_context_takeover")
        if client_bits == 8:
            raise NegotiationError("client_max_window_bits=8 is not supported by zlib")
        for key in ("server_no_context_takeover", "client_no_context_takeover"):
            if key in params:
                _flag(params[key], key)
        self.remote_bits = server_bits or 15
        self.local_bits = min(o.client_max_window_bits, client_bits or 15)
        self.remote_no_context = "server_no_context_takeover" in params
        self.local_no_context = (
            o.client_no_context_takeover or "client_no_context_takeover" in params
        )
        self._enabled = True

    # ------------------------------------------------------------ inbound

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        self._in_control_frame = opcode.iscontrol()
        if rsv.rsv1 and (self._in_control_frame or opcode is Opcode.CONTINUATION):
            kind = "a control" if self._in_control_frame else "a continuation"
            return self._refuse(PROTOCOL_ERROR, f"RSV1 on {kind} frame (never compressed)")
        if not self._in_control_frame and opcode is not Opcode.CONTINUATION:
            self._inbound_compressed = rsv.rsv1
        return _RSV1

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        if self._decompressor is None:
            self._decompressor = zlib.decompressobj(-self.remote_bits)
        # One byte more than the budget reveals an overflow.
        budget = min(self._limit.remaining() + 1, sys.maxsize)
        if self._decompressor.eof:  # a BFINAL block ended the peer's stream
            return b"" if data is _TAIL else self._refuse(*stream_ended())
        try:
            output = self._decompressor.decompress(data, budget)
        except zlib.error as exc:
            return self._refuse(INVALID_FRAME_PAYLOAD_DATA, f"invalid compressed data: {exc}")
        if self._decompressor.unused_data and data is not _TAIL:
            return self._refuse(*stream_ended())
        self._message_in += len(data)
        self._message_out += len(output)
        if self._decompressor.unconsumed_tail:
            return self._limit.overflow(len(output))
        return output

    def _refuse(self, code: int, reason: str) -> CloseReason:
        self.violation = reason
        return CloseReason(code)

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if self._in_control_frame or not self._inbound_compressed:
            return data
        return self._inflate(data)

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if self._in_control_frame or not fin or not self._inbound_compressed:
            return None
        self._inbound_compressed = False
        tail = self._inflate(_TAIL)
        self.inflate_ratio = max(1.0, self._message_out / max(1, self._message_in))
        self._message_in = self._message_out = 0
        if self.remote_no_context:
            self._decompressor = None
        if isinstance(tail, bytes):
            # wsproto appends this after the extension chain: count it here.
            return self._limit.account(len(tail)) or tail
        return tail

    def inflate_message(
        self, payload: bytes | bytearray | memoryview, text: bool, max_size: int
    ) -> str | bytes | tuple[int, str]:
        """A whole compressed message (one final frame's *payload*), inflated.

        The fast branch's counterpart of the wsproto hooks above, on the same
        decompressor (the context stays right whichever decodes the next
        message). Returns the message, or ``(close code, reason)``: corrupt
        deflate data or UTF-8 (1007), more than *max_size* bytes inflated
        (1009; never more than ``max_size + 1`` are made, so a bomb costs no
        more than an honest message). Safe in a worker thread while nothing
        else inflates.
        """
        if self._decompressor is None:
            self._decompressor = zlib.decompressobj(-self.remote_bits)
        decompressor = self._decompressor
        budget = min(max_size + 1, sys.maxsize)  # one byte more reveals an overflow
        if decompressor.eof:
            return stream_ended()
        try:
            output = decompressor.decompress(payload, budget)
            if decompressor.unused_data:
                return stream_ended()
            if len(output) <= max_size and not decompressor.unconsumed_tail:
                if not decompressor.eof:  # a BFINAL block needs no tail
                    output += decompressor.decompress(_TAIL, budget - len(output))
        except zlib.error as exc:
            return INVALID_FRAME_PAYLOAD_DATA, f"invalid compressed data: {exc}"
        if len(output) > max_size or decompressor.unconsumed_tail:
            return MESSAGE_TOO_BIG, f"message inflates past the limit of {max_size} bytes"
        self.inflate_ratio = max(1.0, len(output) / max(1, len(payload)))
        if self.remote_no_context:
            self._decompressor = None
        if not text:
            return output
        try:
            return output.decode()
        except UnicodeDecodeError:
            return INVALID_FRAME_PAYLOAD_DATA, "invalid UTF-8 in a text message"

    def message_inflater(self, chunk_size: int) -> MessageInflater:
        """An inflater for one compressed fragmented message, on this
        connection's decompressor (see :class:`MessageInflater`)."""
        if self._decompressor is None:
            self._decompressor = zlib.decompressobj(-self.remote_bits)
        return MessageInflater(self._decompressor, chunk_size, self._message_inflated)

    def _message_inflated(self, wire: int, size: int) -> None:
        # A message inflated piece by piece has ended.
        self.inflate_ratio = max(1.0, size / max(1, wire))
        if self.remote_no_context:
            self._decompressor = None

    # ------------------------------------------------------------ outbound

    def should_compress(self, payload: bytes, text: bool) -> bool:
        """Whether compressing *payload* is likely to pay (the sending policy).

        Short messages never gain enough to pay for the CPU; text is always
        compressed. Binary data is probed only while the last binary message
        did not compress: its first ``probe_size`` bytes through a small
        throw-away compressor decide, and after a bad probe
        ``reprobe_interval`` binary messages go out untested. Skipping
        compression never desynchronises the peer: an uncompressed message
        touches neither side's context.
        """
        o = self.options
        if len(payload) < o.min_size:
            return False
        if text or self._binary_compresses:
            return True
        if self._binary_skips:
            self._binary_skips -= 1
            return False
        if len(payload) > o.probe_size:
            # A 1 KiB window: with 512 bytes zlib reaches back only 250 bytes
            # (the window less its lookahead), and misses repeats further apart.
            probe = zlib.compressobj(1, zlib.DEFLATED, -10, 1)
            sample = payload[: o.probe_size]
            if len(probe.compress(sample) + probe.flush()) > o.incompressible_ratio * len(sample):
                self._binary_skips = o.reprobe_interval
                return False
        return True

    def compress_binary(self, data: bytes) -> bytes:
        """:meth:`compress_message` for binary data, watching the ratio it
        achieves: data that stops compressing is probed again next time (see
        :meth:`should_compress`)."""
        output = self.compress_message(data)
        self._binary_compresses = len(output) <= self.options.incompressible_ratio * len(data)
        if not self._binary_compresses:
            self._binary_skips = self.options.reprobe_interval
        return output

    def skip_next_message(self) -> None:
        """Send the next message uncompressed (RSV1 clear), as RFC 7692 allows."""
        self._skip_next = True

    def shared_output_key(self) -> tuple[int, int, int] | None:
        """What our compressed output depends on, if not on earlier messages.

        With ``no_context_takeover`` on our side each message is compressed
        from scratch, so two connections with equal keys produce the same
        bytes for the same message and a broadcast compresses it once for
        both. ``None`` when the output depends on this connection's history.
        """
        if not self.local_no_context:
            return None
        return (self.local_bits, self.options.level, self.options.mem_level)

    def compress_message(self, data: bytes) -> bytes:
        """Compress a whole message (framed by trio_ws, not wsproto).

        Safe to run in a worker thread; the caller must send the result
        before compressing another message.
        """
        return self._compress(data, fin=True)

    def compress_fragment(self, data: bytes, fin: bool) -> bytes:
        """Compress one frame of a fragmented message (*fin*: its last).

        Each frame is sync-flushed, so the peer can inflate it on arrival.
        """
        return self._compress(data, fin)

    def _compress(self, data: bytes, fin: bool) -> bytes:
        if self._compressor is None:
            o = self.options
            self._compressor = zlib.compressobj(
                o.level, zlib.DEFLATED, -self.local_bits, o.mem_level
            )
        # A sync flush per frame: each frame's data can be inflated on arrival.
        output = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        if fin:
            if output.endswith(_TAIL):
                output = output[:-4]
            if self.local_no_context:
                self._compressor = None
        return output

    def frame_outbound(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        data: bytes,
        fin: bool,
    ) -> tuple[RsvBits, bytes]:
        if opcode.iscontrol():
            return rsv, data
        first = opcode is not Opcode.CONTINUATION
        if first:
            self._outbound_compressed = not self._skip_next
            self._skip_next = False
        if not self._outbound_compressed:
            return rsv, data
        payload = self._compress(data, fin)
        return (RsvBits(True, rsv.rsv2, rsv.rsv3) if first else rsv), payload

    _outbound_compressed = False
