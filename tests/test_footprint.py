"""What an idle connection keeps alive (see docs/topics/memory.rst)."""

from __future__ import annotations

import gc

import pytest
import trio

import trio_ws
from trio_ws import handshake
from trio_ws.handshake import shared_headers
from trio_ws.options import SHARED_HEADER_VALUE_SIZE, SHARED_HEADERS

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


async def test_connections_share_equal_handshake_headers(nursery: trio.Nursery) -> None:
    # Every open connection keeps its handshake's headers; equal pairs are
    # one object for all of them, the per-connection key excepted.
    requests: list[trio_ws.WebSocketRequest] = []

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        requests.append(request)
        await request.reject(404)

    server = await nursery.start(
        lambda task_status: trio_ws.serve_websocket(handler, HOST, 0, None, task_status=task_status)
    )
    for _ in range(2):
        with pytest.raises(trio_ws.ConnectionRejected):
            async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False):
                pass  # pragma: no cover
    first, second = (dict((n, pair) for pair in r.headers for n in [pair[0]]) for r in requests)
    assert first[b"host"] is second[b"host"]
    assert first[b"user-agent"] is second[b"user-agent"]
    assert first[b"sec-websocket-key"] != second[b"sec-websocket-key"]


def test_the_shared_header_table_stays_bounded() -> None:
    many = [(b"x-random", str(i).encode()) for i in range(3 * SHARED_HEADERS)]
    assert shared_headers(many) == many
    assert len(handshake._seen_headers) <= SHARED_HEADERS
    long_value = (b"x-long", b"v" * (SHARED_HEADER_VALUE_SIZE + 1))
    shared_headers([long_value, (b"sec-websocket-key", b"abc")])
    assert long_value not in handshake._seen_headers
    assert (b"sec-websocket-key", b"abc") not in handshake._seen_headers
