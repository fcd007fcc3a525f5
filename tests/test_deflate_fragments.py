"""Compressed fragmented messages on the fast branch.

A message whose first frame has RSV1 and no FIN is inflated piece by piece
(trio_ws.core.inflater.MessageInflater, driven through
trio_ws.core.fragments.FragmentedMessage): whatever the cut into pieces, the
chunks add up to the message, none is bigger than the chunk size, the size
limit holds after decompression, and the connection's decompressor context
carries on into the next message, whichever branch decodes it. Then the
same through the protocol core (frames in, events out) and once end to end.
"""

from __future__ import annotations

import random
import tracemalloc

import pytest
import trio

import trio_ws
from trio_ws.core import fragments
from trio_ws.core.deflate import PerMessageDeflate
from trio_ws.core.events import Chunk, Ping, ThreadJob, Violation
from trio_ws.core.protocol import Protocol
from trio_ws.core.size_limit import MessageSizeLimit
from trio_ws.options import INFLATE_CHUNK_SIZE

from .conftest import HOST
from .support.codec import BINARY, CONTINUATION, PING, TEXT, frame
from .test_deflate_fast import MiB, Sender, json_message, negotiated
from .test_fragments_fast import kind_of

CHUNK = 4096


def cut(data: bytes, rng: random.Random) -> list[bytes]:
    """*data* in random pieces, some of them empty."""
    pieces, pos = [], 0
    while pos < len(data):
        step = rng.choice([0, 1, 7, 100, 1000, 5000, 70000])
        pieces.append(data[pos : pos + step])
        pos += step
    return pieces or [b""]


def decode(
    deflate: PerMessageDeflate, payload: bytes, pieces: list[bytes], opcode: int, max_size: int
) -> tuple[list[str | bytes], fragments.Violation | None]:
    """Feed *pieces* of *payload* (one frame per piece) as the reader would:
    the chunks, and the violation if one ended the message."""
    assert b"".join(pieces) == payload
    message = fragments.FragmentedMessage(opcode, deflate.message_inflater(CHUNK))
    chunks: list[str | bytes] = []
    for i, piece in enumerate(pieces):
        assert message.frame(len(piece), max_size) is None
        final = i == len(pieces) - 1
        for chunk in message.chunks(piece, final):
            if isinstance(chunk, tuple):
                return chunks, chunk
            assert not chunks or not message.finished or final
            chunks.append(chunk)
    assert message.finished
    return chunks, None


@pytest.mark.parametrize("seed", range(20))
def test_any_cut_inflates_to_the_message_in_bounded_chunks(seed: int) -> None:
    rng = random.Random(seed)
    deflate, sender = negotiated(), Sender()
    for _ in range(6):
        text = rng.random() < 0.5
        if text:
            chars = "".join(json_message(rng.randrange(100)) for _ in range(80))
            chars += "é€𝄞" * rng.randrange(2000)  # multi-byte characters to split
            original: str | bytes = chars
            data = chars.encode()
        else:
            original = data = rng.randbytes(rng.randrange(30000)) * rng.randrange(1, 5)
        payload = sender.compress(data)
        if rng.random() < 0.4:  # whole messages in between, on the same context
            assert deflate.inflate_message(payload, text, MiB) == original
            continue
        chunks, violation = decode(
            deflate, payload, cut(payload, rng), TEXT if text else BINARY, MiB
        )
        assert violation is None
        assert "".join(chunks) == original if text else b"".join(chunks) == original  # type: ignore[arg-type]
        # A UTF-8 character split across chunks waits for the next one.
        assert all(len(c if isinstance(c, bytes) else c.encode()) <= CHUNK + 3 for c in chunks)


def test_a_small_piece_that_inflates_a_lot_comes_out_lazily() -> None:
    deflate = negotiated()
    payload = Sender().compress(bytes(8 * MiB))  # about 8 KiB
    message = fragments.FragmentedMessage(BINARY, deflate.message_inflater(CHUNK))
    assert message.frame(len(payload), 2**62) is None
    chunks = message.chunks(payload, True)
    assert next(chunks) == bytes(CHUNK)
    assert message.size == CHUNK  # nothing inflated beyond the chunk taken
    assert not message.finished
    total = CHUNK + sum(len(c) for c in chunks)
    assert total == 8 * MiB == message.size
    assert message.finished


