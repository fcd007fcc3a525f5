"""broadcast(): one message to many connections, bounded, never waiting."""

from __future__ import annotations

import contextlib
import gc
import os
import tracemalloc
from collections.abc import AsyncIterator

import pytest
import trio

import trio_ws
from trio_ws import DeflateOptions, PreparedMessage, SlowConsumer, broadcast
from trio_ws.core.deflate import PerMessageDeflate
from trio_ws.core.size_limit import MessageSizeLimit
from trio_ws.options import WRITE_BUFFER_SIZE

from .conftest import HOST

MiB = 2**20


class Hub:
    """A server whose handlers join the rooms named in the path, say they
    are ready, then read until the client goes."""

    def __init__(self) -> None:
        self.opened: list[str] = []
        self.closed: list[str] = []
        self.rooms = trio_ws.Rooms(
            on_room_opened=self.opened.append, on_room_closed=self.closed.append
        )
        self.server: trio_ws.WebSocketServer | None = None
        self.received: list[str | bytes] = []

    async def handler(self, request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        for room in request.path.strip("/").split(","):
            if room:
                self.rooms.join(room, ws)
        await ws.send_message("ready")
        with contextlib.suppress(trio_ws.ConnectionClosed):
            async for message in ws:
                self.received.append(message)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"ws://{HOST}:{self.server.port}"

    @property
    def connections(self) -> frozenset[trio_ws.WebSocketConnection]:
        assert self.server is not None
        return self.server.connections


@pytest.fixture
async def hub(nursery: trio.Nursery) -> AsyncIterator[Hub]:
    hub = Hub()
    hub.server = await nursery.start(trio_ws.serve_websocket, hub.handler, HOST, 0, None)
    yield hub


@contextlib.asynccontextmanager
async def clients(
    url: str, count: int, **options: object
) -> AsyncIterator[list[trio_ws.WebSocketConnection]]:
    async with contextlib.AsyncExitStack() as stack:
        result = []
        for _ in range(count):
            ws = await stack.enter_async_context(trio_ws.open_websocket_url(url, **options))  # type: ignore[arg-type]
            assert await ws.get_message() == "ready"
            result.append(ws)
        yield result


async def test_broadcast_reaches_every_client_and_counts(hub: Hub) -> None:
    async with (
        clients(hub.url + "/", 3) as compressed,
        clients(hub.url + "/", 2, compression=None) as plain,
    ):
        everyone = compressed + plain
        for i in range(5):  # several messages: compression contexts carry over
            result = broadcast(hub.connections, f"hello {i} " * 20)
            assert result == 5 and result.queued == 5
            assert (result.skipped, result.closed, result.not_open) == (0, 0, 0)
            assert broadcast(hub.connections, bytes([i]) * 300) == 5
        with trio.fail_after(10):
            for ws in everyone:
                for i in range(5):
                    assert await ws.get_message() == f"hello {i} " * 20
                    assert await ws.get_message() == bytes([i]) * 300


async def test_closed_connections_are_passed_over(hub: Hub) -> None:
    async with clients(hub.url + "/", 3) as (a, b, c):
        server_side = hub.connections
        await b.aclose()
        with trio.fail_after(10):
            while sum(ws.closed is None for ws in server_side) != 2:
                await trio.sleep(0.01)
        result = broadcast(server_side, "after")
        assert int(result) == 2 and result.not_open == 1
        assert await a.get_message() == "after"
        assert await c.get_message() == "after"


async def test_server_connections_snapshot_is_cached_and_tracks_changes(hub: Hub) -> None:
    async with clients(hub.url + "/", 2):
        first = hub.connections
        assert len(first) == 2 and hub.connections is first  # nothing changed, nothing copied
        async with clients(hub.url + "/", 1):
            assert len(hub.connections) == 3
        with trio.fail_after(10):
            while len(hub.connections) != 2:
                await trio.sleep(0.01)
        assert hub.connections == first


def test_uncompressed_recipients_share_one_frame() -> None:
    prepared = PreparedMessage("shared")
    frame = prepared.frame(None, mask=False)
    assert frame is prepared.frame(None, mask=False)
    assert frame == (b"\x81\x06", b"shared")
    masked = prepared.frame(None, mask=True)  # a client's: fresh key each time
    assert masked is not prepared.frame(None, mask=True) and masked[0][1] & 0x80


def _deflate(**options: object) -> PerMessageDeflate:
    deflate = PerMessageDeflate(
        DeflateOptions(**options),  # type: ignore[arg-type]
        MessageSizeLimit(MiB),
        client=False,
    )
    assert deflate.accept("permessage-deflate; client_max_window_bits") is not None
    return deflate


def test_context_free_compression_is_done_once_per_parameter_set() -> None:
    prepared = PreparedMessage("abc" * 1000)
    one, two = _deflate(server_no_context_takeover=True), _deflate(server_no_context_takeover=True)
    other_level = _deflate(server_no_context_takeover=True, level=1)
    frame = prepared.frame(one, mask=False)
    assert prepared.frame(two, mask=False) is frame
    assert prepared.frame(other_level, mask=False) is not frame
    # With context takeover, each compressor compresses for its own history.
    keeps = _deflate()
    first, second = prepared.frame(keeps, mask=False), prepared.frame(keeps, mask=False)
    assert first is not second and len(second[1]) < len(first[1])


async def test_context_free_compressed_clients_decode_the_shared_frame(
    nursery: trio.Nursery,
) -> None:
    hub = Hub()
    options = DeflateOptions(server_no_context_takeover=True)
    hub.server = await nursery.start(
        lambda task_status: trio_ws.serve_websocket(
            hub.handler, HOST, 0, None, compression=options, task_status=task_status
        )
    )
    async with clients(hub.url + "/", 3) as everyone:
        prepared = PreparedMessage("compress me " * 50)
        for _ in range(3):
            assert broadcast(hub.connections, prepared) == 3
        for ws in everyone:
            for _ in range(3):
                assert await ws.get_message() == "compress me " * 50


async def test_slow_consumer_closed_with_1013_by_default(hub: Hub) -> None:
    noise = os.urandom(100_000)
    async with (
        clients(hub.url + "/", 2, compression=None) as (reader, slow),
    ):
        reader_side = slow_side = None
        # The connections on the server side, told apart by their remote port.
        for ws in hub.connections:
            assert isinstance(ws.remote, trio_ws.Endpoint)
            assert isinstance(slow.local, trio_ws.Endpoint)
            if ws.remote.port == slow.local.port:
                slow_side = ws
            else:
                reader_side = ws
        assert reader_side is not None and slow_side is not None
        closed = 0
        with trio.fail_after(30):
            for i in range(2000):
                result = broadcast(hub.connections, i.to_bytes(4, "big") + noise)
                closed += result.closed
                assert await reader.get_message() == i.to_bytes(4, "big") + noise
                if result.closed:
                    break
        assert closed == 1 and result.queued == 1
        assert slow_side.closed is not None and slow_side.closed.code == 1013
        # The slow client gets what was queued before, then the Close.
        with trio.fail_after(20), pytest.raises(trio_ws.ConnectionClosed) as info:
            expected = 0
            while True:
                message = await slow.get_message()
                assert message[:4] == expected.to_bytes(4, "big")
                expected += 1
        assert info.value.reason.code == 1013
        assert broadcast(hub.connections, "still here") == 1
        assert await reader.get_message() == "still here"


async def test_slow_consumer_skipped_and_counted_with_skip(hub: Hub) -> None:
    noise = os.urandom(100_000)
    async with clients(hub.url + "/", 2, compression=None) as (reader, _slow):
        skipped = 0
        with trio.fail_after(30):
            for _ in range(200):
                result = broadcast(hub.connections, noise, policy=SlowConsumer.SKIP)
                skipped += result.skipped
                assert result.closed == 0
                assert await reader.get_message() == noise
        assert skipped > 0
        assert sum(ws.skipped_messages for ws in hub.connections) == skipped
        assert all(ws.closed is None for ws in hub.connections)


async def test_ten_percent_not_reading_never_delay_the_rest(hub: Hub) -> None:
    """20 clients, 2 never read: the others get every message, in order,
    and the server's memory stays bounded however much is broadcast."""
    count, size = 300, 20_000  # 6 MB per client, 120 MB in all
    async with clients(hub.url + "/", 20, compression=None) as everyone:
        readers, idle = everyone[:18], everyone[18:]
        got = [0] * len(readers)

        async def read(n: int, ws: trio_ws.WebSocketConnection) -> None:
            for i in range(count):
                message = await ws.get_message()
                assert message[:4] == i.to_bytes(4, "big")
                got[n] += 1

        gc.collect()
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    for n, ws in enumerate(readers):
                        nursery.start_soon(read, n, ws)
                    body = os.urandom(size)
                    for i in range(count):
                        # Bursts that fit a write buffer, then the readers
                        # catch up: a reader is never the slow one.
                        if i % 3 == 0:
                            while min(got) < i:
                                await trio.sleep(0.001)
                        result = broadcast(
                            hub.connections, i.to_bytes(4, "big") + body, policy=SlowConsumer.SKIP
                        )
                        assert result >= len(readers)
            peak = tracemalloc.get_traced_memory()[1] - baseline
        finally:
            tracemalloc.stop()
        assert got == [count] * len(readers)
        idle_skips = [ws.skipped_messages for ws in hub.connections if ws.skipped_messages]
        assert len(idle_skips) == len(idle) and min(idle_skips) > count // 2
        # Per idle client: the write buffer (and one message past it) on the
        # server, one queued message and one read buffer on the client; the
        # reading ones hold at most a burst each. Far below the 12 MB that
        # buffering the idle clients' share would take.
        bound = 20 * (WRITE_BUFFER_SIZE + 4 * size) + 2 * MiB
        assert peak < bound, f"traced peak {peak / MiB:.1f} MiB, bound {bound / MiB:.1f}"


async def test_broadcast_from_many_tasks_at_once(hub: Hub) -> None:
    tasks, each = 20, 40
    async with clients(hub.url + "/", 4) as everyone:

        async def publish(task: int) -> None:
            for seq in range(each):
                assert broadcast(hub.connections, f"{task}:{seq}") == 4
                await trio.sleep(0)

        async with trio.open_nursery() as nursery:
            for task in range(tasks):
                nursery.start_soon(publish, task)
        for ws in everyone:
            seen = [-1] * tasks
            with trio.fail_after(10):
                for _ in range(tasks * each):
                    task, seq = map(int, str(await ws.get_message()).split(":"))
                    assert seq == seen[task] + 1  # each task's messages in order
                    seen[task] = seq
            assert seen == [each - 1] * tasks


async def test_broadcast_waits_its_turn_behind_a_message_stream(nursery: trio.Nursery) -> None:
    """A broadcast during a streamed send is queued after the stream's end,
    never between its fragments (the client would fail the connection)."""
    release = trio.Event()
    accepted: list[trio_ws.WebSocketConnection] = []
    streaming = trio.Event()

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        accepted.append(ws)

        async def chunks() -> AsyncIterator[str]:
            yield "first "
            streaming.set()
            await release.wait()
            yield "last"

        await ws.send_message_stream(chunks())
        await trio.sleep_forever()

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    async with trio_ws.open_websocket_url(f"ws://{HOST}:{server.port}/") as ws:
        await streaming.wait()
        results = [broadcast(accepted, f"broadcast {i}") for i in range(3)]
        assert results == [1, 1, 1]
        release.set()
        with trio.fail_after(10):
            assert await ws.get_message() == "first last"
            for i in range(3):
                assert await ws.get_message() == f"broadcast {i}"


async def test_held_back_messages_are_bounded(nursery: trio.Nursery) -> None:
    release = trio.Event()
    accepted: list[trio_ws.WebSocketConnection] = []
    streaming = trio.Event()

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        accepted.append(ws)

        async def chunks() -> AsyncIterator[bytes]:
            yield b"x"
            streaming.set()
            await release.wait()

        await ws.send_message_stream(chunks())
        await trio.sleep_forever()

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    async with trio_ws.open_websocket_url(f"ws://{HOST}:{server.port}/"):
        await streaming.wait()
        (ws,) = accepted
        big = b"y" * (WRITE_BUFFER_SIZE // 2)
        assert ws.try_send_message(big)  # the first may be any size
        assert not ws.try_send_message(big + big)  # past the byte bound
        assert ws.skipped_messages == 1
        queued = sum(ws.try_send_message(b"z") for _ in range(100))
        assert 0 < queued < 100 and ws.skipped_messages == 1 + 100 - queued
        release.set()


async def test_close_callbacks_run_once_and_at_once_when_closed(hub: Hub) -> None:
    calls: list[trio_ws.WebSocketConnection] = []
    async with clients(hub.url + "/", 1) as (client,):
        (ws,) = hub.connections
        ws.add_close_callback(calls.append)
        ws.add_close_callback(lambda c: 1 / 0)  # logged, the others still run
        removed: list[trio_ws.WebSocketConnection] = []
        ws.add_close_callback(removed.append)
        ws.remove_close_callback(removed.append)
        ws.close_nowait(1013, "try later")
        assert ws.closed is not None and ws.closed.code == 1013
        assert calls == [ws] and removed == []
        ws.close_nowait()  # idempotent
        late: list[trio_ws.WebSocketConnection] = []
        ws.add_close_callback(late.append)
        assert late == [ws] and calls == [ws]
        with trio.fail_after(10), pytest.raises(trio_ws.ConnectionClosed) as info:
            await client.get_message()
        assert info.value.reason.code == 1013


async def test_broadcast_from_clients_masks_each_frame(
    echo_server: trio_ws.WebSocketServer,
) -> None:
    """Client frames must be masked, each with its own key: nothing is
    shared, and the echo server decodes every one (compressed or not)."""
    url = f"ws://{HOST}:{echo_server.port}/"
    async with (
        trio_ws.open_websocket_url(url) as compressed,
        trio_ws.open_websocket_url(url, compression=None) as plain,
    ):
        prepared = PreparedMessage("from a client " * 20)
        for _ in range(3):
            assert broadcast([compressed, plain], prepared) == 2
        with trio.fail_after(10):
            for ws in (compressed, plain):
                for _ in range(3):
                    assert await ws.get_message() == "from a client " * 20
