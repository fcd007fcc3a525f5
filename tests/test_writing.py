"""The write buffer: coalesced writes, bounded pongs, order across both paths."""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing

import trio_ws

from .conftest import HOST
from .support.codec import PING, PONG, frame
from .support.peers import raw_client


class CountingStream(trio.abc.HalfCloseableStream):
    """A stream that counts the writes made to it."""

    def __init__(self, inner: trio.abc.HalfCloseableStream) -> None:
        self.inner = inner
        self.writes = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_burst_of_messages_shares_writes() -> None:
    client_raw, server_stream = trio.testing.memory_stream_pair()
    client_stream = CountingStream(client_raw)
    count = 200
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            request = await trio_ws.wrap_server_stream(nursery, server_stream)
            ws = await request.accept()
            received = [await ws.get_message() for _ in range(count)]
            assert received == [f"message {i}" for i in range(count)]
            await ws.aclose()

        nursery.start_soon(serve)
        ws = await trio_ws.wrap_client_stream(nursery, client_stream, "example.com", "/")
        before = client_stream.writes
        for i in range(count):
            await ws.send_message(f"message {i}")
        await ws.aclose()
        # One write per message is what an unbuffered sender makes.
        assert client_stream.writes - before < count // 4


async def test_peer_pinging_without_reading_gets_only_the_latest_pongs(
    echo_server: trio_ws.WebSocketServer,
) -> None:
    stream, reader, head = await raw_client(echo_server.port)
    assert head.startswith(b"HTTP/1.1 101 ")
    pings = 40_000
    payloads = [i.to_bytes(4, "big") + bytes(100) for i in range(pings)]
    batch = 1000
    with trio.fail_after(30):
        for start in range(0, pings, batch):
            await stream.send_all(b"".join(frame(PING, p) for p in payloads[start : start + batch]))
        pongs = []
        while not pongs or pongs[-1] != payloads[-1]:
            opcode, payload = await reader.frame()
            assert opcode == PONG
            pongs.append(payload)
    # Pongs are answered in order; those that found the buffer full were
    # replaced by later ones instead of piling up.
    assert pongs == sorted(pongs)
    assert len(pongs) < pings
    await stream.aclose()


async def test_direct_and_buffered_writes_keep_message_order(
    echo_server: trio_ws.WebSocketServer,
) -> None:
    count = 300
    messages = [os.urandom(i * 97 % 5000) for i in range(count)]
    async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws:
        async with trio.open_nursery() as nursery:

            async def sender() -> None:
                for i, message in enumerate(messages):
                    await ws.send_message(message)
                    if i % 7 == 0:
                        await trio.sleep(0)  # idle moments: some go out directly

            nursery.start_soon(sender)
            with trio.fail_after(10):
                received = [await ws.get_message() for _ in range(count)]
    assert received == messages


async def test_sends_after_the_peer_resets_fail_with_1006(nursery: trio.Nursery) -> None:
    import socket
    import struct

    from .support.handshake import accept_answer
    from .support.peers import Reader, serve_raw

    async def reset(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(accept_answer(head))
        await trio.sleep(0.1)
        # SO_LINGER 0: closing sends RST, as a crashed peer's kernel would.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()

    port = await nursery.start(serve_raw, reset)
    sent = 0
    async with trio_ws.open_websocket(
        HOST, port, "/", use_ssl=False, compression=None, ping_interval=None
    ) as ws:
        with trio.fail_after(5), pytest.raises(trio_ws.ConnectionClosed) as info:
            while True:  # queued or written at once, until the failure shows
                await ws.send_message(os.urandom(20_000))
                sent += 1
                await trio.sleep(0.01)
    assert info.value.reason.code == 1006
    assert sent > 0


async def test_sending_never_asks_for_the_whole_runs_statistics(
    echo_server: trio_ws.WebSocketServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # trio.lowlevel.current_statistics() walks every registered socket: asked
    # on each send, it made a round trip cost more with every connection open.
    calls = 0
    statistics = trio.lowlevel.current_statistics

    def counting() -> trio.lowlevel.RunStatistics:
        nonlocal calls
        calls += 1
        return statistics()

    monkeypatch.setattr(trio.lowlevel, "current_statistics", counting)
    async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws:
        for i in range(20):  # one at a time: the writer is idle for each
            await ws.send_message(f"ping {i}")
            assert await ws.get_message() == f"ping {i}"
        for i in range(50):  # a burst: the server answers messages still queued
            await ws.send_message(b"x" * i)
        with trio.fail_after(10):
            assert [await ws.get_message() for _ in range(50)] == [b"x" * i for i in range(50)]
    assert calls == 0