@pytest.mark.parametrize("max_size", [0, 1, 1000, CHUNK, 3 * CHUNK + 5])
def test_a_bomb_stops_one_byte_past_the_limit(max_size: int) -> None:
    deflate = negotiated()
    payload = Sender().compress(bytes(64 * MiB))
    pieces = [payload[i : i + 1000] for i in range(0, len(payload), 1000)]
    inflater = deflate.message_inflater(CHUNK)
    message = fragments.FragmentedMessage(BINARY, inflater)
    chunks, violation = decode_until_violation(message, pieces, max_size)
    assert violation is not None and violation[0] == 1009
    assert sum(len(c) for c in chunks) <= max_size
    assert inflater.size == max_size + 1


def decode_until_violation(
    message: fragments.FragmentedMessage, pieces: list[bytes], max_size: int
) -> tuple[list[bytes], fragments.Violation | None]:
    chunks: list[bytes] = []
    for i, piece in enumerate(pieces):
        assert message.frame(len(piece), max_size) is None
        for chunk in message.chunks(piece, i == len(pieces) - 1):
            if isinstance(chunk, tuple):
                return chunks, chunk
            assert isinstance(chunk, bytes)
            chunks.append(chunk)
    return chunks, None


def test_the_limit_counts_inflated_bytes_not_wire_bytes() -> None:
    # Random data grows a little when deflated: a message of exactly the
    # limit arrives as more bytes than the limit, and is still accepted.
    data = random.Random(3).randbytes(20000)
    payload = Sender().compress(data)
    assert len(payload) > len(data)
    chunks, violation = decode(
        negotiated(), payload, [payload[:9000], payload[9000:]], BINARY, 20000
    )
    assert violation is None
    assert b"".join(chunks) == data  # type: ignore[arg-type]
    _, violation = decode(negotiated(), payload, [payload], BINARY, 19999)
    assert violation is not None and violation[0] == 1009


def test_invalid_utf8_is_1007_before_the_message_ends() -> None:
    data = json_message(1).encode() * 200 + b"\xc3\x28" + json_message(2).encode() * 200
    payload = Sender().compress(data)
    message = fragments.FragmentedMessage(TEXT, negotiated().message_inflater(CHUNK))
    assert message.frame(len(payload), MiB) is None
    results = list(message.chunks(payload, False))  # not even the last frame
    assert results[-1][0] == 1007
    assert not message.finished


def test_a_truncated_character_at_the_end_is_1007() -> None:
    payload = Sender().compress("abcé".encode()[:-1])
    _, violation = decode(negotiated(), payload, [payload[:2], payload[2:]], TEXT, MiB)
    assert violation is not None and violation[0] == 1007


def test_corrupt_compressed_fragments_are_1007() -> None:
    _, violation = decode(negotiated(), b"\xff\xff\xff", [b"\xff", b"\xff\xff"], BINARY, MiB)
    assert violation is not None and violation[0] == 1007


def test_no_context_takeover_starts_each_message_afresh() -> None:
    deflate = negotiated(offer="permessage-deflate; client_no_context_takeover")
    for i in range(4):
        data = json_message(i).encode() * 50
        payload = Sender().compress(data)  # a fresh context each time
        chunks, violation = decode(deflate, payload, [payload[:50], payload[50:]], BINARY, MiB)
        assert violation is None and b"".join(chunks) == data  # type: ignore[arg-type]


def test_an_empty_compressed_message_in_empty_fragments() -> None:
    payload = Sender().compress(b"")
    chunks, violation = decode(negotiated(), payload, [b"", payload, b""], TEXT, MiB)
    assert violation is None and "".join(chunks) == ""  # type: ignore[arg-type]


def test_the_inflate_ratio_is_learnt_from_fragmented_messages() -> None:
    deflate = negotiated()
    payload = Sender().compress(bytes(100_000))
    decode(deflate, payload, [payload], BINARY, MiB)
    assert deflate.inflate_ratio > 100


