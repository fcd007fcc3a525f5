"""Reading what an endpoint sent and judging it against the model.

:func:`parse_frames` decodes the endpoint's output with the test-side codec
and asserts that every frame conforms to RFC 6455; :func:`judge` checks the
result against the outcomes :func:`tests.fuzz.model.expect` allows.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from ..support.codec import (
    BINARY,
    CLOSE,
    CONT,
    KNOWN_OPCODES,
    PING,
    TEXT,
    close_code_of,
    decode_frame,
)
from .model import AMBIGUOUS_CLOSE_CODES, VALID_CLOSE_CODES, Expectation, valid_utf8


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
        wire = decode_frame(data, pos)
        assert wire is not None, f"{who} sent a truncated frame: {data[pos : pos + 20].hex()}"
        pos += wire.size
        fin, rsv, opcode, payload = wire.fin, wire.rsv, wire.opcode, wire.payload
        rsv1_ok = inflate and opcode in (TEXT, BINARY)
        first = data[pos - wire.size]
        assert rsv & 0b011 == 0, f"{who} set RSV2/RSV3 without an extension: {first:#x}"
        assert not rsv & 0b100 or rsv1_ok, f"{who} set RSV1 where it may not: {first:#x}"
        assert opcode in KNOWN_OPCODES, f"{who} sent reserved opcode {opcode:#x}"
        assert wire.masked == masked, f"{who} sent a frame with mask bit {int(wire.masked)}"
        n = wire.length
        if wire.length_bits == 16:
            assert n >= 126, f"{who} used a non-minimal 16-bit length"
        elif wire.length_bits == 64:
            assert 1 << 16 <= n < 1 << 63, f"{who} used an invalid 64-bit length"
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
