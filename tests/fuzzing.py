"""Shared pieces of the property-based fuzzing of trio_ws.

Used by ``tests/test_fuzz.py`` (short runs, in CI) and by
``benchmarks/fuzz_long.py`` (long runs). Nothing here relies on trio_ws's own
frame or HTTP code: frames are built by hand, and what a correct peer must
answer is computed by an independent model of RFC 6455 (:func:`expect`).

Six properties, each a *strategy* of cases plus a *check* that runs one case
in a fresh ``trio.run`` and raises ``AssertionError`` when trio_ws misbehaves:

``server_heads``
    fuzzed upgrade requests against a trio_ws echo server;
``server_frames``
    fuzzed frame sequences from a raw client against a trio_ws echo server;
``client_frames``
    fuzzed frame sequences from a raw server against a trio_ws client;
``client_heads``
    fuzzed handshake answers from a raw server against a trio_ws client;
``server_deflate``
    compressed, garbage and bomb messages (RFC 7692) against a trio_ws
    echo server with permessage-deflate negotiated;
``server_stream``
    the ``server_frames`` cases against a handler that echoes through the
    streaming API (``get_message_stream``/``send_message_stream``).

Every check also verifies that no unexpected exception reached the
application, that trio_ws logged nothing at ERROR level, that no file
descriptor and no Trio task is left behind and (server side) that the server
still serves a well-behaved client afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import os
import re
import struct
import sys
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio
from hypothesis import strategies as st

import trio_ws
import trio_ws.core.size_limit
import trio_ws.options
from trio_ws import DeflateOptions
from trio_ws.close_codes import NORMAL_CODES

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

HOST = "127.0.0.1"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DATA_OPCODES = (CONT, TEXT, BINARY)
KNOWN_OPCODES = (CONT, TEXT, BINARY, CLOSE, PING, PONG)

#: ``max_message_size`` of the trio_ws side, small so that fuzzing reaches 1009.
MAX_SIZE = 256
#: Seconds the trio_ws side allows for the opening/closing handshakes.
CONNECT_TIMEOUT = 3.0
DISCONNECT_TIMEOUT = 3.0
#: Upper bound of one whole example; running into it means something hung.
CASE_TIMEOUT = 15.0
#: How long we wait for trio_ws's tasks to finish after a connection ended.
SETTLE_TIMEOUT = 5.0
#: trio_ws's documented bounds on a request head: its size and header count.
HEAD_LIMIT: int = getattr(trio_ws.options, "MAX_HANDSHAKE_HEAD_SIZE", 16 * 1024)
HEADER_COUNT_LIMIT: int | None = getattr(trio_ws.options, "MAX_HEADER_COUNT", None)
#: trio_ws's documented policy on frames per message (1008 beyond), if any.
FRAGMENT_LIMIT: int | None = (
    trio_ws.core.size_limit.max_fragments(MAX_SIZE)
    if hasattr(trio_ws.core.size_limit, "max_fragments")
    else None
)

#: Close codes a peer may send (RFC 6455 7.4.1/7.4.2): they must be echoed.
VALID_CLOSE_CODES = frozenset([1000, 1001, 1002, 1003, *range(1007, 1012), *range(3000, 5000)])
#: Registered with IANA after RFC 6455; accepting or refusing them is both fine.
AMBIGUOUS_CLOSE_CODES = frozenset([1012, 1013, 1014])
#: Every HTTP error status a server may fairly answer a bad upgrade with.
ERROR_STATUSES = frozenset([400, 405, 426, 431, 505])


def settings_kwargs(max_examples: int, *, derandomize: bool) -> dict[str, Any]:
    """Hypothesis settings for these properties (each example does real I/O)."""
    from hypothesis import HealthCheck

    return dict(
        max_examples=max_examples,
        deadline=None,
        derandomize=derandomize,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
            HealthCheck.function_scoped_fixture,
        ],
    )


# ====================================================================== frames


@dataclass(frozen=True)
class Frame:
    """A frame to put on the wire, including every way to get it wrong."""

    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv: int = 0
    masked: bool = True
    key: bytes = b"\x37\xfa\x21\x3d"
    #: ``min`` (correct), ``16``/``64`` (longer encoding than needed),
    #: ``64msb`` (64-bit length with its most significant bit set).
    encoding: str = "min"
    #: Announced payload length, when it should differ from the real one.
    declared: int | None = None

    def __bytes__(self) -> bytes:
        n = len(self.payload) if self.declared is None else self.declared
        head = bytes([(0x80 if self.fin else 0) | (self.rsv & 7) << 4 | self.opcode])
        mask_bit = 0x80 if self.masked else 0
        encoding = self.encoding
        if encoding == "min":
            encoding = "7" if n < 126 else "16" if n < 1 << 16 else "64"
        if encoding == "16" and n >= 1 << 16:
            encoding = "64"
        if encoding == "7":
            head += bytes([mask_bit | n])
        elif encoding == "16":
            head += bytes([mask_bit | 126]) + struct.pack("!H", n)
        else:
            value = n | (1 << 63) if encoding == "64msb" else n
            head += bytes([mask_bit | 127]) + struct.pack("!Q", value & (1 << 64) - 1)
        if not self.masked:
            return head + self.payload
        return head + self.key + mask(self.payload, self.key)


def mask(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def close_frame(code: int | None = 1000, reason: bytes = b"", *, masked: bool = True) -> Frame:
    payload = b"" if code is None else struct.pack("!H", code) + reason
    return Frame(CLOSE, payload, masked=masked)


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
            if FRAGMENT_LIMIT is not None and count > FRAGMENT_LIMIT:
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


# ========================================================= reading the peer


@dataclass
class Received:
    """Frames an endpoint sent, checked for RFC conformance as they are parsed."""

    messages: list[tuple[int, bytes]] = field(default_factory=list)
    pongs: list[bytes] = field(default_factory=list)
    pings: list[bytes] = field(default_factory=list)
    close: bytes | None = None  # the Close frame's payload
    after_close: int = 0  # frames sent after the Close frame (must be 0)


def parse_frames(data: bytes, *, masked: bool, who: str, inflate: bool = False) -> Received:
    """Parse everything *who* sent; any malformed frame is an AssertionError."""
    out = Received()
    pos = 0
    parts: list[bytes] = []
    inflater = zlib.decompressobj(-15)  # any window; context taken over or not
    compressed = False
    msg_opcode: int | None = None
    while pos < len(data):
        assert pos + 2 <= len(data), f"{who} sent a truncated frame header: {data[pos:].hex()}"
        b0, b1 = data[pos], data[pos + 1]
        fin, rsv, opcode = bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F
        rsv1_ok = inflate and opcode in (TEXT, BINARY)
        assert rsv & 0b011 == 0, f"{who} set RSV2/RSV3 without an extension: {b0:#x}"
        assert not rsv & 0b100 or rsv1_ok, f"{who} set RSV1 where it may not: {b0:#x}"
        assert opcode in KNOWN_OPCODES, f"{who} sent reserved opcode {opcode:#x}"
        assert bool(b1 & 0x80) == masked, f"{who} sent a frame with mask bit {b1 >> 7}"
        n, pos = b1 & 0x7F, pos + 2
        if n == 126:
            (n,) = struct.unpack("!H", data[pos : pos + 2])
            assert n >= 126, f"{who} used a non-minimal 16-bit length"
            pos += 2
        elif n == 127:
            (n,) = struct.unpack("!Q", data[pos : pos + 8])
            assert 1 << 16 <= n < 1 << 63, f"{who} used an invalid 64-bit length"
            pos += 8
        key = b""
        if masked:
            key, pos = data[pos : pos + 4], pos + 4
        payload = data[pos : pos + n]
        assert len(payload) == n, f"{who} sent a truncated frame ({len(payload)} of {n} bytes)"
        pos += n
        if masked:
            payload = mask(payload, key)
        if out.close is not None:
            out.after_close += 1
            continue
        if opcode >= 8:
            assert fin and n <= 125, f"{who} sent an invalid control frame"
            if opcode == CLOSE:
                assert len(payload) != 1, f"{who} sent a 1-byte close payload"
                if payload:
                    (code,) = struct.unpack("!H", payload[:2])
                    assert code in VALID_CLOSE_CODES | AMBIGUOUS_CLOSE_CODES, (
                        f"{who} sent close code {code}, which no endpoint may send"
                    )
                    assert valid_utf8(payload[2:]), f"{who} sent a close reason that is not UTF-8"
                out.close = payload
            elif opcode == PING:
                out.pings.append(payload)
            else:
                out.pongs.append(payload)
            continue
        if opcode == CONT:
            assert msg_opcode is not None, f"{who} sent a continuation frame out of a message"
        else:
            assert msg_opcode is None, f"{who} started a message inside another"
            msg_opcode = opcode
            compressed = bool(rsv & 0b100)
        parts.append(payload)
        if fin:
            message = b"".join(parts)
            if compressed:
                message = inflater.decompress(message + b"\x00\x00\xff\xff")
            if msg_opcode == TEXT:
                assert valid_utf8(message), f"{who} sent a text message that is not UTF-8"
            out.messages.append((msg_opcode, message))
            parts, msg_opcode = [], None
    return out


def close_code_of(payload: bytes | None) -> int | None:
    return struct.unpack("!H", payload[:2])[0] if payload else None


def judge(
    alternatives: list[Expectation],
    got: Received,
    *,
    who: str,
    messages_exact: bool,
    busy: bool = False,
    streaming: bool = False,
) -> tuple[str, Expectation]:
    """Check what the endpoint did against the acceptable outcomes.

    Returns a label for statistics and the outcome that matched; raises
    AssertionError (explaining the strictest outcome) if none does. *busy*
    says the endpoint sends messages of its own (an echo server), so pongs
    may be coalesced while it is sending; pings must otherwise all be
    answered, in order.
    """
    errors = []
    for i, exp in enumerate(alternatives):
        try:
            coalesce = busy and (bool(exp.messages) or streaming)
            label = _judge_one(exp, got, who=who, messages_exact=messages_exact, coalesce=coalesce)
        except AssertionError as exc:
            errors.append(str(exc))
        else:
            return (label if i == 0 else label + "-late"), exp
    more = f" ({len(errors) - 1} later outcomes did not match either)" if len(errors) > 1 else ""
    raise AssertionError(errors[0] + more)


def _judge_one(
    exp: Expectation, got: Received, *, who: str, messages_exact: bool, coalesce: bool
) -> str:
    """Messages (echoed by a server, or received by a client application)
    that preceded a violation must all be there; before a peer's close or EOF
    a prefix suffices when *messages_exact* is false (the endpoint may stop
    sending once the peer closed).
    """
    context = f"expected {exp.describe()}"
    assert got.after_close == 0, f"{who} sent {got.after_close} frames after its Close"
    if exp.anything:
        return "unpredicted"
    if coalesce:
        # RFC 6455 5.5.3: a pong not yet sent may be dropped for a later one.
        rest = iter(exp.pings)
        assert all(any(p == q for q in rest) for p in got.pongs), (
            f"{who} answered pings {exp.pings!r} with pongs {got.pongs!r}; {context}"
        )
    else:
        assert got.pongs == exp.pings, (
            f"{who} answered pings {exp.pings!r} with pongs {got.pongs!r}; {context}"
        )
    code = close_code_of(got.close)
    if got.close is not None and code in exp.violation:
        label = f"fail-{code}"
        strict = True
    elif got.close is not None and exp.close:
        allowed = {exp.close_code, 1000}
        assert code in allowed, f"{who} answered close {exp.close_code} with {code}; {context}"
        label, strict = "close-echo", messages_exact
    elif got.close is None and exp.eof:
        label, strict = "eof", messages_exact
    elif got.close is not None and exp.eof and not exp.violation and code in (1000, 1001):
        label, strict = f"eof-close-{code}", messages_exact
    else:
        what = "no Close frame" if got.close is None else f"Close {code}"
        raise AssertionError(f"{who} sent {what}; {context}")
    if strict:
        assert got.messages == exp.messages, (
            f"{who} delivered {_short(got.messages)}, expected {_short(exp.messages)}; {context}"
        )
    else:
        assert got.messages == exp.messages[: len(got.messages)], (
            f"{who} delivered {_short(got.messages)}, not a prefix of "
            f"{_short(exp.messages)}; {context}"
        )
    return label


def _short(messages: list[tuple[int, bytes]]) -> str:
    return (
        "["
        + ", ".join(f"{op}:{p[:16]!r}{'...' if len(p) > 16 else ''}" for op, p in messages)
        + "]"
    )


# =========================================================== frame strategies

INVALID_UTF8 = [
    b"\xff",
    b"\xfe",
    b"\x80",  # lone continuation byte
    b"\xc0\xaf",  # overlong
    b"\xc1\xbf",
    b"\xe0\x80\xaf",  # overlong 3-byte
    b"\xed\xa0\x80",  # surrogate
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xf5\x80\x80\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\xe2\x82",  # truncated 3-byte sequence followed by more text
    b"\xf0\x9f\x98",  # truncated 4-byte sequence
]
INTERESTING_LENGTHS = [
    0,
    1,
    2,
    124,
    125,
    126,
    127,
    255,
    256,
    257,
    65535,
    65536,
    2**31,
    2**63 - 1,
    2**63,
    2**64 - 1,
]
INTERESTING_CODES = [
    0,
    1,
    999,
    1000,
    1001,
    1002,
    1003,
    1004,
    1005,
    1006,
    1007,
    1008,
    1009,
    1010,
    1011,
    1012,
    1013,
    1014,
    1015,
    1016,
    1100,
    2000,
    2999,
    3000,
    3999,
    4000,
    4999,
    5000,
    65535,
]


def _keys() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.just(b"\x37\xfa\x21\x3d"), st.just(b"\0\0\0\0"), st.binary(min_size=4, max_size=4)
    )


@st.composite
def text_payloads(draw: st.DrawFn, max_size: int = 80) -> bytes:
    return draw(st.text(st.characters(codec="utf-8"), max_size=max_size)).encode("utf-8")


def _split(draw: st.DrawFn, data: bytes, max_parts: int = 4) -> list[bytes]:
    """Cut *data* into 1..max_parts pieces at arbitrary byte offsets."""
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=max_parts - 1))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def control_between(draw: st.DrawFn, masked: bool) -> list[Frame]:
    """Zero or more pings/pongs to put between the fragments of a message."""
    frames = []
    for opcode in draw(st.lists(st.sampled_from([PING, PONG]), max_size=2)):
        frames.append(Frame(opcode, draw(st.binary(max_size=20)), masked=masked))
    return frames


@st.composite
def messages(draw: st.DrawFn, masked: bool) -> list[Frame]:
    """A valid message (text or binary), maybe fragmented with pings between."""
    text = draw(st.booleans())
    if text:
        size = MAX_SIZE + 40 if draw(st.integers(0, 9)) == 0 else 80
        payload = draw(text_payloads(max_size=size))
    else:
        payload = draw(st.binary(max_size=MAX_SIZE + 20))
    pieces = _split(draw, payload)
    frames: list[Frame] = []
    for i, piece in enumerate(pieces):
        if i:
            frames += draw(control_between(masked))
        opcode = (TEXT if text else BINARY) if i == 0 else CONT
        frames.append(
            Frame(opcode, piece, fin=i == len(pieces) - 1, masked=masked, key=draw(_keys()))
        )
    return frames


@st.composite
def invalid_utf8_messages(draw: st.DrawFn, masked: bool) -> list[Frame]:
    """A text message with invalid UTF-8 somewhere, split anywhere (mid-character too)."""
    before = draw(text_payloads(max_size=20))
    bad = draw(st.sampled_from(INVALID_UTF8))
    after = draw(text_payloads(max_size=20))
    if draw(st.booleans()):  # or: a message that ends in the middle of a character
        bad, after = draw(st.sampled_from([b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98"])), b""
    pieces = _split(draw, before + bad + after, max_parts=5)
    frames: list[Frame] = []
    for i, piece in enumerate(pieces):
        if i:
            frames += draw(control_between(masked))
        opcode = TEXT if i == 0 else CONT
        frames.append(Frame(opcode, piece, fin=i == len(pieces) - 1, masked=masked))
    return frames


@st.composite
def close_frames(draw: st.DrawFn, masked: bool) -> list[Frame]:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        payload = b""
    elif kind == 1:
        payload = draw(st.binary(min_size=1, max_size=1))
    else:
        code = draw(st.one_of(st.sampled_from(INTERESTING_CODES), st.integers(0, 65535)))
        if kind == 2:
            reason = draw(text_payloads(max_size=30))
        elif kind == 3:
            reason = draw(text_payloads(max_size=10)) + draw(st.sampled_from(INVALID_UTF8))
        elif kind == 4:
            reason = b"r" * draw(st.integers(120, 130))  # 122..132 byte payloads
        else:
            reason = draw(st.binary(max_size=20))
        payload = struct.pack("!H", code) + reason
    return [Frame(CLOSE, payload, masked=masked, fin=draw(st.integers(0, 9)) > 0)]


@st.composite
def control_frames(draw: st.DrawFn, masked: bool) -> list[Frame]:
    opcode = draw(st.sampled_from([PING, PONG]))
    size = draw(st.one_of(st.integers(0, 20), st.integers(120, 130)))
    fin = draw(st.integers(0, 5)) > 0
    return [Frame(opcode, draw(st.binary(min_size=size, max_size=size)), fin=fin, masked=masked)]


@st.composite
def wild_frames(draw: st.DrawFn, masked: bool) -> list[Frame]:
    """A frame with every field drawn at random, biased towards a valid shape."""
    opcode = draw(st.integers(0, 15))
    payload = draw(st.binary(max_size=300))
    declared = None
    if draw(st.integers(0, 3)) == 0:
        declared = draw(st.one_of(st.sampled_from(INTERESTING_LENGTHS), st.integers(0, 2**64 - 1)))
    return [
        Frame(
            opcode,
            payload,
            fin=draw(st.booleans()),
            rsv=draw(st.integers(0, 7)) if draw(st.integers(0, 2)) == 0 else 0,
            masked=masked if draw(st.integers(0, 5)) else not masked,
            key=draw(_keys()),
            encoding=draw(st.sampled_from(["min", "min", "min", "16", "64", "64msb"])),
            declared=declared,
        )
    ]


@st.composite
def fragment_floods(draw: st.DrawFn, masked: bool) -> list[Frame]:
    """A message in very many tiny (or empty) fragments, around any fragment limit."""
    limit = FRAGMENT_LIMIT or 1024
    count = draw(st.sampled_from([limit - 1, limit, limit + 1, limit + 50]))
    opcode = draw(st.sampled_from([TEXT, BINARY]))
    piece = draw(st.sampled_from([b"", b"a"])) if count < MAX_SIZE else b""
    frames = [Frame(opcode, piece, fin=False, masked=masked)]
    frames += [Frame(CONT, piece, fin=False, masked=masked) for _ in range(count - 2)]
    frames.append(Frame(CONT, b"", fin=True, masked=masked))
    return frames


@st.composite
def raw_bytes(draw: st.DrawFn, masked: bool) -> list[bytes]:
    return [draw(st.binary(min_size=1, max_size=64))]


@dataclass(frozen=True)
class FrameCase:
    """A byte stream for one side to send after the handshake."""

    items: tuple[Frame | bytes, ...]
    chunks: tuple[int, ...]  # sizes of the writes, the rest goes in one
    pipelined: bool  # send the first bytes together with the handshake
    pause: bool  # sleep a little between writes so that reads split

    @property
    def data(self) -> bytes:
        return b"".join(bytes(item) for item in self.items)

    def writes(self) -> list[bytes]:
        data, out = self.data, []
        for size in self.chunks:
            if not data:
                break
            out.append(data[:size])
            data = data[size:]
        if data:
            out.append(data)
        return out


@st.composite
def frame_cases(draw: st.DrawFn, *, masked: bool) -> FrameCase:
    """A sequence of frames (valid and not) and raw bytes, as one peer sends it.

    Mostly a valid conversation with at most one bad item somewhere, so that
    the bad item meets the endpoint in every state; sometimes pure chaos.
    """
    valid = [messages, messages, messages, control_between]
    bad = [
        invalid_utf8_messages,
        close_frames,
        control_frames,
        wild_frames,
        raw_bytes,
        oversized,
        fragment_floods,
    ]
    items: list[Frame | bytes] = []
    if draw(st.integers(0, 4)):
        groups = [draw(kind(masked)) for kind in draw(st.lists(st.sampled_from(valid), max_size=5))]
        if draw(st.integers(0, 3)):
            groups.insert(
                draw(st.integers(0, len(groups))), draw(draw(st.sampled_from(bad))(masked))
            )
    else:
        groups = [
            draw(kind(masked))
            for kind in draw(st.lists(st.sampled_from(valid + bad), min_size=1, max_size=6))
        ]
    for group in groups:
        items += group
    if draw(st.booleans()):
        items.append(close_frame(1000, masked=masked))
    if not items:
        items.append(close_frame(1000, masked=masked))
    chunks = tuple(draw(st.lists(st.integers(1, 40), max_size=4)))
    return FrameCase(tuple(items), chunks, draw(st.booleans()), draw(st.booleans()))


@st.composite
def oversized(draw: st.DrawFn, masked: bool) -> list[Frame]:
    """A message that crosses ``MAX_SIZE`` in one frame or across fragments."""
    size = draw(st.integers(MAX_SIZE - 2, MAX_SIZE + 200))
    pieces = _split(draw, b"z" * size)
    opcode = draw(st.sampled_from([TEXT, BINARY]))
    frames = []
    for i, piece in enumerate(pieces):
        if i:
            frames += draw(control_between(masked))
        frames.append(
            Frame(opcode if i == 0 else CONT, piece, fin=i == len(pieces) - 1, masked=masked)
        )
    return frames


# ========================================================= deflate strategies

#: Offers a raw client may make; the model follows whatever the server answers.
DEFLATE_OFFERS = [
    b"permessage-deflate",
    b"permessage-deflate; client_max_window_bits",
    b"permessage-deflate; client_no_context_takeover",
    b"permessage-deflate; client_max_window_bits=10; server_no_context_takeover",
]


def deflate(data: bytes, level: int = 6, strip: bool = True) -> bytes:
    """*data* as one RFC 7692 message body (9-bit window: fits any negotiation)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -9)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4] if strip and out.endswith(b"\x00\x00\xff\xff") else out