@pytest.mark.parametrize(
    ("data", "compressed", "in_progress", "expected"),
    [
        (frame(TEXT, b"ab", fin=False, rsv=4), True, False, fragments.START),
        (frame(BINARY, b"ab", fin=False, rsv=4), True, False, fragments.START),
        (frame(BINARY, b"ab", fin=False, rsv=4), False, False, None),  # not negotiated
        (frame(BINARY, b"ab", rsv=4), True, False, None),  # a whole message
        (frame(CONTINUATION, b"ab", rsv=4), True, True, None),  # RSV1 here: wsproto, 1002
        (frame(BINARY, b"ab", fin=False, rsv=6), True, False, None),  # RSV2 too
        (frame(CONTINUATION, b"ab"), True, True, fragments.CONTINUE),
    ],
)
def test_fragment_kinds_with_compression(
    data: bytes, compressed: bool, in_progress: bool, expected: int | None
) -> None:
    assert kind_of(data, in_progress=in_progress, compressed=compressed) == expected
    if expected == fragments.START:
        assert fragments.is_compressed(data, 0)


def test_chunks_of_an_uncompressed_message_are_its_pieces() -> None:
    message = fragments.FragmentedMessage(TEXT)
    assert message.frame(3, 10) is None
    assert list(message.chunks(b"ab\xc3", False)) == ["ab"]
    assert not message.finished
    assert message.frame(1, 10) is None
    assert list(message.chunks(b"\xa9", True)) == ["é"]
    assert message.finished


@pytest.mark.parametrize("chunk_size", [1, 7, 100, CHUNK])
def test_output_zlib_holds_back_at_a_full_chunk_still_comes(chunk_size: int) -> None:
    # zlib may fill a chunk having taken all the input and still hold the
    # rest of a match (up to 258 bytes) inside: the inflater must ask again.
    data = bytes(CHUNK + 3)
    payload = Sender().compress(data)
    message = fragments.FragmentedMessage(BINARY, negotiated().message_inflater(chunk_size))
    assert message.frame(len(payload), MiB) is None
    chunks = list(message.chunks(payload, True))
    assert b"".join(chunks) == data  # type: ignore[arg-type]
    assert max(len(c) for c in chunks) == chunk_size
    assert message.finished


# -- through the protocol core: frames in, events out ------------------------------


def events_of(protocol: Protocol, data: bytes) -> list[object]:
    """Every event *data* makes, whole messages as themselves."""
    protocol.receive_data(data)
    events: list[object] = []
    while (event := protocol.next_event()) is not None:
        assert not isinstance(event, ThreadJob)
        events.append(event)
    return events


def server_protocol(max_size: int = MiB, **kwargs: object) -> Protocol:
    deflate = negotiated(max_size, **kwargs)  # type: ignore[arg-type]
    limit = MessageSizeLimit(max_size)
    return Protocol(client=False, size_limit=limit, deflate=deflate)


