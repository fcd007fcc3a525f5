"""The reconnecting client: fresh connections after losses, backoff, fatal errors."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trio_ws

from .conftest import HOST


async def test_reconnects_after_each_loss(nursery: trio.Nursery) -> None:
    served = 0

    async def drop_each(request: trio_ws.WebSocketRequest) -> None:
        nonlocal served
        served += 1
        ws = await request.accept()
        await ws.send_message(f"connection {served}")
        await ws.aclose(1001)

    server = await nursery.start(trio_ws.serve_websocket, drop_each, HOST, 0, None)
    greetings = []
    async with trio.open_nursery() as inner:
        connections = trio_ws.reconnecting_websocket(
            inner, f"ws://{HOST}:{server.port}/", initial_delay=0.01
        )
        async for ws in connections:
            greetings.append(await ws.get_message())
            with pytest.raises(trio_ws.ConnectionClosed):
                await ws.get_message()
            if len(greetings) == 3:
                break
        await connections.aclose()  # type: ignore[attr-defined]
    assert greetings == ["connection 1", "connection 2", "connection 3"]


async def test_backs_off_until_the_server_appears(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    probe = trio.socket.socket()
    await probe.bind((HOST, 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens on port for now

    async def late_server() -> None:
        await trio.sleep(30)
        listeners = await trio.open_tcp_listeners(port, host=HOST)
        server = trio_ws.WebSocketServer(_greet, listeners)
        await server.run()

    nursery.start_soon(late_server)
    start = trio.current_time()
    async with trio.open_nursery() as inner:
        connections = trio_ws.reconnecting_websocket(
            inner, f"ws://{HOST}:{port}/", initial_delay=1, max_delay=8
        )
        async for ws in connections:
            assert await ws.get_message() == "hello"
            break
        await connections.aclose()  # type: ignore[attr-defined]
    waited = trio.current_time() - start
    assert 30 <= waited <= 30 + 8  # no later than one maximum delay after it came up


async def _greet(request: trio_ws.WebSocketRequest) -> None:
    ws = await request.accept()
    await ws.send_message("hello")
    await ws.get_message()


async def test_rejection_is_fatal(nursery: trio.Nursery) -> None:
    async def forbid(request: trio_ws.WebSocketRequest) -> None:
        await request.reject(403)

    server = await nursery.start(trio_ws.serve_websocket, forbid, HOST, 0, None)
    async with trio.open_nursery() as inner:
        with pytest.raises(trio_ws.ConnectionRejected):
            async for _ in trio_ws.reconnecting_websocket(inner, f"ws://{HOST}:{server.port}/"):
                pass  # pragma: no cover


async def test_certificate_failure_is_fatal(nursery: trio.Nursery, server_context: object) -> None:
    from .conftest import echo_handler

    server = await nursery.start(trio_ws.serve_websocket, echo_handler, HOST, 0, server_context)
    async with trio.open_nursery() as inner:
        with pytest.raises(trio_ws.HandshakeError):
            async for _ in trio_ws.reconnecting_websocket(
                inner,
                f"wss://localhost:{server.port}/",  # default context: untrusted CA
            ):
                pass  # pragma: no cover