def _fragments(
    draw: st.DrawFn, opcode: int, body: bytes, masked: bool, rsv_on_all: bool = False
) -> list[Frame]:
    frames: list[Frame] = []
    pieces = _split(draw, body)
    for i, piece in enumerate(pieces):
        if i:
            frames += draw(control_between(masked))
        frames.append(
            Frame(
                opcode if i == 0 else CONT,
                piece,
                fin=i == len(pieces) - 1,
                rsv=4 if i == 0 or rsv_on_all else 0,
                masked=masked,
            )
        )
    return frames


@st.composite
def compressed_messages(draw: st.DrawFn, masked: bool) -> list[Frame]:
    """A compressed message, maybe fragmented (RSV1 on the first frame only)."""
    text = draw(st.booleans())
    if text:
        payload = draw(text_payloads(max_size=120))
        if draw(st.integers(0, 5)) == 0:
            payload += draw(st.sampled_from(INVALID_UTF8))
    else:
        payload = draw(st.binary(max_size=MAX_SIZE + 40))
    if draw(st.booleans()):
        payload = payload * draw(st.integers(1, 8))  # compresses well; may cross MAX_SIZE
    body = deflate(payload, draw(st.integers(0, 9)), draw(st.booleans()))
    return _fragments(draw, TEXT if text else BINARY, body, masked)


