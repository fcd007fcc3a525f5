"""Fragmented messages on the fast branch (trio_ws.core.fragments).

Rules without sockets first (frame bytes in, kind or close code out), then a
differential test: random fragmented messages, with pings between their
frames, cut at random write boundaries, sent by a raw peer to a trio_ws echo
server and fed to a bare wsproto connection; both must see the same messages
and the same close code.
"""

from __future__ import annotations

import random

import pytest
import trio
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

import trio_ws
from trio_ws.core import fragments as protocol
from trio_ws.core import frames

from .conftest import HOST, echo_handler
from .support.codec import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    Frame,
    close_code_of,
    frame,
)
from .support.peers import raw_client

MiB = 2**20


def kind_of(
    data: bytes, *, masked: bool = True, in_progress: bool = False, compressed: bool = False
) -> int | None:
    header, size = frames.frame_extent(data, 0)  # type: ignore[misc]
    return protocol.fragment_kind(
        data, 0, header, size, masked=masked, in_progress=in_progress, compressed=compressed
    )


@pytest.mark.parametrize(
    ("data", "in_progress", "expected"),
    [
        (frame(TEXT, b"ab", fin=False), False, protocol.START),
        (frame(BINARY, b"ab", fin=False), False, protocol.START),
        (frame(CONTINUATION, b"ab", fin=False), True, protocol.CONTINUE),
        (frame(CONTINUATION, b"ab"), True, protocol.CONTINUE),
        (frame(CONTINUATION, b"ab"), False, None),  # orphan: wsproto says 1002
        (frame(TEXT, b"ab"), False, None),  # a whole message
        (frame(TEXT, b"ab"), True, protocol.NEW_DATA),
        (frame(BINARY, b"ab", fin=False, rsv=4), True, protocol.NEW_DATA),
        (frame(BINARY, b"ab", fin=False, rsv=4), False, None),  # compressed: wsproto
        (frame(CONTINUATION, b"ab", rsv=2), True, None),  # RSV2: wsproto says 1002
        (frame(PING, b"ab"), True, None),  # control frames: wsproto
        (frame(0x3, b"ab", fin=False), False, None),  # reserved opcode
        (frame(TEXT, b"ab", fin=False, mask=False), False, None),  # unmasked
    ],
)
def test_fragment_kinds(data: bytes, in_progress: bool, expected: int | None) -> None:
    assert kind_of(data, in_progress=in_progress) == expected


def test_a_length_not_in_its_shortest_form_is_left_to_wsproto() -> None:
    # 5 bytes announced in the 16-bit form.
    data = bytes(Frame(TEXT, b"abcde", fin=False, key=bytes(4), encoding="16"))
    assert kind_of(data) is None


def test_fragmented_message_rules() -> None:
    message = protocol.FragmentedMessage(TEXT)
    assert message.frame(3, 10) is None
    assert message.payload(b"ab\xc3", False) == "ab"  # half a character waits
    assert message.frame(1, 10) is None
    assert message.payload(b"\xa9", True) == "é"
    assert message.size == 4

    too_big = protocol.FragmentedMessage(BINARY)
    assert too_big.frame(8, 10) is None
    assert too_big.frame(3, 10) == (1009, "message of at least 11 bytes exceeds limit of 10")

    bad = protocol.FragmentedMessage(TEXT)
    assert bad.payload(b"\xc3", False) == ""
    code, _ = bad.payload(b"(", True)  # type: ignore[misc]
    assert code == 1007
    truncated = protocol.FragmentedMessage(TEXT)
    assert truncated.payload(b"\xc3", False) == ""
    assert truncated.payload(b"", True)[0] == 1007  # the message ends mid-character

    many = protocol.FragmentedMessage(BINARY)
    results = [many.frame(0, 1000) for _ in range(1025)]
    assert results[:1024] == [None] * 1024
    assert results[1024] is not None
    assert results[1024][0] == 1008


# -- differential against wsproto ---------------------------------------------------


