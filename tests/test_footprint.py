"""What an idle connection keeps alive (see docs/topics/memory.rst)."""

from __future__ import annotations

import gc

import trio

import trio_ws

from .conftest import HOST


async def test_an_idle_reader_keeps_no_exception_alive(
    echo_server: trio_ws.WebSocketServer,
) -> None:
    # A reader that waited for its socket inside "except BlockingIOError"
    # kept that exception and its traceback for as long as it idled.
    async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws:
        await ws.send_message("hello")
        assert await ws.get_message() == "hello"
        await trio.sleep(0.05)  # both readers are waiting for their sockets now
        gc.collect()
        held = [obj for obj in gc.get_objects() if isinstance(obj, BlockingIOError)]
        assert held == []