@st.composite
def bombs(draw: st.DrawFn, masked: bool) -> list[Frame]:
    """A small frame that inflates to far more than MAX_SIZE (or just past it)."""
    size = draw(st.sampled_from([MAX_SIZE, MAX_SIZE + 1, 64 * 1024, 1 << 20, 16 << 20]))
    return _fragments(draw, BINARY, deflate(b"\0" * size, 9), masked)


@st.composite
def bad_deflate(draw: st.DrawFn, masked: bool) -> list[Frame]:
    """RSV1 misused, or a compressed body that is not deflate data."""
    kind = draw(st.integers(0, 3))
    if kind == 0:  # garbage body
        return _fragments(
            draw,
            draw(st.sampled_from([TEXT, BINARY])),
            draw(st.binary(min_size=1, max_size=40)),
            masked,
        )
    if kind == 1:  # RSV1 on a continuation frame too
        body = deflate(draw(st.binary(min_size=2, max_size=60)))
        return _fragments(draw, BINARY, body, masked, rsv_on_all=True)
    if kind == 2:  # RSV1 on a control frame
        return [Frame(draw(st.sampled_from([PING, PONG, CLOSE])), b"", rsv=4, masked=masked)]
    good = deflate(draw(text_payloads(max_size=40)))  # valid body, truncated or extended
    return _fragments(
        draw, TEXT, good[: draw(st.integers(0, len(good)))] + draw(st.binary(max_size=4)), masked
    )