def compressed_fragments(sender: Sender, data: bytes, count: int, opcode: int = BINARY) -> bytes:
    """*data* compressed, as *count* frames (RSV1 on the first only)."""
    payload = sender.compress(data)
    step = -(-len(payload) // count)
    parts = [payload[i : i + step] for i in range(0, len(payload), step)]
    parts += [b""] * (count - len(parts))
    out = b""
    for i, part in enumerate(parts):
        out += frame(
            opcode if i == 0 else CONTINUATION, part, fin=i == count - 1, rsv=4 if i == 0 else 0
        )
    return out


def test_the_core_inflates_compressed_fragments_in_bounded_chunks() -> None:
    """Before, the general branch (wsproto) inflated each frame whole: 8 MiB
    of zeros came as one chunk per frame, megabytes each."""
    protocol, sender = server_protocol(16 * MiB), Sender()
    data = bytes(8 * MiB)
    events = events_of(protocol, compressed_fragments(sender, data, 3))
    assert all(isinstance(e, Chunk) for e in events)
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert b"".join(c.data for c in chunks) == data  # type: ignore[misc]
    assert max(len(c.data) for c in chunks) == INFLATE_CHUNK_SIZE
    assert [c.final for c in chunks].index(True) == len(chunks) - 1
    # The context carries on into a whole compressed message after it.
    text = json_message(5) * 30
    assert events_of(protocol, frame(TEXT, sender.compress(text.encode()), rsv=4)) == [text]


def test_a_ping_between_compressed_fragments() -> None:
    protocol, sender = server_protocol(), Sender()
    text = json_message(9) * 100
    payload = sender.compress(text.encode())
    data = frame(TEXT, payload[:100], fin=False, rsv=4) + frame(PING, b"hi")
    data += frame(CONTINUATION, payload[100:])
    events = events_of(protocol, data)
    assert Ping(b"hi") in events
    assert "".join(e.data for e in events if isinstance(e, Chunk)) == text  # type: ignore[misc]


def test_a_compressed_fragmented_bomb_is_1009_within_the_budget() -> None:
    protocol, sender = server_protocol(MiB), Sender()
    wire = compressed_fragments(sender, bytes(64 * MiB), 4)  # about 64 KiB
    tracemalloc.start()
    try:
        events = events_of(protocol, wire)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(events[-1], Violation) and events[-1].code == 1009
    assert sum(len(e.data) for e in events if isinstance(e, Chunk)) <= MiB
    assert peak < 2 * MiB, peak


def test_rsv1_on_a_continuation_frame_is_1002() -> None:
    protocol, sender = server_protocol(), Sender()
    payload = sender.compress(b"abc" * 100)
    data = frame(BINARY, payload[:10], fin=False, rsv=4) + frame(CONTINUATION, payload[10:], rsv=4)
    events = events_of(protocol, data)
    assert isinstance(events[-1], Violation) and events[-1].code == 1002


async def test_a_compressed_stream_arrives_in_bounded_chunks(nursery: trio.Nursery) -> None:
    """trio_ws to trio_ws, defaults: a stream of well-compressing chunks is
    inflated in chunks of at most INFLATE_CHUNK_SIZE (before, 1 KiB slices
    through wsproto made chunks of up to a megabyte)."""
    block = bytes(512 * 1024)
    sizes: list[int] = []
    received = trio.Event()

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        async with ws.get_message_stream(max_size=None) as stream:
            async for chunk in stream:
                sizes.append(len(chunk))
        received.set()
        await ws.get_message()

    server = await nursery.start(
        lambda task_status: trio_ws.serve_websocket(handler, HOST, 0, None, task_status=task_status)
    )
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
        await ws.send_message_stream(block for _ in range(8))
        with trio.fail_after(10):
            await received.wait()
        await ws.send_message("bye")
    assert sum(sizes) == 8 * len(block)
    assert max(sizes) <= INFLATE_CHUNK_SIZE


def test_a_compressed_message_split_across_reads_stays_on_the_fast_branch() -> None:
    """Before, a whole compressed frame that did not fit one read went to
    wsproto's parser; now it is inflated piece by piece as it arrives."""
    protocol, sender = server_protocol(), Sender()
    text = "".join(json_message(i) for i in range(300))
    data = frame(TEXT, sender.compress(text.encode()), rsv=4)
    cut = len(data) // 3
    events = events_of(protocol, data[:cut]) + events_of(protocol, data[cut:])
    assert all(isinstance(e, Chunk) for e in events)
    assert "".join(e.data for e in events if isinstance(e, Chunk)) == text  # type: ignore[misc]
    assert not protocol.general_branch_made
    # The context carries on into a whole message that fits one read.
    assert events_of(protocol, frame(TEXT, sender.compress(b"next"), rsv=4)) == ["next"]


def test_a_bomb_split_across_reads_is_1009_within_the_budget() -> None:
    protocol, sender = server_protocol(MiB), Sender()
    data = frame(BINARY, sender.compress(bytes(64 * MiB)), rsv=4)  # about 64 KiB
    events = events_of(protocol, data[:1000])
    events += events_of(protocol, data[1000:])
    assert isinstance(events[-1], Violation) and events[-1].code == 1009
    assert sum(len(e.data) for e in events if isinstance(e, Chunk)) <= MiB


@pytest.mark.parametrize("period", [256, 300, 700])
def test_the_probe_sees_repeats_further_apart_than_250_bytes(period: int) -> None:
    """A 512-byte probe window reaches back only 250 bytes in zlib, so
    binary records repeating every 256 bytes (which deflate shrinks 250
    times) were judged incompressible and sent plain."""
    record = random.Random(period).randbytes(period)
    data = record * (64 * 1024 // period)
    deflate = negotiated()
    assert deflate.should_compress(data, text=False)
    assert len(deflate.compress_binary(data)) < len(data) / 20
