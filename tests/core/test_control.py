"""Control frames (RFC 6455 5.5): pings, pongs and Close frames as the peer sends them."""

from __future__ import annotations

import pytest

from tests.support.codec import BINARY, CLOSE, PING, PONG, TEXT, close_payload, frame
from trio_ws.core.events import Close, Ping, Pong, Violation
from trio_ws.core.protocol import State

from .drive import events_of, feed, make, normalised

CUTS = [None, 1, 5]

ROWS: list[tuple[str, bytes, list[object]]] = [
    ("ping", frame(PING, b"abc"), [Ping(b"abc")]),
    ("empty ping", frame(PING), [Ping(b"")]),
    ("ping of 125 bytes", frame(PING, b"p" * 125), [Ping(b"p" * 125)]),
    ("pong", frame(PONG, b"xyz"), [Pong(b"xyz")]),
    (
        "ping of 126 bytes",
        frame(PING, b"p" * 126),
        [Violation(1002, "Control frame with payload len > 125")],
    ),
    (
        "fragmented ping",
        frame(PING, b"a", fin=False),
        [Violation(1002, "Invalid attempt to fragment control frame")],
    ),
    (
        "ping with RSV1",
        frame(PING, b"a", rsv=4),
        [Violation(1002, "Reserved bit set unexpectedly")],
    ),
    (
        "unmasked ping",
        frame(PING, b"a", mask=False),
        [Violation(1002, "server received unexpected unmasked frame")],
    ),
    ("close 1000", frame(CLOSE, close_payload(1000, b"bye")), [Close(1000, "bye")]),
    ("close without a code", frame(CLOSE), [Close(1005, None)]),
    ("close 1001, no reason", frame(CLOSE, close_payload(1001)), [Close(1001, None)]),
    ("close 3000", frame(CLOSE, close_payload(3000)), [Close(3000, None)]),
    ("close 4999", frame(CLOSE, close_payload(4999, "é".encode())), [Close(4999, "é")]),
    ("close 1013", frame(CLOSE, close_payload(1013)), [Close(1013, None)]),
    ("close of 1 byte", frame(CLOSE, b"\x03"), [Violation(1002, "CLOSE with 1 byte payload")]),
    ("close 999", frame(CLOSE, close_payload(999)), [Violation(1002, "CLOSE with invalid code")]),
    ("close 5000", frame(CLOSE, close_payload(5000)), [Violation(1002, "CLOSE with invalid code")]),
    (
        "close 1005 on the wire",
        frame(CLOSE, close_payload(1005)),
        [Violation(1002, "remote CLOSE with local-only reason")],
    ),
    (
        "close 1006 on the wire",
        frame(CLOSE, close_payload(1006)),
        [Violation(1002, "remote CLOSE with local-only reason")],
    ),
    (
        "close 1014 (unregistered)",
        frame(CLOSE, close_payload(1014)),
        [Violation(1002, "CLOSE with unknown reserved code")],
    ),
    (
        "close 2999 (reserved)",
        frame(CLOSE, close_payload(2999)),
        [Violation(1002, "CLOSE with unknown reserved code")],
    ),
    (
        "ping between fragments",
        frame(TEXT, b"ab", fin=False) + frame(PING, b"!") + frame(0, b"cd"),
        [Ping(b"!"), ("message", "abcd")],
    ),
    (
        "nothing after a Close",
        frame(CLOSE, close_payload(1000)) + frame(TEXT, b"late") + frame(PING),
        [Close(1000, None)],
    ),
    (
        "ping then message",
        frame(PING, b"1") + frame(BINARY, b"2"),
        [Ping(b"1"), ("message", b"2")],
    ),
]


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize(("name", "data", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_control(name: str, data: bytes, expected: list[object], cut: int | None) -> None:
    events = normalised(events_of(data, cut))
    # The ping between fragments comes before the message it interrupted
    # is complete; normalised() puts the message where its last chunk is.
    assert events == expected


def test_invalid_utf8_close_reason_is_1007() -> None:
    events = events_of(frame(CLOSE, close_payload(1000, b"\xff")))
    assert len(events) == 1 and isinstance(events[0], Violation)
    assert events[0].code == 1007
    assert "CLOSE reason" in events[0].reason


def test_close_received_moves_the_state() -> None:
    core = make()
    assert core.state is State.OPEN
    assert feed(core, frame(CLOSE, close_payload(1001, b"gone"))) == [Close(1001, "gone")]
    assert core.state is State.REMOTE_CLOSING
    assert core.close_received == (1001, "gone")