@dataclass(frozen=True)
class DeflateCase:
    offer: bytes
    frames: FrameCase


@st.composite
def deflate_cases(draw: st.DrawFn) -> DeflateCase:
    """Compressed and plain messages, with at most one bad item, for a compressing server."""
    valid = [compressed_messages, compressed_messages, messages, control_between]
    bad = [bad_deflate, bombs, invalid_utf8_messages, wild_frames, oversized, close_frames]
    groups = [draw(kind(True)) for kind in draw(st.lists(st.sampled_from(valid), max_size=5))]
    if draw(st.integers(0, 2)):
        groups.insert(draw(st.integers(0, len(groups))), draw(draw(st.sampled_from(bad))(True)))
    items: list[Frame | bytes] = [frame for group in groups for frame in group]
    if draw(st.booleans()) or not items:
        items.append(close_frame(1000))
    chunks = tuple(draw(st.lists(st.integers(1, 40), max_size=4)))
    case = FrameCase(tuple(items), chunks, draw(st.booleans()), draw(st.booleans()))
    return DeflateCase(draw(st.sampled_from(DEFLATE_OFFERS)), case)


def check_server_deflate(case: DeflateCase) -> str:
    return run_isolated(partial(server_frames_case, case.frames, case.offer))


# ================================================================== runtime


class ErrorLog(logging.Handler):
    """Collects ERROR (and worse) records of trio_ws's loggers during one example."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> ErrorLog:
        logging.getLogger("trio_ws").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("trio_ws").removeHandler(self)

    def text(self) -> str:
        return "; ".join(
            f"{r.name}: {r.getMessage()}" + (f" ({r.exc_info[1]!r})" if r.exc_info else "")
            for r in self.records
        )


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def fd_targets(fds: set[str]) -> list[str]:
    out = []
    for fd in sorted(fds):
        try:
            out.append(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            out.append(fd)
    return out


def run_isolated(fn: Callable[[], Awaitable[str]]) -> str:
    """Run *fn* in a fresh ``trio.run``; check fds and trio_ws's error log around it."""
    before = open_fds()
    with ErrorLog() as log:
        try:
            label = trio.run(fn)
        except BaseExceptionGroup as group:
            leaves = _leaves(group)
            if len(leaves) == 1:  # report a failed check as itself, not in a group
                raise leaves[0] from None
            raise
    leaked = open_fds() - before
    assert not leaked, f"file descriptors left open: {fd_targets(leaked)}"
    assert not log.records, f"trio_ws logged errors: {log.text()}"
    return label


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


#: trio_ws's one keepalive task per Trio run: started by the first
#: connection, it lives as long as the run, so it is no leak.
KEEPALIVE_TIMER = "trio_ws keepalive timer"


def live_tasks() -> list[trio.lowlevel.Task]:
    tasks = []
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        if task is None:
            continue
        if task.name != KEEPALIVE_TIMER:
            tasks.append(task)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return tasks


async def settle(baseline: int, handlers: Handlers | None = None) -> None:
    """Wait until trio_ws's tasks for finished connections are gone."""
    with trio.move_on_after(SETTLE_TIMEOUT):
        while len(live_tasks()) > baseline or (handlers is not None and handlers.active):
            await trio.sleep(0.005)
    tasks = live_tasks()
    assert handlers is None or handlers.active == 0, (
        f"{handlers.active} handlers still running {SETTLE_TIMEOUT} s after the peer left"
    )
    assert len(tasks) <= baseline, (
        f"tasks left behind after {SETTLE_TIMEOUT} s: {sorted(t.name for t in tasks)}"
    )


class Handlers:
    """An echo handler that records every exception it sees."""

    def __init__(self) -> None:
        self.calls = 0
        self.accepted = 0
        self.active = 0
        self.unexpected: list[str] = []
        self.closed_codes: list[int] = []
        self.stopping = False

    async def echo(self, request: trio_ws.WebSocketRequest) -> None:
        self.calls += 1
        self.active += 1
        try:
            ws = await request.accept()
            self.accepted += 1
            async for message in ws:
                await ws.send_message(message)
        except trio_ws.ConnectionClosed as exc:
            self.closed_codes.append(exc.reason.code)
            raise
        except trio.Cancelled:
            if not self.stopping:
                self.unexpected.append("trio.Cancelled (handler cancelled by trio_ws)")
            raise
        except BaseException as exc:
            self.unexpected.append(repr(exc))
            raise
        finally:
            self.active -= 1

    async def stream_echo(self, request: trio_ws.WebSocketRequest) -> None:
        """Echo each message chunk by chunk, with the streaming API both ways."""
        self.calls += 1
        self.active += 1
        try:
            ws = await request.accept()
            self.accepted += 1
            while True:
                async with ws.get_message_stream() as chunks:
                    await ws.send_message_stream(chunks)
        except trio_ws.ConnectionClosed as exc:
            self.closed_codes.append(exc.reason.code)
            raise
        except trio.Cancelled:
            if not self.stopping:
                self.unexpected.append("trio.Cancelled (handler cancelled by trio_ws)")
            raise
        except BaseException as exc:
            self.unexpected.append(repr(exc))
            raise
        finally:
            self.active -= 1

    def check(self) -> None:
        assert not self.unexpected, f"the handler saw unexpected exceptions: {self.unexpected}"


