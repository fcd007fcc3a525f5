"""A connection's close state: several tasks waiting for one close, callbacks."""

from __future__ import annotations

import contextlib
import gc
import weakref
from functools import partial

import trio
import trio.testing

import trio_ws

from .conftest import HOST
from .support.codec import CLOSE, close_payload, frame
from .support.handshake import accept_answer
from .support.peers import Reader, serve_raw


async def test_every_task_in_aclose_returns_when_the_close_completes(
    nursery: trio.Nursery,
) -> None:
    # The server answers the Close only when told to, so that both aclose()
    # calls are waiting for the reader's end at the same time; a third call
    # comes after it ended.
    answer = trio.Event()

    async def late_answer(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(accept_answer(head))
        assert await reader.close_code() == 1000
        await answer.wait()
        await stream.send_all(frame(CLOSE, close_payload(1000), mask=False))
        await stream.aclose()

    port = await nursery.start(serve_raw, late_answer)
    returned: list[str] = []
    with trio.fail_after(5):
        ws = await trio_ws.connect_websocket(nursery, HOST, port, "/", use_ssl=False)

        async def close(name: str) -> None:
            await ws.aclose()
            returned.append(name)

        async with trio.open_nursery() as closers:
            closers.start_soon(close, "first")
            closers.start_soon(close, "second")
            await trio.testing.wait_all_tasks_blocked()
            assert returned == []  # both wait for the peer's answer
            answer.set()
        await close("after")
    assert sorted(returned[:2]) == ["first", "second"] and returned[2] == "after"
    assert ws.closed == trio_ws.CloseReason(1000, None)


async def test_close_callbacks_run_once_and_a_removed_one_never(
    nursery: trio.Nursery,
) -> None:
    async def echo_close(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(accept_answer(head))
        assert await reader.close_code() == 4000
        await stream.send_all(frame(CLOSE, close_payload(4000), mask=False))
        await stream.aclose()

    port = await nursery.start(serve_raw, echo_close)
    seen: list[tuple[str, trio_ws.CloseReason | None]] = []

    def kept(conn: trio_ws.WebSocketConnection) -> None:
        seen.append(("kept", conn.closed))

    def removed(conn: trio_ws.WebSocketConnection) -> None:
        seen.append(("removed", conn.closed))

    def broken(conn: trio_ws.WebSocketConnection) -> None:
        raise RuntimeError("a callback's bug is logged, not raised")

    with trio.fail_after(5):
        async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
            ws.add_close_callback(broken)
            ws.add_close_callback(kept)
            ws.add_close_callback(removed)
            ws.remove_close_callback(removed)
            await ws.aclose(4000, "done")
            await ws.aclose()
            assert seen == [("kept", trio_ws.CloseReason(4000, "done"))]
            ws.add_close_callback(kept)  # already closed: called at once
    assert seen == [("kept", trio_ws.CloseReason(4000, "done"))] * 2


async def test_a_closed_connection_is_freed_without_the_garbage_collector(
    nursery: trio.Nursery,
) -> None:
    """Nothing of a connection is left in a reference cycle (the lifecycle
    refers to its connection only while close callbacks wait, the keepalive
    handle to its parts): once closed and dropped, both sides are freed at
    once, not by a collection pass (which cost each connection ~20 us)."""
    refs: list[weakref.ref[trio_ws.WebSocketConnection]] = []
    handled = trio.Event()

    async def echo_once(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        refs.append(weakref.ref(ws))
        ws.add_close_callback(lambda conn: None)  # made and dropped on close
        with contextlib.suppress(trio_ws.ConnectionClosed):
            await ws.send_message(await ws.get_message())
            await ws.get_message()
        handled.set()

    server = await nursery.start(partial(trio_ws.serve_websocket, echo_once, HOST, 0, None))
    gc.collect()
    gc.disable()
    try:
        async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
            refs.append(weakref.ref(ws))
            await ws.send_message("hi")
            assert await ws.get_message() == "hi"
        del ws
        await handled.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert [ref() for ref in refs] == [None, None]
    finally:
        gc.enable()
