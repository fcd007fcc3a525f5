"""An independent model of what a correct endpoint makes of a byte stream.

:func:`expect` reads the frames a peer sent, as RFC 6455 (and RFC 7692 for
permessage-deflate) says an endpoint must, and returns the acceptable
outcomes: the messages delivered, the pings to answer, and how the
connection ends (which close codes, an echoed Close, or EOF).

It shares no logic with trio_ws. Where trio_ws documents a policy of its own
(the limit on frames per message), the model restates the documented rule
and reads only trio_ws's public *settings*, never its code.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from trio_ws.options import BYTES_PER_FRAGMENT, MIN_FRAGMENTS

from ..support.codec import BINARY, CLOSE, CONT, DATA_OPCODES, KNOWN_OPCODES, PING, TEXT, mask

#: ``max_message_size`` of the trio_ws side, small so that fuzzing reaches 1009.
MAX_SIZE = 256


def max_fragments(max_size: int) -> int:
    """trio_ws's documented policy (``trio_ws/options.py``): a message may
    arrive in at most one frame per ``BYTES_PER_FRAGMENT`` bytes of its size
    limit, and never fewer than ``MIN_FRAGMENTS``; beyond that it is refused
    with 1008 (policy violation)."""
    return max(MIN_FRAGMENTS, max_size // BYTES_PER_FRAGMENT)


#: Frames per message the trio_ws side accepts at ``MAX_SIZE``.
FRAGMENT_LIMIT = max_fragments(MAX_SIZE)

#: Close codes a peer may send (RFC 6455 7.4.1/7.4.2): they must be echoed.
VALID_CLOSE_CODES = frozenset([1000, 1001, 1002, 1003, *range(1007, 1012), *range(3000, 5000)])
#: Registered with IANA after RFC 6455; accepting or refusing them is both fine.
AMBIGUOUS_CLOSE_CODES = frozenset([1012, 1013, 1014])

# ================================================================ UTF-8 model


class Utf8:
    """An incremental UTF-8 validator (RFC 3629), failing at the first bad byte."""

    def __init__(self) -> None:
        self.need = 0
        self.lo, self.hi = 0x80, 0xBF

    def feed(self, data: bytes) -> bool:
        """False as soon as *data* makes the stream invalid."""
        for b in data:
            if self.need:
                if not self.lo <= b <= self.hi:
                    return False
                self.need -= 1
                self.lo, self.hi = 0x80, 0xBF
            elif b < 0x80:
                pass
            elif 0xC2 <= b <= 0xDF:
                self.need = 1
            elif b == 0xE0:
                self.need, self.lo = 2, 0xA0
            elif 0xE1 <= b <= 0xEF:
                self.need = 2
                if b == 0xED:
                    self.hi = 0x9F
            elif b == 0xF0:
                self.need, self.lo = 3, 0x90
            elif 0xF1 <= b <= 0xF3:
                self.need = 3
            elif b == 0xF4:
                self.need, self.hi = 3, 0x8F
            else:
                return False
        return True

    @property
    def complete(self) -> bool:
        return self.need == 0


def valid_utf8(data: bytes) -> bool:
    v = Utf8()
    return v.feed(data) and v.complete


# ============================================================ the RFC oracle


@dataclass
class Expectation:
    """What RFC 6455 says an endpoint must make of a byte stream.

    The endpoint ends in one of three ways; several may be acceptable when
    the RFC leaves the choice open (for instance which of two violations in
    one frame header to report, or whether to fail on a truncated frame whose
    received part is already invalid).
    """

    #: Complete messages, before the end, as ``(opcode, payload)``.
    messages: list[tuple[int, bytes]] = field(default_factory=list)
    #: Payloads of the pings before the end: each deserves a pong.
    pings: list[bytes] = field(default_factory=list)
    #: Fail the connection with one of these close codes.
    violation: frozenset[int] = frozenset()
    #: The peer started the closing handshake with this code (None: no code).
    close: bool = False
    close_code: int | None = None
    #: The stream just ended (TCP EOF); the endpoint sees 1006.
    eof: bool = False
    #: Human-readable account of the decisive point, for failure messages.
    why: str = ""
    #: Offset just after the peer's Close frame (when ``close``).
    end_pos: int = 0
    #: The model cannot tell: any conforming ending will do.
    anything: bool = False

    def sent_after_close(self, data: bytes) -> bool:
        """Did the peer break RFC 6455 5.5.1 by sending bytes after its Close?"""
        return self.close and self.end_pos < len(data)

    def describe(self) -> str:
        ends = []
        if self.violation:
            ends.append(f"fail with {sorted(self.violation)}")
        if self.close:
            ends.append(f"echo close {self.close_code}")
        if self.eof:
            ends.append("EOF (1006)")
        return f"{' or '.join(ends)} after {len(self.messages)} msgs ({self.why})"


def sent_after_close(alternatives: list[Expectation], data: bytes) -> bool:
    return any(exp.sent_after_close(data) for exp in alternatives)


@dataclass(frozen=True)
class Inflate:
    """permessage-deflate as negotiated, for the direction the model reads."""

    wbits: int = 15  # the sender's LZ77 window
    no_context: bool = False  # the sender resets its compressor every message


def expect(
    data: bytes, *, masked: bool, max_size: int = MAX_SIZE, deflate: Inflate | None = None
) -> list[Expectation]:
    """Model an RFC 6455 endpoint reading *data*, then EOF.

    *masked* says whether frames must be masked (True when the reader is a
    server). Messages larger than *max_size* (after decompression) must fail
    with 1009. *deflate* is permessage-deflate (RFC 7692), if negotiated.

    Returns the acceptable outcomes, the strictest first. RFC 6455 (8.1)
    says invalid UTF-8 MUST fail the connection but not how soon: failing at
    the first invalid byte is strict, and an endpoint may also notice later,
    up to the end of the message (answering the pings in between). The same
    goes for a compressed message that does not inflate or inflates too big.
    """
    alternatives: list[Expectation] = []
    messages: list[tuple[int, bytes]] = []
    pings: list[bytes] = []
    pos = 0
    msg_opcode: int | None = None
    msg = bytearray()
    utf8 = Utf8()
    compressed = False  # the message being received has RSV1 set
    fragments = 0  # frames of the message being received
    inflater = zlib.decompressobj(-(deflate.wbits if deflate else 15))
    pending: set[int] = set()  # the message is already bad: codes it may still get

    def outcome(codes: set[int], why: str, *, truncated: bool = False) -> Expectation:
        return Expectation(
            list(messages),
            list(pings),
            violation=frozenset(codes | pending),
            eof=truncated or not codes,
            why=why + (f" (message already bad: {sorted(pending)})" if pending else ""),
        )

    def done(exp: Expectation) -> list[Expectation]:
        alternatives.append(exp)
        return alternatives

    def bad_payload(code: int, why: str, truncated: bool, fin: bool) -> list[Expectation] | None:
        """Invalid data in a message: fail now, or (allowed) later in the message."""
        exp = outcome({code}, why, truncated=truncated)
        if fin or truncated:
            return done(exp)
        alternatives.append(exp)
        pending.add(code)
        return None

    while True:
        if pending:
            alternatives.append(outcome(set(), f"late failure before {pos}"))
            alternatives[-1].eof = False
        if pos == len(data):
            return done(outcome(set(), "stream ended between frames"))
        codes: set[int] = set()
        b0 = data[pos]
        fin, rsv, opcode = bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F
        control = opcode >= 8
        rsv1_ok = deflate is not None and opcode in (TEXT, BINARY)
        if rsv & 0b011 or (rsv & 0b100 and not rsv1_ok):
            codes.add(1002)
        if opcode not in KNOWN_OPCODES:
            codes.add(1002)
        if control and not fin:
            codes.add(1002)
        # Out-of-order data frames: known from the first byte, though an
        # endpoint may wait for the payload to see them.
        out_of_order = (opcode == CONT and msg_opcode is None) or (
            opcode in (TEXT, BINARY) and msg_opcode is not None
        )
        if out_of_order:
            codes.add(1002)
        if pos + 2 > len(data):
            return done(outcome(codes, f"truncated header at {pos}", truncated=True))
        b1 = data[pos + 1]
        has_mask, n = bool(b1 & 0x80), b1 & 0x7F
        if has_mask != masked:
            codes.add(1002)
        if control and n > 125:
            codes.add(1002)
        head = 2
        if n == 126:
            if pos + 4 > len(data):
                return done(outcome(codes, f"truncated 16-bit length at {pos}", truncated=True))
            (n,) = struct.unpack("!H", data[pos + 2 : pos + 4])
            head = 4
            if n < 126:
                codes.add(1002)
        elif n == 127:
            if pos + 10 > len(data):
                return done(outcome(codes, f"truncated 64-bit length at {pos}", truncated=True))
            (n,) = struct.unpack("!Q", data[pos + 2 : pos + 10])
            head = 10
            if n < 1 << 16 or n >> 63:
                codes.add(1002)
        if opcode in DATA_OPCODES:
            in_message = opcode == CONT and msg_opcode is not None
            will_inflate = (in_message and compressed) or (opcode != CONT and rsv & 0b100)
            so_far = len(msg) if in_message else 0
            if not will_inflate and not (in_message and pending) and so_far + n > max_size:
                codes.add(1009)
            count = fragments + 1 if in_message else 1
            if count > max_fragments(max_size):
                codes |= {1008, 1009}  # a policy on fragments: either code says it
        if codes:
            # Everything wrong with this header is known once it is here; an
            # endpoint may report it before or after reading the masking key
            # (and an out-of-order frame, with its first payload byte).
            need = pos + head + (4 if has_mask else 0)
            if out_of_order and codes == {1002} and n:
                need += 1
            why = f"bad header at {pos}: {data[pos : pos + head].hex()}"
            return done(outcome(codes, why, truncated=need > len(data)))
        if has_mask:
            if pos + head + 4 > len(data):
                return done(outcome(set(), f"truncated masking key at {pos}", truncated=True))
            key = data[pos + head : pos + head + 4]
            head += 4
        start = pos + head
        payload = data[start : start + n]
        truncated = len(payload) < n
        if has_mask:
            payload = mask(payload, key)

        if control:
            if opcode == CLOSE:
                codes = _close_violations(payload, complete=not truncated)
                if truncated:
                    return done(outcome(codes, f"truncated close frame at {pos}", truncated=True))
                if codes:
                    why = f"invalid close payload {payload[:8].hex()} at {pos}"
                    return done(outcome(codes, why))
                exp = outcome(set(), f"close frame at {pos}")
                exp.eof = False
                exp.close = True
                exp.close_code = struct.unpack("!H", payload[:2])[0] if payload else None
                exp.end_pos = start + n
                if exp.close_code in AMBIGUOUS_CLOSE_CODES:
                    exp.violation |= {1002}
                return done(exp)
            if truncated:
                return done(outcome(set(), f"truncated control frame at {pos}", truncated=True))
            if opcode == PING:
                pings.append(payload)
            pos = start + n
            continue

        fragments += 1
        if opcode != CONT:
            msg_opcode, msg, utf8 = opcode, bytearray(), Utf8()
            fragments = 1
            compressed = bool(rsv & 0b100)
            if compressed and deflate is not None and deflate.no_context:
                inflater = zlib.decompressobj(-deflate.wbits)
        if pending:  # the endpoint may still be reading the rest of a bad message
            if truncated:
                return done(outcome(set(), f"truncated data frame at {pos}", truncated=True))
            if fin:
                return done(outcome(set(), f"bad message ends at {pos}"))
            pos = start + n
            continue
        if compressed:
            tail = b"\x00\x00\xff\xff" if fin and not truncated else b""
            try:
                out = inflater.decompress(payload, max_size + 1 - len(msg))
                if tail and not inflater.unconsumed_tail and len(msg) + len(out) <= max_size:
                    out += inflater.decompress(tail, max_size + 1 - len(msg) - len(out))
            except zlib.error as exc:
                failed = bad_payload(1007, f"deflate error at {pos}: {exc}", truncated, fin)
                if failed:
                    return failed
                pos = start + n
                continue
            if inflater.eof:
                # A final deflate block: whether what follows may reuse the
                # stream is not settled by RFC 7692; stop predicting here.
                exp = outcome(set(), f"final deflate block at {pos}")
                exp.anything = True
                return done(exp)
            if len(msg) + len(out) > max_size:
                failed = bad_payload(1009, f"inflated past {max_size} at {pos}", truncated, fin)
                if failed:
                    return failed
                pos = start + n
                continue
            payload = out
        msg += payload
        if msg_opcode == TEXT:
            if not utf8.feed(payload):
                failed = bad_payload(1007, f"invalid UTF-8 in frame at {pos}", truncated, fin)
                if failed:
                    return failed
                pos = start + n
                continue
            if fin and not truncated and not utf8.complete:
                return done(outcome({1007}, f"text message ends mid-character at {pos}"))
        if truncated:
            return done(outcome(set(), f"truncated data frame at {pos}", truncated=True))
        if fin:
            assert msg_opcode is not None
            messages.append((msg_opcode, bytes(msg)))
            msg_opcode = None
        pos = start + n


def _close_violations(payload: bytes, *, complete: bool) -> set[int]:
    if complete and len(payload) == 1:
        return {1002}
    if len(payload) >= 2:
        (code,) = struct.unpack("!H", payload[:2])
        if code not in VALID_CLOSE_CODES and code not in AMBIGUOUS_CLOSE_CODES:
            return {1002}
        # 1012-1014 may be refused (1002) before or instead of the reason.
        also = {1002} if code in AMBIGUOUS_CLOSE_CODES else set()
        if complete and not valid_utf8(payload[2:]):
            return {1007} | also
        if not complete and not Utf8().feed(payload[2:]):
            return {1007} | also
    return set()
