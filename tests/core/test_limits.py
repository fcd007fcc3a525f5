"""The size limit (``max_message_size``), refused as early as it can be."""

from __future__ import annotations

import pytest

from tests.support.codec import BINARY, CONT, TEXT, frame
from trio_ws.core.events import Violation

from .drive import events_of, feed, make, normalised

CUTS = [None, 1, 9]

ROWS: list[tuple[str, bytes, int, list[object]]] = [
    ("at the limit", frame(BINARY, b"x" * 100), 100, [("message", b"x" * 100)]),
    (
        "one byte over",
        frame(BINARY, b"x" * 101),
        100,
        [Violation(1009, "message of at least 101 bytes exceeds limit of 100")],
    ),
    (
        "text over",
        frame(TEXT, b"t" * 300),
        200,
        [Violation(1009, "message of at least 300 bytes exceeds limit of 200")],
    ),
    (
        "fragments that cross it",
        frame(TEXT, b"a" * 60, fin=False) + frame(CONT, b"b" * 60),
        100,
        [
            ("partial", "a" * 60),
            Violation(1009, "message of at least 120 bytes exceeds limit of 100"),
        ],
    ),
    (
        "fragments at the limit",
        frame(BINARY, b"a" * 50, fin=False) + frame(CONT, b"b" * 50),
        100,
        [("message", b"a" * 50 + b"b" * 50)],
    ),
]


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize(("name", "data", "limit", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_limit(name: str, data: bytes, limit: int, expected: list[object], cut: int | None) -> None:
    assert normalised(events_of(data, cut, max_size=limit)) == expected


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_1009_before_the_payload(opcode: int) -> None:
    """The header says the frame is too big: refused before any payload arrives."""
    header = frame(opcode, b"z" * 5000, mask=False)[:4]  # unmasked: 4 header bytes
    events = feed(make(client=True, max_size=4096), header)
    assert events == [Violation(1009, "message of at least 5000 bytes exceeds limit of 4096")]


def test_1009_before_the_payload_of_a_later_fragment() -> None:
    first = frame(BINARY, b"a" * 3000, fin=False)
    second_header = frame(CONT, b"b" * 3000)[:8]  # masked, 16-bit length: 8 header bytes
    events = normalised(feed(make(max_size=4096), first + second_header))
    assert events[-1] == Violation(1009, "message of at least 6000 bytes exceeds limit of 4096")


def test_too_many_fragments_is_1008() -> None:
    data = frame(BINARY, fin=False) + frame(CONT, fin=False) * 1100 + frame(CONT)
    events = normalised(events_of(data, max_size=1000))  # at least 1,024 fragments allowed
    assert events[-1] == Violation(1008, "message has more than 1024 fragments")


def test_the_limit_is_the_streams_while_one_is_open() -> None:
    core = make(max_size=100)
    core.set_limit(10_000, streaming=True)
    events = normalised(feed(core, frame(BINARY, b"s" * 5000)))
    assert events == [("message", b"s" * 5000)]