def random_fragmented(rng: random.Random) -> tuple[list[bytes], str | bytes]:
    """The frames of one fragmented message (with pings between some), and the message."""
    text = rng.random() < 0.5
    if text:
        message: str | bytes = "".join(rng.choice("aé€😀 ") for _ in range(rng.randrange(200)))
        raw = message.encode()  # type: ignore[union-attr]
    else:
        message = raw = rng.randbytes(rng.choice([0, 5, 300, 70_000]))
    cuts = sorted(rng.randrange(len(raw) + 1) for _ in range(rng.randrange(1, 5)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    out = []
    for i, piece in enumerate(pieces):
        opcode = (TEXT if text else BINARY) if i == 0 else CONTINUATION
        out.append(frame(opcode, piece, fin=i == len(pieces) - 1))
        if rng.random() < 0.3 and i < len(pieces) - 1:
            out.append(frame(PING, b"p%d" % i))
    return out, message


def wsproto_view(data: bytes) -> tuple[list[str | bytes], int | None]:
    """Messages and close code a bare wsproto server sees in *data*."""
    connection = Connection(ConnectionType.SERVER)
    connection.receive_data(data)
    messages: list[str | bytes] = []
    parts: list[str | bytes] = []
    for event in connection.events():
        if isinstance(event, (TextMessage, BytesMessage)):
            parts.append(event.data)
            if event.message_finished:
                messages.append(parts[0][:0].join(parts))  # type: ignore[arg-type]
                parts = []
        elif isinstance(event, CloseConnection):
            return messages, event.code
        else:
            assert isinstance(event, Ping)
    return messages, None


async def trio_ws_view(
    port: int, data: bytes, rng: random.Random
) -> tuple[list[str | bytes], int | None]:
    """Messages the trio_ws echo server echoes for *data*, and its close code."""
    stream, reader, _ = await raw_client(port)
    messages: list[str | bytes] = []
    async with stream:
        pos = 0
        while pos < len(data):  # random write boundaries, so random reads
            step = rng.choice([1, 7, 100, 5000, 70_000])
            await stream.send_all(data[pos : pos + step])
            pos += step
        await stream.send_all(frame(TEXT, b"end"))
        with trio.fail_after(10):
            while True:
                opcode, payload = await reader.frame()
                if opcode == CLOSE:
                    return messages, close_code_of(payload)
                if opcode == PONG:
                    continue
                echoed: str | bytes = payload.decode() if opcode == TEXT else payload
                if echoed == "end":
                    return messages, None
                messages.append(echoed)


@pytest.mark.parametrize("seed", range(8))
async def test_fragmented_messages_match_wsproto(nursery: trio.Nursery, seed: int) -> None:
    server = await nursery.start(trio_ws.serve_websocket, echo_handler, HOST, 0, None)
    rng = random.Random(seed)
    data = b""
    for _ in range(6):
        frame_list, _ = random_fragmented(rng)
        data += b"".join(frame_list)
        if rng.random() < 0.2:
            data += frame(TEXT, b"whole")
    if seed % 2:  # end with a violation: a new message inside a fragmented one
        data += frame(BINARY, b"a", fin=False) + frame(TEXT, b"b")
    expected_messages, expected_code = wsproto_view(data)
    messages, code = await trio_ws_view(server.port, data, rng)
    assert messages == expected_messages
    assert code == expected_code
    assert (code is None) is (seed % 2 == 0)


# -- end to end ---------------------------------------------------------------------


async def test_stream_of_a_fragmented_message_larger_than_reads(nursery: trio.Nursery) -> None:
    got: list[int] = []
    done = trio.Event()

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        async with ws.get_message_stream(max_size=None) as chunks:
            async for chunk in chunks:
                assert isinstance(chunk, bytes)
                got.append(len(chunk))
        done.set()

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    chunk = bytes(range(256)) * 1024  # 256 KiB, bigger than a 64 KiB read
    async with trio_ws.open_websocket(
        HOST, server.port, "/", use_ssl=False, compression=None
    ) as ws:
        await ws.send_message_stream(chunk for _ in range(16))
        with trio.fail_after(10):
            await done.wait()
    assert sum(got) == 16 * len(chunk)
    assert max(got) <= 64 * 1024  # chunk-bounded: one read at most


async def test_a_fragmented_message_too_big_is_refused_early(nursery: trio.Nursery) -> None:
    async def reader_handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        with pytest.raises(trio_ws.ConnectionClosed):
            await ws.get_message()

    server = await nursery.start(trio_ws.serve_websocket, reader_handler, HOST, 0, None)
    stream, reader, _ = await raw_client(server.port)
    async with stream:
        await stream.send_all(frame(BINARY, b"x" * 1000, fin=False))
        # Announces 2 MiB but sends none of it: refused on the header alone.
        await stream.send_all(frame(CONTINUATION, length=2 * MiB))
        with trio.fail_after(5):
            assert await reader.close_code() == 1009
