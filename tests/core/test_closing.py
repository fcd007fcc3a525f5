"""The closing handshake (RFC 6455 7) and the one state value, and the frames the core sends."""

from __future__ import annotations

import pytest

from tests.support.codec import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    close_payload,
    decode_frame,
    frame,
)
from trio_ws.core.events import Chunk, Close
from trio_ws.core.protocol import State

from .drive import deflated, feed, make, normalised

PEER_CLOSE = frame(CLOSE, close_payload(1000, b"bye"))


def wire(pieces: tuple[bytes, bytes | bytearray] | None) -> tuple[int, bool, bool, int, bytes]:
    """``(opcode, fin, masked, rsv, payload)`` of a frame the core made."""
    assert pieces is not None
    decoded = decode_frame(b"".join(pieces))
    assert decoded is not None and decoded.size == sum(map(len, pieces))
    return decoded.opcode, decoded.fin, decoded.masked, decoded.rsv, decoded.payload


# (name, what happens in order, the state after each step)
# Steps: "send" (our Close), "peer" (the peer's Close arrives), "fail".
ROWS: list[tuple[str, list[str], list[State]]] = [
    ("we close first", ["send", "peer"], [State.LOCAL_CLOSING, State.CLOSED]),
    ("the peer closes first", ["peer", "send"], [State.REMOTE_CLOSING, State.CLOSED]),
    ("we fail an open connection", ["fail"], [State.FAILED]),
    ("we fail while closing", ["send", "fail"], [State.LOCAL_CLOSING, State.FAILED]),
    (
        "nothing fails a closed connection",
        ["send", "peer", "fail"],
        [State.LOCAL_CLOSING, State.CLOSED, State.CLOSED],
    ),
]


@pytest.mark.parametrize(("name", "steps", "states"), ROWS, ids=[r[0] for r in ROWS])
def test_states(name: str, steps: list[str], states: list[State]) -> None:
    core = make()
    for step, state in zip(steps, states, strict=True):
        if step == "send":
            assert core.close_frame(1000, "done") is not None
        elif step == "peer":
            assert feed(core, PEER_CLOSE) == [Close(1000, "bye")]
        else:
            core.fail(1002, "broken")
        assert core.state is state


def test_one_close_frame_only() -> None:
    core = make()
    assert wire(core.close_frame(1001, "away")) == (
        CLOSE,
        True,
        False,
        0,
        close_payload(1001, b"away"),
    )
    assert core.close_frame(1000) is None
    assert core.fail(1002, "x") is None
    assert core.close_sent == (1001, "away")


def test_the_echo_completes_the_handshake() -> None:
    core = make()
    feed(core, PEER_CLOSE)
    assert wire(core.close_frame(1000, "bye")) == (
        CLOSE,
        True,
        False,
        0,
        close_payload(1000, b"bye"),
    )
    assert core.state is State.CLOSED and core.close_received == (1000, "bye")
    assert core.close_frame(1000) is None


def test_failing_sends_the_violation_once() -> None:
    core = make()
    assert wire(core.fail(1007, "bad text")) == (
        CLOSE,
        True,
        False,
        0,
        close_payload(1007, b"bad text"),
    )
    assert core.fail(1007, "bad text") is None
    assert core.state is State.FAILED


@pytest.mark.parametrize(
    ("code", "reason", "payload"),
    [
        (1005, None, b""),  # no status: a Close frame without a code
        (1006, "lost", close_payload(1000, b"lost")),  # local-only codes are never sent
        (1000, None, close_payload(1000)),
        (4000, "é" * 70, close_payload(4000, ("é" * 61).encode())),  # cut at a character
    ],
)
def test_close_payloads(code: int, reason: str | None, payload: bytes) -> None:
    assert wire(make().close_frame(code, reason))[4] == payload


def test_no_ping_or_pong_once_closing() -> None:
    core = make()
    assert wire(core.ping_frame(b"p")) == (PING, True, False, 0, b"p")
    assert wire(core.pong_frame(b"q")) == (PONG, True, False, 0, b"q")
    core.close_frame(1000)
    assert core.ping_frame(b"p") is None and core.pong_frame(b"q") is None


