"""permessage-deflate (RFC 7692) on the way in: whole and fragmented
compressed messages, corrupt data, and bombs refused after bounded work."""

from __future__ import annotations

import zlib

import pytest

from tests.support.codec import BINARY, CONT, PING, TEXT, frame
from trio_ws.core.events import ThreadJob, Violation

from .drive import deflated, events_of, feed, make, normalised

CUTS = [None, 1, 13]


def _finished(data: bytes) -> bytes:
    """*data* deflated as a stream that a BFINAL block ends."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -12)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH)


FINISHED = _finished(b"first")
RSV1 = 4  # the codec's rsv argument: RSV1, RSV2, RSV3 as bits 2, 1, 0

ROWS: list[tuple[str, bytes, list[object]]] = [
    (
        "text",
        frame(TEXT, deflated(b"hello hello hello"), rsv=RSV1),
        [("message", "hello hello hello")],
    ),
    (
        "binary",
        frame(BINARY, deflated(bytes(range(256))), rsv=RSV1),
        [("message", bytes(range(256)))],
    ),
    ("empty", frame(BINARY, deflated(b""), rsv=RSV1), [("message", b"")]),
    ("uncompressed, negotiated", frame(TEXT, b"plain"), [("message", "plain")]),
    (
        "compressed in fragments",
        frame(TEXT, deflated(b"abcabc")[:3], fin=False, rsv=RSV1)
        + frame(CONT, deflated(b"abcabc")[3:]),
        [("message", "abcabc")],
    ),
    (
        "RSV1 on a continuation",
        frame(TEXT, b"a", fin=False) + frame(CONT, b"b", rsv=RSV1),
        [("partial", "a"), Violation(1002, "RSV1 on a continuation frame (never compressed)")],
    ),
    # The deflate extension refuses these and says why (wsproto's own reason
    # is only "error in extension").
    (
        "RSV1 on a ping",
        frame(PING, b"", rsv=RSV1),
        [Violation(1002, "RSV1 on a control frame (never compressed)")],
    ),
    (
        "corrupt data",
        frame(BINARY, b"\xff\xff\xff\xff", rsv=RSV1),
        [1007],
    ),
    ("invalid UTF-8 once inflated", frame(TEXT, deflated(b"\xff\xfe"), rsv=RSV1), [1007]),
    # RFC 7692 7.2.3.5 lets a sender end a message with a BFINAL block;
    # that ends its deflate stream, so nothing compressed may follow on it.
    ("a message ended by a BFINAL block", frame(TEXT, FINISHED, rsv=RSV1), [("message", "first")]),
    # The tail senders strip may complete such a block: its rest is no data.
    ("a BFINAL block the tail completes", frame(TEXT, b"\x03", rsv=RSV1), [("message", "")]),
    (
        "a compressed message after a BFINAL block",
        frame(TEXT, FINISHED, rsv=RSV1) + frame(TEXT, deflated(b"next"), rsv=RSV1),
        [("message", "first"), 1007],
    ),
    (
        "compressed data after a BFINAL block in one message",
        frame(TEXT, FINISHED + deflated(b"next"), rsv=RSV1),
        [1007],
    ),
]


def codes_of_failures(events: list[object]) -> list[object]:
    return [e.code if isinstance(e, Violation) and e.code == 1007 else e for e in events]


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize(("name", "data", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_compressed(name: str, data: bytes, expected: list[object], cut: int | None) -> None:
    events = codes_of_failures(normalised(events_of(data, cut, deflate=True)))
    assert [e for e in events if not (isinstance(e, tuple) and e[0] == "partial")] == [
        e for e in expected if not (isinstance(e, tuple) and e[0] == "partial")
    ]


@pytest.mark.parametrize("cut", [None, 1000])
def test_a_bomb_is_refused_at_the_limit(cut: int | None) -> None:
    """64 MiB of zeros in ~64 KiB: 1009 without inflating past the limit."""
    bomb = deflated(bytes(64 << 20))
    events = normalised(
        events_of(frame(BINARY, bomb, rsv=RSV1), cut, deflate=True, max_size=1 << 16)
    )
    # Cut into reads, it is inflated piece by piece: what came before the
    # violation (partial chunks) stays within the limit.
    partial = [e for e in events if isinstance(e, tuple) and e[0] == "partial"]
    assert sum(len(e[1]) for e in partial) <= 1 << 16
    events = [e for e in events if e not in partial]
    assert len(events) == 1 and isinstance(events[0], Violation)
    assert events[0].code == 1009


def test_the_context_carries_over_between_messages() -> None:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    one = compressor.compress(b"repeat me " * 10) + compressor.flush(zlib.Z_SYNC_FLUSH)
    two = compressor.compress(b"repeat me " * 10) + compressor.flush(zlib.Z_SYNC_FLUSH)
    data = frame(TEXT, one[:-4], rsv=RSV1) + frame(TEXT, two[:-4], rsv=RSV1)
    assert normalised(events_of(data, deflate=True)) == [("message", "repeat me " * 10)] * 2


def test_a_big_message_is_inflated_as_a_thread_job() -> None:
    """The work is guessed from the last message's ratio: the first message
    of 1 MiB that compresses 1000:1 looks small, the second does not."""
    core = make(deflate=True, max_size=64 << 20, thread_threshold=1 << 16)
    message = frame(BINARY, deflated(b"q" * (1 << 20)), rsv=RSV1)
    core.receive_data(message)
    assert core.next_event() == b"q" * (1 << 20)
    core.receive_data(message)
    job = core.next_event()
    assert isinstance(job, ThreadJob)
    job.run()
    assert core.next_event() == b"q" * (1 << 20)


def test_a_small_message_is_not_a_thread_job() -> None:
    core = make(deflate=True, thread_threshold=1 << 16)
    core.receive_data(frame(BINARY, deflated(b"small"), rsv=RSV1))
    assert core.next_event() == b"small"


def test_compressed_while_streaming_comes_in_bounded_chunks() -> None:
    core = make(deflate=True, max_size=64 << 20)
    core.set_limit(64 << 20, streaming=True)
    events = feed(core, frame(BINARY, deflated(bytes(8 << 20)), rsv=RSV1))
    sizes = [len(e.data) for e in events if not isinstance(e, (str, bytes, Violation))]  # type: ignore[union-attr]
    assert sum(sizes) == 8 << 20
    assert max(sizes) <= 2 << 20  # 1,024 compressed bytes at a time


@pytest.mark.parametrize("cut", CUTS)
def test_fragments_after_a_bfinal_block_are_refused_not_dropped(cut: int | None) -> None:
    # Before the fix the core inflated nothing past the stream's end and
    # delivered the message without "more": data lost without a word.
    data = frame(TEXT, FINISHED[:2], fin=False, rsv=RSV1) + frame(
        CONT, FINISHED[2:] + deflated(b"more")
    )
    events = codes_of_failures(normalised(events_of(data, cut, deflate=True)))
    assert events[-1] == 1007
    assert not any("more" in str(event) for event in events)
