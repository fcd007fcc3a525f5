"""Fragmented messages (RFC 6455 5.4) and UTF-8 of text (8.1), chunk by chunk."""

from __future__ import annotations

import pytest

from tests.support.codec import BINARY, CONT, PING, TEXT, frame
from trio_ws.core.events import Chunk, Violation

from .drive import events_of, feed, make, normalised

CUTS = [None, 1, 3]
NEW_DATA = Violation(1002, "new data frame while a fragmented message is in progress")

FRAGMENTS: list[tuple[str, bytes, list[object]]] = [
    ("text in two", frame(TEXT, b"he", fin=False) + frame(CONT, b"llo"), [("message", "hello")]),
    (
        "binary in three",
        frame(BINARY, b"a", fin=False) + frame(CONT, b"b", fin=False) + frame(CONT, b"c"),
        [("message", b"abc")],
    ),
    ("empty last frame", frame(BINARY, b"ab", fin=False) + frame(CONT), [("message", b"ab")]),
    ("all empty", frame(TEXT, fin=False) + frame(CONT), [("message", "")]),
    (
        "new text mid-message",
        frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"),
        [("partial", "a"), NEW_DATA],
    ),
    (
        "new binary mid-message",
        frame(BINARY, b"a", fin=False) + frame(BINARY, b"b", fin=False),
        [("partial", b"a"), NEW_DATA],
    ),
    (
        "a message after a fragmented one",
        frame(TEXT, b"a", fin=False) + frame(CONT, b"b") + frame(BINARY, b"c"),
        [("message", "ab"), ("message", b"c")],
    ),
    (
        "a continuation with RSV bits mid-message",
        frame(TEXT, b"a", fin=False) + frame(CONT, b"b", rsv=2),
        [("partial", "a"), Violation(1002, "Reserved bit set unexpectedly")],
    ),
]

# The reasons for bad UTF-8 are wsproto's or ours, and wsproto's name the
# position, which depends on where the reads cut: only codes are compared.
UTF8: list[tuple[str, bytes, list[object]]] = [
    ("valid whole", frame(TEXT, "κόσμε".encode()), [("message", "κόσμε")]),
    ("invalid whole", frame(TEXT, b"\xce\xba\xff"), [1007]),
    (
        "character split across fragments",
        frame(TEXT, "é".encode()[:1], fin=False) + frame(CONT, "é".encode()[1:]),
        [("message", "é")],
    ),
    ("invalid in a fragment", frame(TEXT, b"ok", fin=False) + frame(CONT, b"\xff"), [1007]),
    ("truncated at the end", frame(TEXT, b"ok", fin=False) + frame(CONT, "é".encode()[:1]), [1007]),
    ("invalid, long", frame(TEXT, b"a" * 70_000 + b"\xff"), [1007]),
    ("overlong encoding", frame(TEXT, b"\xc0\xaf"), [1007]),
    ("surrogate", frame(TEXT, b"\xed\xa0\x80"), [1007]),
    ("valid 4-byte character", frame(TEXT, "𝄞".encode()), [("message", "𝄞")]),
]


def codes(events: list[object]) -> list[object]:
    """Violations as their codes; what came of a message before one, left out."""
    out: list[object] = []
    for event in events:
        if isinstance(event, Violation):
            out.append(event.code)
        elif not (isinstance(event, tuple) and event[0] == "partial"):
            out.append(event)
    return out


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize(("name", "data", "expected"), FRAGMENTS, ids=[r[0] for r in FRAGMENTS])
def test_fragments(name: str, data: bytes, expected: list[object], cut: int | None) -> None:
    assert normalised(events_of(data, cut)) == expected


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize(("name", "data", "expected"), UTF8, ids=[r[0] for r in UTF8])
def test_utf8(name: str, data: bytes, expected: list[object], cut: int | None) -> None:
    assert codes(normalised(events_of(data, cut))) == expected


def test_chunks_come_as_the_bytes_arrive() -> None:
    """Memory is bounded by one read: each read's payload is handed on at once."""
    core = make()
    data = frame(BINARY, b"a" * 10, fin=False) + frame(CONT, b"b" * 10)
    first = feed(core, data[:9])
    assert first and all(isinstance(e, Chunk) and not e.final for e in first)
    rest = feed(core, data[9:])
    assert isinstance(rest[-1], Chunk) and rest[-1].final
    assert b"".join(e.data for e in first + rest if isinstance(e, Chunk)) == b"a" * 10 + b"b" * 10  # type: ignore[misc]


def test_ping_between_fragments_comes_at_once() -> None:
    events = events_of(frame(TEXT, b"ab", fin=False) + frame(PING, b"!") + frame(CONT, b"cd"))
    assert events == [Chunk("ab", False), events[1], Chunk("cd", True)]
    assert events[1].payload == b"!"  # type: ignore[union-attr]


def test_a_long_text_frame_is_decoded_read_by_read() -> None:
    """A text frame longer than one read comes as chunks as it arrives (the
    fast branch, not wsproto), and bad UTF-8 fails it before the rest arrives."""
    core = make()
    data = frame(TEXT, "é".encode() * 5000)  # 10,000 bytes
    first = feed(core, data[:4001])
    assert first and all(isinstance(e, Chunk) and not e.final for e in first)
    rest = feed(core, data[4001:])
    assert "".join(e.data for e in first + rest if isinstance(e, Chunk)) == "é" * 5000  # type: ignore[misc]
    assert isinstance(rest[-1], Chunk) and rest[-1].final
    assert not core.general_branch_made
    bad = make()
    broken = frame(TEXT, b"ok" * 3000 + b"\xff" + b"ok" * 3000)
    assert normalised(feed(bad, broken[:7000]))[-1] == Violation(
        1007, "invalid UTF-8 in a text message"
    )
    assert not bad.general_branch_made