async def start_server(
    nursery: trio.Nursery, handlers: Handlers, *, streaming: bool = False, **kwargs: Any
) -> int:
    options: dict[str, Any] = dict(
        max_message_size=MAX_SIZE,
        connect_timeout=CONNECT_TIMEOUT,
        disconnect_timeout=DISCONNECT_TIMEOUT,
        compression=None,
        ping_interval=None,
    )
    options.update(kwargs)
    handler = handlers.stream_echo if streaming else handlers.echo
    server = await nursery.start(
        partial(trio_ws.serve_websocket, handler, HOST, 0, None, **options)
    )
    return int(server.port)


async def well_behaved_client(port: int) -> None:
    """The server must still serve a normal client after whatever came before."""
    with trio.fail_after(5):
        async with trio_ws.open_websocket(HOST, port, "/ok", use_ssl=False) as ws:
            await ws.send_message("still serving?")
            assert await ws.get_message() == "still serving?"


def upgrade_request(path: str = "/", extra: bytes = b"") -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        (
            f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
        ).encode()
        + extra
        + b"\r\n"
    )


def accept_token(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def header_values(head: bytes, name: bytes) -> list[bytes]:
    values = []
    for line in head.split(b"\n")[1:]:
        line = line.rstrip(b"\r")
        if b":" in line:
            n, v = line.split(b":", 1)
            if n.strip().lower() == name:
                values.append(v.strip())
    return values


async def converse(
    stream: trio.SocketStream, writes: list[bytes], pause: bool
) -> tuple[bytes, str]:
    """Send *writes* then EOF while reading everything until the peer's EOF.

    Returns the bytes read and how the transport ended: ``eof``, or
    ``reset`` when the peer's kernel destroyed the connection.
    """
    received = bytearray()
    ending = "eof"

    async def send() -> None:
        try:
            for data in writes:
                await stream.send_all(data)
                if pause:
                    await trio.sleep(0.001)
            await stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer hung up; what it sent before says why

    async def receive() -> None:
        nonlocal ending
        try:
            while data := await stream.receive_some(65536):
                received.extend(data)
        except trio.BrokenResourceError:
            ending = "reset"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        nursery.start_soon(receive)
    return bytes(received), ending


# ============================================================ server_frames


async def server_frames_case(
    case: FrameCase, offer: bytes | None = None, streaming: bool = False
) -> str:
    """A raw client sends *case* to a trio_ws echo server; check the answer.

    With *offer* (a ``Sec-WebSocket-Extensions`` value), the server runs
    with compression on and the model uses what it negotiated.
    """
    handlers = Handlers()
    async with trio.open_nursery() as nursery:
        if offer is None:
            port = await start_server(nursery, handlers, streaming=streaming)
        else:
            port = await start_server(nursery, handlers, compression=DeflateOptions())
        baseline = len(live_tasks())
        with trio.fail_after(CASE_TIMEOUT):
            stream = await trio.open_tcp_stream(HOST, port)
            async with stream:
                extra = b"" if offer is None else b"Sec-WebSocket-Extensions: " + offer + b"\r\n"
                request = upgrade_request(extra=extra)
                writes = case.writes()
                if case.pipelined:
                    writes[0] = request + writes[0]
                else:
                    await stream.send_all(request)
                output, ending = await converse(stream, writes, case.pause)
            head, sep, rest = output.partition(b"\r\n\r\n")
            assert sep and head.startswith(b"HTTP/1.1 101 "), f"no 101 answer: {output[:200]!r}"
            key = header_values(request, b"sec-websocket-key")[0]
            assert header_values(head, b"sec-websocket-accept") == [accept_token(key)]
            deflate = negotiated(offer, header_values(head, b"sec-websocket-extensions"))
            alternatives = expect(case.data, masked=True, deflate=deflate)
            if streaming:  # an empty message streams no chunk: it comes back as binary
                for exp in alternatives:
                    exp.messages = [(BINARY, b"") if not p else (op, p) for op, p in exp.messages]
            got = parse_frames(rest, masked=False, who="server", inflate=deflate is not None)
            if streaming:  # (both ways: a whole queued empty message yields one empty chunk)
                got.messages = [(BINARY, b"") if not p else (op, p) for op, p in got.messages]
            if ending == "reset" and sent_after_close(alternatives, case.data):
                # We sent bytes after our own Close: closing the socket with
                # them unread makes the kernel send RST, which is our fault.
                label = "reset-after-close"
                if got.close is not None:
                    judge(
                        alternatives,
                        got,
                        who="server",
                        messages_exact=False,
                        busy=True,
                        streaming=streaming,
                    )
            else:
                assert ending == "eof", (
                    f"server reset the connection; it sent {got}; {alternatives[0].describe()}"
                )
                label, _ = judge(
                    alternatives,
                    got,
                    who="server",
                    messages_exact=False,
                    busy=True,
                    streaming=streaming,
                )
            await settle(baseline, handlers)
            handlers.check()
            assert handlers.calls == 1
            await well_behaved_client(port)
            await settle(baseline, handlers)
            handlers.check()
        handlers.stopping = True
        nursery.cancel_scope.cancel()
    return label


def negotiated(offer: bytes | None, answers: list[bytes]) -> Inflate | None:
    """What the server's extension answer means for the frames we send it."""
    if offer is None or not answers:
        return None
    assert len(answers) == 1, f"several extension answers: {answers}"
    params = dict(_param(p) for p in answers[0].decode().split(";")[1:])
    assert answers[0].decode().split(";")[0].strip() == "permessage-deflate", answers
    offered = dict(_param(p) for p in offer.decode().split(";")[1:])
    bits = params.get("client_max_window_bits") or offered.get("client_max_window_bits") or "15"
    return Inflate(int(bits), "client_no_context_takeover" in params)


def _param(text: str) -> tuple[str, str | None]:
    name, _, value = text.strip().partition("=")
    return name.strip(), value.strip() or None


def check_server_frames(case: FrameCase) -> str:
    return run_isolated(partial(server_frames_case, case))


def check_server_stream(case: FrameCase) -> str:
    return run_isolated(partial(server_frames_case, case, streaming=True))


# ============================================================ client_frames


async def one_connection_server(
    script: Callable[[trio.SocketStream], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on 127.0.0.1, run *script* for the first connection, then stop."""
    listener = (await trio.open_tcp_listeners(0, host=HOST))[0]
    async with listener:
        task_status.started(listener.socket.getsockname()[1])
        stream = await listener.accept()
    async with stream:
        try:
            await script(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def read_head(stream: trio.SocketStream, buffer: bytearray) -> bytes:
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError(f"peer closed during the head: {bytes(buffer)[:100]!r}")
        buffer += data
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    del buffer[:end]
    return head


class RawServer:
    """Answers the handshake, sends the fuzzed bytes, records what the client says."""

    def __init__(
        self,
        answer: Callable[[bytes], bytes],
        writes: list[bytes],
        pause: bool,
        pipelined: bool = True,
    ) -> None:
        self.answer = answer
        self.pipelined = pipelined
        self.writes = writes
        self.pause = pause
        self.received = bytearray()
        self.ending = "eof"
        self.request = b""

    async def __call__(self, stream: trio.SocketStream) -> None:
        buffer = bytearray()
        self.request = await read_head(stream, buffer)
        self.received += buffer
        writes = list(self.writes)
        first = self.answer(self.request)
        if writes and self.pipelined:
            writes = [first + writes[0], *writes[1:]]
        else:
            writes = [first, *writes]
        sent = trio.Event()

        async def send() -> None:
            try:
                for data in writes:
                    await stream.send_all(data)
                    if self.pause:
                        await trio.sleep(0.001)
                await stream.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            sent.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            try:
                while data := await stream.receive_some(65536):
                    self.received += data
                    # RFC 6455 7.1.1: the server closes TCP once it has the client's Close.
                    if _has_close(bytes(self.received)):
                        await sent.wait()
                        break
            except trio.BrokenResourceError:
                self.ending = "reset"
            await sent.wait()


def _has_close(data: bytes) -> bool:
    try:
        return parse_frames(data, masked=True, who="client").close is not None
    except AssertionError:
        return False


def good_answer(request: bytes) -> bytes:
    key = header_values(request, b"sec-websocket-key")[0]
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_token(key) + b"\r\n\r\n"
    )


@dataclass
class ClientApp:
    """What the client application saw."""

    messages: list[tuple[int, bytes]] = field(default_factory=list)
    closed: int | None = None  # code of the ConnectionClosed that ended it
    handshake_error: BaseException | None = None
    unexpected: list[str] = field(default_factory=list)
    normal_end: bool = False

    async def run(self, port: int) -> None:
        try:
            async with trio_ws.open_websocket(
                HOST,
                port,
                "/",
                use_ssl=False,
                max_message_size=MAX_SIZE,
                connect_timeout=CONNECT_TIMEOUT,
                disconnect_timeout=DISCONNECT_TIMEOUT,
                compression=None,
                ping_interval=None,
            ) as ws:
                async for message in ws:
                    if isinstance(message, str):
                        self.messages.append((TEXT, message.encode()))
                    else:
                        self.messages.append((BINARY, message))
                self.normal_end = True
        except trio_ws.ConnectionClosed as exc:
            self.closed = exc.reason.code
        except trio_ws.HandshakeError as exc:
            self.handshake_error = exc
        except BaseException as exc:
            self.unexpected.append(repr(exc))
            if not isinstance(exc, Exception):
                raise


async def client_frames_case(case: FrameCase) -> str:
    alternatives = expect(case.data, masked=False)
    raw = RawServer(good_answer, case.writes(), case.pause, case.pipelined)
    app = ClientApp()
    baseline = len(live_tasks())
    with trio.fail_after(CASE_TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(one_connection_server, raw)
            await app.run(port)
    assert not app.unexpected, f"the client application saw unexpected exceptions: {app.unexpected}"
    assert app.handshake_error is None, f"handshake failed: {app.handshake_error!r}"
    got = parse_frames(bytes(raw.received), masked=True, who="client")
    assert raw.ending == "eof", f"client reset the connection; it sent {got}"
    # The application reads every message, so the client must deliver them all.
    app_got = Received(messages=app.messages, pongs=got.pongs, close=got.close)
    label, exp = judge(alternatives, app_got, who="client", messages_exact=True)
    code = close_code_of(got.close)
    if label.startswith("fail-"):  # the client failed the connection
        assert app.closed == code, f"app saw {app.closed}/{app.normal_end}, client sent {code}"
    elif label == "close-echo":
        peer = 1005 if exp.close_code is None else exp.close_code
        if peer in NORMAL_CODES:  # these end `async for` quietly
            assert app.normal_end, f"normal close {peer} raised ConnectionClosed({app.closed})"
        else:
            assert app.closed == peer, f"app saw {app.closed}, server closed with {peer}"
    else:
        assert app.closed == 1006 or (label.startswith("eof-close") and app.normal_end), (
            f"app saw {app.closed}/{app.normal_end} after EOF"
        )
    await settle(baseline)
    return label


def check_client_frames(case: FrameCase) -> str:
    return run_isolated(partial(client_frames_case, case))


# ============================================================= server_heads


@dataclass(frozen=True)
class RequestCase:
    """One upgrade request and what the server may answer (None: just close)."""

    data: bytes
    expected: frozenset[int | None]
    version_mismatch: bool = False
    eof: bool = False  # send EOF right after (truncated requests)
    chunks: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()


class Picker:
    """Draws each field of a head good, except the few chosen to be mutated."""

    def __init__(self, draw: st.DrawFn, fields: list[str], max_mutations: int = 2) -> None:
        self.draw = draw
        self.mutate = (
            draw(st.sets(st.sampled_from(fields), max_size=max_mutations)) if fields else set()
        )

    def __call__(self, name: str, good: list[Any], bad: list[Any]) -> tuple[Any, bool]:
        """A good value, or a bad one if *name* is mutated; True if good."""
        if name in self.mutate:
            return self.draw(st.sampled_from(bad)), False
        return self.draw(st.sampled_from(good)), True


TOKEN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"
VALUE = "".join(chr(c) for c in range(0x21, 0x7F))


@st.composite
def request_cases(draw: st.DrawFn) -> RequestCase:
    if draw(st.integers(0, 9)) == 0:
        garbage = draw(st.binary(max_size=300))
        eof = not garbage.endswith(b"\r\n\r\n") and draw(st.booleans())
        if not eof:
            garbage += b"\r\n\r\n"
        return RequestCase(garbage, ERROR_STATUSES | {None}, eof=True, notes=("garbage",))

    # Often a valid request with only harmless variations, else up to two
    # fields broken (and maybe more trouble below).
    valid = draw(st.integers(0, 9)) < 4
    fields = ["method", "version", "host", "upgrade", "connection", "key", "ws_version"]
    pick = Picker(draw, [] if valid else fields)
    hard: list[set[int]] = []  # each violation: the statuses that report it
    soft: list[set[int]] = []  # things that may or may not be refused
    notes: list[str] = []

    def bad(note: str, statuses: set[int], *, maybe: bool = False) -> None:
        notes.append(note)
        (soft if maybe else hard).append(statuses)

    method, ok = pick(
        "method", [b"GET"], [b"POST", b"PUT", b"HEAD", b"OPTIONS", b"DELETE", b"get", b"G3T"]
    )
    if not ok:
        bad(f"method {method!r}", {405, 400})
    version, ok = pick(
        "version",
        [b"HTTP/1.1"],
        [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.2", b"HTTP/1", b"http/1.1", b"HTTP/11", b"HTTPS/1.1"],
    )
    if version == b"HTTP/1.2":  # RFC 6455 says "HTTP/1.1 or higher"; HTTP/1.2 does not exist
        bad("version 1.2", {400, 505, 101}, maybe=True)
    elif not ok:
        bad(f"version {version!r}", {400, 426, 505})
    target = draw(st.sampled_from([b"/", b"/chat?room=1", b"/a/b/c", b"/%7Euser"]))
    headers: list[tuple[bytes, bytes]] = []
    key = base64.b64encode(draw(st.binary(min_size=16, max_size=16)))

    host, ok = pick("host", [[b"localhost"], [b"127.0.0.1:80"]], [[], [b"a", b"b"]])
    headers += [(b"Host", h) for h in host]
    if not ok and version == b"HTTP/1.1":
        bad("no or two Host headers", {400})
    elif not ok:
        bad("no or two Host headers", {400, 101}, maybe=True)

    upgrade, ok = pick(
        "upgrade",
        [[b"websocket"], [b"WebSocket"], [b"websocket, h2c"], [b"h2c, WEBSOCKET"]],
        [
            [],
            [b"h2c"],
            [b""],
            [b"web socket"],
            [b"websocket", b"websocket"],
            [b"h2c", b"websocket"],
        ],
    )
    headers += [(b"Upgrade", u) for u in upgrade]
    if len(upgrade) == 2:
        bad("two Upgrade headers", {101, 400, 426}, maybe=True)
    elif not ok:
        bad(f"Upgrade {upgrade!r}", {426, 400})

    connection, ok = pick(
        "connection",
        [[b"Upgrade"], [b"upgrade"], [b"keep-alive, Upgrade"], [b"Upgrade, keep-alive"]],
        [
            [],
            [b"keep-alive"],
            [b"close"],
            [b""],
            [b"Upgrade", b"Upgrade"],
            [b"keep-alive", b"Upgrade"],
        ],
    )
    headers += [(b"Connection", c) for c in connection]
    if len(connection) == 2:
        bad("two Connection headers", {101, 400}, maybe=True)
    elif not ok:
        bad(f"Connection {connection!r}", {400, 426})

    keys, ok = pick(
        "key",
        [[key], [b" " + key + b" "]],
        [
            [],
            [b""],
            [base64.b64encode(b"x" * 15)],
            [base64.b64encode(b"x" * 17)],
            [key.rstrip(b"=")],
            [b"!" * 24],
            [key, base64.b64encode(b"y" * 16)],
            [key, key],
        ],
    )
    headers += [(b"Sec-WebSocket-Key", k) for k in keys]
    if not ok:
        bad(f"Sec-WebSocket-Key {keys!r}", {400})

    versions, ok = pick(
        "ws_version",
        [[b"13"]],
        [[], [b"8"], [b"12"], [b"14"], [b""], [b"13, 8"], [b"13", b"13"], [b"013"]],
    )
    headers += [(b"Sec-WebSocket-Version", v) for v in versions]
    version_mismatch = not ok
    if not ok:
        bad(f"Sec-WebSocket-Version {versions!r}", {426, 400})

    if draw(st.integers(0, 3)) == 0:
        headers.append(
            (b"Sec-WebSocket-Protocol", draw(st.sampled_from([b"chat", b"a, b", b"", b"x" * 50])))
        )
    if draw(st.integers(0, 3)) == 0:
        offer = draw(
            st.sampled_from(
                [
                    b"permessage-deflate",
                    b"permessage-deflate; client_max_window_bits",
                    b"permessage-deflate; server_max_window_bits=7",
                    b"x-unknown",
                    b"permessage-deflate; foo=bar, permessage-deflate",
                    b";;;",
                ]
            )
        )
        headers.append((b"Sec-WebSocket-Extensions", offer))

    size_kind = draw(st.integers(0, 5)) if not valid else draw(st.sampled_from([0, 3]))
    if size_kind == 1:  # many small headers
        count = draw(st.one_of(st.integers(0, 20), st.integers(85, 105), st.integers(900, 1600)))
        headers += [(b"X-H%d" % i, b"v" * 8) for i in range(count)]
    elif size_kind == 2:  # one big header
        headers.append(
            (b"X-Big", b"b" * draw(st.one_of(st.integers(1000, 8000), st.integers(15000, 30000))))
        )
    elif size_kind == 3:  # some random ones
        for _ in range(draw(st.integers(0, 8))):
            name = draw(st.text(TOKEN, min_size=1, max_size=12)).encode()
            value = draw(st.text(VALUE, max_size=40)).encode()
            headers.append((b"X-" + name, value))
    headers = draw(st.permutations(headers)) if draw(st.booleans()) else headers
    if draw(st.booleans()):
        headers = [(n.lower() if draw(st.booleans()) else n.upper(), v) for n, v in headers]

    newline = b"\r\n"
    if not valid and draw(st.integers(0, 5)) == 0:
        newline = b"\n"
        bad("bare LF line ends", {400}, maybe=True)
    lines = [method + b" " + target + b" " + version] + [n + b": " + v for n, v in headers]
    if not valid and draw(st.integers(0, 5)) == 0:
        junk = draw(
            st.sampled_from(
                [b"no colon here", b"X-Nul: a\x00b", b"X-Cr: a\rb", b": empty name", b"Bad Name: x"]
            )
        )
        lines.insert(draw(st.integers(1, len(lines))), junk)
        bad(f"malformed header line {junk!r}", {400})
    data = newline.join(lines) + newline + newline

    if HEADER_COUNT_LIMIT is not None and len(headers) > HEADER_COUNT_LIMIT:
        bad(f"{len(headers)} headers", {431})
    # Servers count the head in their own way (with CRLF line ends, say):
    # near the limit, both answers are fine.
    size = len(data) + (len(lines) if newline == b"\n" else 0)
    if size > HEAD_LIMIT + 1024:
        bad("head too large", {431})
    elif size > HEAD_LIMIT - 1024:
        bad("head near the size limit", {431}, maybe=True)

    if hard:
        expected: set[int | None] = set().union(*hard, *soft) - {101}
    elif soft:
        expected = set().union(*soft) | {101}
    else:
        expected = {101}

    eof = False
    if not valid and draw(st.integers(0, 5)) == 0:
        data = data[: draw(st.integers(0, len(data) - 1))]
        expected = {None, 400, 431}
        eof = True
        notes.append("truncated")
    chunks = tuple(draw(st.lists(st.integers(1, 200), max_size=3)))
    return RequestCase(data, frozenset(expected), version_mismatch, eof, chunks, tuple(notes))


def parse_response(data: bytes) -> tuple[int, bytes, bytes]:
    """Status, head and body of a complete HTTP/1.1 response; asserts it is one."""
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"incomplete HTTP answer: {data[:200]!r}"
    match = re.match(rb"HTTP/1\.1 (\d{3}) [^\r\n]*$", head.split(b"\r\n")[0])
    assert match, f"malformed status line: {head[:100]!r}"
    return int(match.group(1)), head, body


async def server_heads_case(case: RequestCase) -> str:
    handlers = Handlers()
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, handlers)
        baseline = len(live_tasks())
        with trio.fail_after(CASE_TIMEOUT):
            stream = await trio.open_tcp_stream(HOST, port)
            async with stream:
                status = await _exchange_head(stream, case)
            context = f"request {case.data[:300]!r} ({', '.join(case.notes)})"
            assert status in case.expected, (
                f"server answered {status}, expected one of "
                f"{sorted(case.expected, key=str)}; {context}"
            )
            await settle(baseline, handlers)
            handlers.check()
            assert handlers.accepted == (1 if status == 101 else 0), f"handler ran for {status}"
            await well_behaved_client(port)
            await settle(baseline, handlers)
            handlers.check()
        handlers.stopping = True
        nursery.cancel_scope.cancel()
    return "status-" + str(status)


async def _exchange_head(stream: trio.SocketStream, case: RequestCase) -> int | None:
    data, writes = case.data, []
    for size in case.chunks:
        writes.append(data[:size])
        data = data[size:]
    writes.append(data)
    for piece in writes:
        if piece:
            await stream.send_all(piece)
    if case.eof:
        await stream.send_eof()
    buffer = bytearray()
    try:
        while b"\r\n\r\n" not in buffer:
            data = await stream.receive_some(65536)
            if not data:
                assert not buffer, f"server sent a partial head: {bytes(buffer)!r}"
                return None
            buffer += data
    except trio.BrokenResourceError:
        raise AssertionError(
            f"server reset the connection; it had sent {bytes(buffer)[:200]!r}"
        ) from None
    status, head, rest = parse_response(bytes(buffer))
    if status == 101:
        key = header_values(case.data, b"sec-websocket-key")[0]
        assert header_values(head, b"sec-websocket-accept") == [accept_token(key)]
        assert b"websocket" in b",".join(header_values(head, b"upgrade")).lower()
        assert b"upgrade" in b",".join(header_values(head, b"connection")).lower()
        await stream.send_all(bytes(Frame(TEXT, b"after fuzz")))
        while not parse_frames(bytes(rest), masked=False, who="server").messages:
            data = await stream.receive_some(65536)
            assert data, f"server closed instead of echoing: {bytes(rest)!r}"
            rest += data
        output, ending = await converse(stream, [bytes(close_frame(1000))], False)
        assert ending == "eof", "server reset the connection after the handshake"
        got = parse_frames(bytes(rest) + output, masked=False, who="server")
        assert got.messages == [(TEXT, b"after fuzz")] and close_code_of(got.close) == 1000, got
        return status
    # An error answer: a complete one, then the server closes.
    try:
        while data := await stream.receive_some(65536):
            rest += data
    except trio.BrokenResourceError:
        raise AssertionError(f"server reset the connection after answering {status}") from None
    lengths = header_values(head, b"content-length")
    assert lengths and int(lengths[0]) == len(rest), f"body of {len(rest)} bytes, head {head!r}"
    if status == 426:
        assert header_values(head, b"upgrade"), "426 without an Upgrade header (RFC 7231 6.5.15)"
        if case.version_mismatch:
            assert b"13" in b",".join(header_values(head, b"sec-websocket-version")), (
                "426 for a bad version must list Sec-WebSocket-Version: 13 (RFC 6455 4.2.2)"
            )
    if status == 405:
        assert header_values(head, b"allow"), "405 without an Allow header (RFC 7231 6.5.5)"
    return status


def check_server_heads(case: RequestCase) -> str:
    return run_isolated(partial(server_heads_case, case))


# ============================================================= client_heads


@dataclass(frozen=True)
class AnswerCase:
    """A handshake answer for the raw server to send, with the expected outcome."""

    status_line: bytes
    headers: tuple[tuple[bytes, bytes | None], ...]  # None: the correct accept token
    junk_line: bytes | None
    trailing: bytes  # frames sent in the same write as the answer
    outcome: str  # "open", "rejected", "error", or "either"
    status: int | None
    notes: tuple[str, ...] = ()

    def render(self, request: bytes) -> bytes:
        key = header_values(request, b"sec-websocket-key")[0]
        lines = [self.status_line]
        for name, value in self.headers:
            lines.append(name + b": " + (accept_token(key) if value is None else value))
        if self.junk_line is not None:
            lines.insert(1, self.junk_line)
        return b"\r\n".join(lines) + b"\r\n\r\n"


@st.composite
def answer_cases(draw: st.DrawFn) -> AnswerCase:
    valid = draw(st.integers(0, 9)) < 4
    pick = Picker(draw, [] if valid else ["upgrade", "connection", "accept"])
    hard: list[str] = []
    soft: list[str] = []
    statuses = [101] * 6 + [100, 200, 204, 301, 400, 403, 404, 426, 500, 503]
    status = 101 if valid else draw(st.sampled_from(statuses))
    versions = [b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/2", b"ICY", b"HTTP/1.1 "]
    version = b"HTTP/1.1" if valid else draw(st.sampled_from(versions))
    status_line = (
        version + b" %d " % status + draw(st.sampled_from([b"Switching Protocols", b"", b"OK"]))
    )
    malformed = version in (b"HTTP/2", b"ICY")
    if version == b"HTTP/1.0":
        soft.append("HTTP/1.0 answer")
    elif version == b"HTTP/1.1 ":
        soft.append("double space in status line")
    headers: list[tuple[bytes, bytes | None]] = []

    upgrade, ok = pick(
        "upgrade", [[b"websocket"], [b"WebSocket"]], [[], [b"h2c"], [b"websocket", b"websocket"]]
    )
    headers += [(b"Upgrade", u) for u in upgrade]
    (soft if len(upgrade) == 2 else hard if not ok else []).append(f"Upgrade {upgrade!r}")
    connection, ok = pick(
        "connection",
        [[b"Upgrade"], [b"upgrade, keep-alive"]],
        [[], [b"close"], [b"Upgrade", b"Upgrade"]],
    )
    headers += [(b"Connection", c) for c in connection]
    (soft if len(connection) == 2 else hard if not ok else []).append(f"Connection {connection!r}")
    accepts, ok = pick(
        "accept",
        [[None]],
        [
            [],
            [b""],
            [b"dGhlIHNhbXBsZSBub25jZQ=="],
            [None, None],
            [None, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="],
        ],
    )
    headers += [(b"Sec-WebSocket-Accept", a) for a in accepts]
    (soft if accepts == [None, None] else hard if not ok else []).append(f"Accept {accepts!r}")
    if not valid and draw(st.integers(0, 5)) == 0:
        headers.append((b"Sec-WebSocket-Protocol", b"chat"))
        hard.append("subprotocol not offered")
    if not valid and draw(st.integers(0, 5)) == 0:
        headers.append(
            (b"Sec-WebSocket-Extensions", draw(st.sampled_from([b"permessage-deflate", b"x-foo"])))
        )
        hard.append("extension not offered")
    for _ in range(draw(st.integers(0, 3))):
        headers.append((b"X-" + draw(st.text(TOKEN, min_size=1, max_size=8)).encode(), b"v"))
    if draw(st.booleans()):
        headers = list(draw(st.permutations(headers)))
    junk = None
    if not valid and draw(st.integers(0, 5)) == 0:
        junk = draw(st.sampled_from([b"no colon", b"X: a\x00b", b": x"]))
        malformed = True
    trailing = b""
    if draw(st.booleans()):
        trailing = bytes(Frame(TEXT, b"hello", masked=False))

    if malformed:
        outcome = "error"
    elif status != 101:
        outcome = "rejected" if status >= 200 and not soft else "error"
    elif hard:
        outcome = "error"
    elif soft:
        outcome = "either"
    else:
        outcome = "open"
    return AnswerCase(
        status_line, tuple(headers), junk, trailing, outcome, status, tuple(hard + soft)
    )


async def client_heads_case(case: AnswerCase) -> str:
    app = ClientApp()
    tail = [case.trailing + bytes(close_frame(1000, masked=False))]

    def answer(request: bytes) -> bytes:
        return case.render(request)

    raw = RawServer(answer, tail if case.outcome != "error" else [], False)
    baseline = len(live_tasks())
    with trio.fail_after(CASE_TIMEOUT):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(one_connection_server, raw)
            await app.run(port)
    assert not app.unexpected, f"the client application saw unexpected exceptions: {app.unexpected}"
    context = f"answer {case.render(raw.request)!r} ({', '.join(case.notes)})"
    opened = app.handshake_error is None
    if case.outcome == "open":
        assert opened, f"client refused a valid answer: {app.handshake_error!r}; {context}"
    elif case.outcome in ("error", "rejected"):
        assert not opened, f"client accepted an invalid answer; {context}"
    if case.outcome == "rejected" and isinstance(app.handshake_error, trio_ws.ConnectionRejected):
        assert app.handshake_error.status_code == case.status
    elif case.outcome == "rejected":
        raise AssertionError(f"expected ConnectionRejected, got {app.handshake_error!r}; {context}")
    if opened:
        expected = [(TEXT, b"hello")] if case.trailing else []
        assert app.messages == expected and app.normal_end, (app.messages, app.closed)
    await settle(baseline)
    return "opened" if opened else type(app.handshake_error).__name__


def check_client_heads(case: AnswerCase) -> str:
    return run_isolated(partial(client_heads_case, case))


# ================================================================ registry

PROPERTIES: dict[str, tuple[Callable[[], st.SearchStrategy[Any]], Callable[[Any], str]]] = {
    "server_heads": (request_cases, check_server_heads),
    "server_frames": (partial(frame_cases, masked=True), check_server_frames),
    "client_frames": (partial(frame_cases, masked=False), check_client_frames),
    "client_heads": (answer_cases, check_client_heads),
    "server_deflate": (deflate_cases, check_server_deflate),
    "server_stream": (partial(frame_cases, masked=True), check_server_stream),
}