def test_a_clients_frames_are_masked() -> None:
    core = make(client=True)
    assert wire(core.message_frame(True, b"hi")) == (TEXT, True, True, 0, b"hi")
    assert wire(core.ping_frame(b"")) == (PING, True, True, 0, b"")
    assert wire(core.close_frame(1000)) == (CLOSE, True, True, 0, close_payload(1000))


def test_fragment_frames() -> None:
    core = make()
    first = core.fragment_frame(False, b"ab", first=True, fin=False, deflate=False)
    last = core.fragment_frame(False, b"cd", first=False, fin=True, deflate=False)
    assert wire(first) == (BINARY, False, False, 0, b"ab")
    assert wire(last) == (CONT, True, False, 0, b"cd")


def test_the_send_policy_and_compressed_frames() -> None:
    core = make(deflate=True, min_size=32)
    assert core.send_deflate(b"short", True, True) is None  # too short to gain
    text = b"compress me " * 20
    assert core.send_deflate(text, True, False) is None  # the caller said not to
    assert core.send_deflate(text, True, True) is not None
    frame_ = core.message_frame(True, core.compress(text, True), compressed=True)
    opcode, fin, _, rsv, payload = wire(frame_)
    assert (opcode, fin, rsv) == (TEXT, True, 4) and len(payload) < len(text)
    # What a peer with the same parameters inflates it to: the message.
    peer = make(client=True, deflate=True)
    assert feed(peer, frame(TEXT, payload, rsv=4, mask=False)) == [text.decode()]
    assert make().send_deflate(text, True, True) is None  # not negotiated


def test_needs_thread_follows_the_threshold() -> None:
    core = make(deflate=True, thread_threshold=1000)
    assert core.needs_thread(1000) and not core.needs_thread(999)
    assert not make().needs_thread(10**9)


def test_deflated_helper_round_trips() -> None:
    assert feed(make(deflate=True), frame(BINARY, deflated(b"x"), rsv=4)) == [b"x"]


def test_wsproto_is_made_only_when_needed() -> None:
    """An ordinary life (messages, fragments, compressed or not, pings, a
    close) never needs wsproto's parser; a bad frame does."""
    core = make(deflate=True)
    compressed = deflated(b"abc" * 50)
    ordinary = (
        frame(TEXT, b"hi")
        + frame(BINARY, deflated(b"z" * 100), rsv=4)
        + frame(BINARY, b"a", fin=False)
        + frame(CONT, b"b")
        + frame(TEXT, compressed[:2], fin=False, rsv=4)
        + frame(CONT, compressed[2:])
        + frame(PING, b"1")
        + frame(PONG, b"2")
        + PEER_CLOSE
    )
    events = feed(core, ordinary)
    chunks = [e.data for e in events if isinstance(e, Chunk)]
    assert b"".join(c for c in chunks if isinstance(c, bytes)) == b"ab"
    assert "".join(c for c in chunks if isinstance(c, str)) == "abc" * 50
    assert len([e for e in events if not isinstance(e, Chunk)]) == 5  # 2 messages, 3 control
    assert not core.general_branch_made
    other = make(deflate=True)
    packed = deflated(b"abc")
    fragments = frame(TEXT, packed[:2], fin=False, rsv=4) + frame(CONT, packed[2:])
    assert normalised(feed(other, fragments)) == [("message", "abc")]
    assert not other.general_branch_made  # compressed fragments: the fast branch too
    feed(other, frame(TEXT, b"bad", rsv=2))
    assert other.general_branch_made


@pytest.mark.parametrize(
    "ending",
    [PEER_CLOSE, frame(TEXT, b"\xff"), frame(0x3, b"reserved opcode")],
    ids=["close", "invalid utf-8", "reserved opcode"],
)
def test_nothing_is_decoded_after_the_input_is_over(ending: bytes) -> None:
    # After a Close or a Violation the core answers None for good, whatever
    # comes (the parser now yields None instead of ending).
    core = make()
    events = feed(core, frame(TEXT, b"before") + ending)
    assert events[0] == "before" and len(events) == 2
    assert feed(core, frame(TEXT, b"after") + PEER_CLOSE) == []
    assert core.next_event() is None
