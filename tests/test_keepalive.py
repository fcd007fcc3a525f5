"""Keepalive: latency, half-open peers, and no false alarms under backpressure."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trio_ws

from .conftest import HOST, echo_handler
from .support.handshake import accept_answer
from .support.peers import Reader, serve_raw


async def test_latency_is_measured(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = await nursery.start(trio_ws.serve_websocket, echo_handler, HOST, 0, None)
    async with trio_ws.open_websocket(
        HOST, server.port, "/", use_ssl=False, ping_interval=5, ping_timeout=5
    ) as ws:
        assert ws.latency is None
        await trio.sleep(6)
        assert ws.latency is not None and ws.latency < 1


async def test_half_open_peer_is_detected(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def vanish(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(accept_answer(head))
        await trio.sleep_forever()  # like a peer whose cable was pulled: no FIN, no pong

    port = await nursery.start(serve_raw, vanish)
    start = trio.current_time()
    async with trio_ws.open_websocket(
        HOST, port, "/", use_ssl=False, ping_interval=5, ping_timeout=3, disconnect_timeout=2
    ) as ws:
        with pytest.raises(trio_ws.ConnectionClosed) as info:
            await ws.get_message()
    assert info.value.reason == trio_ws.CloseReason(1011, "keepalive ping timeout")
    assert trio.current_time() - start == pytest.approx(8, abs=0.1)


async def test_server_detects_vanished_client(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    from .support.peers import raw_client

    ended: list[int] = []

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            await ws.get_message()
        except trio_ws.ConnectionClosed as exc:
            ended.append(exc.reason.code)

    server = await nursery.start(
        lambda task_status: trio_ws.serve_websocket(
            handler, HOST, 0, None, ping_interval=10, ping_timeout=10, task_status=task_status
        )
    )
    stream, _, _ = await raw_client(server.port)  # never reads, never answers
    async with stream:
        await trio.sleep(21)
    assert ended == [1011]


async def test_full_queue_is_not_mistaken_for_a_dead_peer(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def chatty(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        for i in range(3):
            await ws.send_message(f"m{i}")
        await trio.sleep_forever()

    server = await nursery.start(trio_ws.serve_websocket, chatty, HOST, 0, None)
    async with trio_ws.open_websocket(
        HOST, server.port, "/", use_ssl=False, ping_interval=2, ping_timeout=1
    ) as ws:
        await trio.sleep(30)  # not reading: the queue is full, pongs wait behind it
        assert ws.closed is None
        assert [await ws.get_message() for _ in range(3)] == ["m0", "m1", "m2"]


async def test_keepalive_can_be_disabled(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def silent(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(accept_answer(head))
        await trio.sleep_forever()

    port = await nursery.start(serve_raw, silent)
    async with trio.open_nursery() as inner:
        ws = await trio_ws.connect_websocket(
            inner, HOST, port, "/", use_ssl=False, ping_interval=None
        )
        await trio.sleep(3600)
        assert ws.closed is None and ws.latency is None
        inner.cancel_scope.cancel()


def _tasks_named(name: str) -> int:
    count, stack = 0, [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        if task is None:
            continue
        count += task.name == name
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


async def test_one_timer_task_pings_every_connection(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = await nursery.start(trio_ws.serve_websocket, echo_handler, HOST, 0, None)
    async with (
        trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False, ping_interval=5) as a,
        trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False, ping_interval=7) as b,
    ):
        await trio.sleep(8)
        assert a.latency is not None and b.latency is not None
        # Two clients and their two server sides: still one timer task.
        assert _tasks_named("trio_ws keepalive timer") == 1


async def test_closed_connections_are_not_kept_by_keepalive(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    import gc
    import weakref

    server = await nursery.start(trio_ws.serve_websocket, echo_handler, HOST, 0, None)
    refs = []
    for _ in range(5):
        async with trio_ws.open_websocket(
            HOST, server.port, "/", use_ssl=False, ping_interval=3600
        ) as ws:
            await ws.send_message("hi")
            assert await ws.get_message() == "hi"
        refs.append(weakref.ref(ws))
        del ws
    await trio.sleep(1)
    gc.collect()
    assert [ref() for ref in refs] == [None] * 5
