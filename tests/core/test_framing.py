"""Framing, masking and lengths (RFC 6455 5.2, 5.3): bytes in, events out.

Every row is fed whole, one byte at a time and in 7-byte pieces: the core
must report the same messages however the reads cut the frames.
"""

from __future__ import annotations

import pytest

from tests.support.codec import BINARY, CONT, TEXT, Frame, frame
from trio_ws.core.events import Violation

from .drive import events_of, normalised

CUTS = [None, 1, 7]

# (name, bytes from the peer, options of the core, the events expected)
ROWS: list[tuple[str, bytes, dict[str, object], list[object]]] = [
    ("text", frame(TEXT, b"hello"), {}, [("message", "hello")]),
    ("binary", frame(BINARY, b"\x00\xff"), {}, [("message", b"\x00\xff")]),
    ("empty text", frame(TEXT), {}, [("message", "")]),
    ("16-bit length", frame(BINARY, b"x" * 300), {}, [("message", b"x" * 300)]),
    ("64-bit length", frame(BINARY, b"y" * 70_000), {}, [("message", b"y" * 70_000)]),
    ("long text", frame(TEXT, "é".encode() * 40_000), {}, [("message", "é" * 40_000)]),
    (
        "two frames in one read",
        frame(TEXT, b"a") + frame(BINARY, b"b"),
        {},
        [("message", "a"), ("message", b"b")],
    ),
    (
        "unmasked frame to a server",
        frame(TEXT, b"hi", mask=False),
        {},
        [Violation(1002, "server received unexpected unmasked frame")],
    ),
    (
        "masked frame to a client",
        frame(TEXT, b"hi"),
        {"client": True},
        [Violation(1002, "client received unexpected masked frame")],
    ),
    (
        "unmasked frame to a client",
        frame(TEXT, b"hi", mask=False),
        {"client": True},
        [("message", "hi")],
    ),
    (
        "length not in its shortest form",
        bytes(Frame(BINARY, b"abc", encoding="16")),
        {},
        [Violation(1002, "Payload length used 2 bytes when 1 would have sufficed")],
    ),
    (
        "64-bit length with its top bit set",
        bytes(Frame(BINARY, b"abc", encoding="64msb")),
        {},
        [Violation(1002, "8-byte payload length with non-zero MSB")],
    ),
    (
        "a fragment's 64-bit length with its top bit set",  # was 1009 (the size limit)
        bytes(Frame(BINARY, b"abc", fin=False, encoding="64msb")),
        {},
        [Violation(1002, "8-byte payload length with non-zero MSB")],
    ),
    ("RSV2 set", frame(TEXT, b"a", rsv=2), {}, [Violation(1002, "Reserved bit set unexpectedly")]),
    (
        "RSV1 without deflate",
        frame(TEXT, b"a", rsv=4),
        {},
        [Violation(1002, "Reserved bit set unexpectedly")],
    ),
    ("opcode 3", frame(3, b""), {}, [Violation(1002, "Invalid opcode 0x3")]),
    ("opcode 11", frame(11, b""), {}, [Violation(1002, "Invalid opcode 0xb")]),
    (
        "continuation with nothing to continue",
        frame(CONT, b"x"),
        {},
        [Violation(1002, "unexpected CONTINUATION")],
    ),
]


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize(("name", "data", "options", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_framing(
    name: str, data: bytes, options: dict[str, object], expected: list[object], cut: int | None
) -> None:
    assert normalised(events_of(data, cut, **options)) == expected


def test_nothing_comes_of_a_partial_frame() -> None:
    whole = frame(BINARY, b"z" * 1000)
    assert events_of(whole[:-1]) == []
    assert events_of(whole[:1]) == []
