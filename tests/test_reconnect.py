"""The reconnecting client: fresh connections after losses, backoff, fatal errors."""

from __future__ import annotations

import gc
import warnings
from functools import partial

import pytest
import trio
import trio.testing

import trio_ws

from .conftest import HOST, CloseRecorder, echo_handler


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
    url = f"ws://{HOST}:{server.port}/"
    async with trio_ws.reconnecting_websocket(url, initial_delay=0.01) as connections:
        async for ws in connections:
            greetings.append(await ws.get_message())
            with pytest.raises(trio_ws.ConnectionClosed):
                await ws.get_message()
            if len(greetings) == 3:
                break
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
    url = f"ws://{HOST}:{port}/"
    async with trio_ws.reconnecting_websocket(url, initial_delay=1, max_delay=8) as connections:
        async for ws in connections:
            assert await ws.get_message() == "hello"
            break
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
    with pytest.raises(trio_ws.ConnectionRejected) as caught:  # itself, not in a group
        async with trio_ws.reconnecting_websocket(f"ws://{HOST}:{server.port}/") as connections:
            async for _ in connections:
                pass  # pragma: no cover
    assert caught.value.status_code == 403


async def test_certificate_failure_is_fatal(nursery: trio.Nursery, server_context: object) -> None:

    server = await nursery.start(trio_ws.serve_websocket, echo_handler, HOST, 0, server_context)
    url = f"wss://localhost:{server.port}/"  # default context: untrusted CA
    with pytest.raises(trio_ws.HandshakeError):
        async with trio_ws.reconnecting_websocket(url) as connections:
            async for _ in connections:
                pass  # pragma: no cover


async def test_plain_http_answer_is_fatal(nursery: trio.Nursery) -> None:
    # Issue 13 item 6: a web server answering 200 (not a WebSocket server)
    # was retried forever.
    attempts = 0

    async def web_page(request: trio_ws.HTTPRequest) -> trio_ws.HTTPResponse:
        nonlocal attempts
        attempts += 1
        return trio_ws.HTTPResponse(200, body=b"<html>a web page</html>")

    server = await nursery.start(
        partial(trio_ws.serve_websocket, echo_handler, HOST, 0, None, request_hook=web_page)
    )
    with trio.fail_after(10), pytest.raises(trio_ws.ConnectionRejected) as caught:
        async with trio_ws.reconnecting_websocket(
            f"ws://{HOST}:{server.port}/", initial_delay=0.01
        ) as connections:
            async for _ in connections:
                pass  # pragma: no cover
    assert caught.value.status_code == 200 and attempts == 1


async def test_server_errors_are_retried(nursery: trio.Nursery) -> None:
    attempts = 0

    async def flaky(request: trio_ws.HTTPRequest) -> trio_ws.HTTPResponse | None:
        nonlocal attempts
        attempts += 1
        return trio_ws.HTTPResponse(503) if attempts < 3 else None

    server = await nursery.start(
        partial(trio_ws.serve_websocket, echo_handler, HOST, 0, None, request_hook=flaky)
    )
    url = f"ws://{HOST}:{server.port}/"
    with trio.fail_after(10):
        async with trio_ws.reconnecting_websocket(url, initial_delay=0.01) as connections:
            async for ws in connections:
                await ws.send_message("through")
                assert await ws.get_message() == "through"
                break
    assert attempts == 3


async def test_leaving_the_loop_closes_the_connection_without_warnings(
    nursery: trio.Nursery,
) -> None:
    # Issue 13 item 6: breaking out of the old async generator left it (and
    # its connection) to the garbage collector, with a ResourceWarning.
    record = CloseRecorder()
    server = await nursery.start(trio_ws.serve_websocket, record, HOST, 0, None)
    url = f"ws://{HOST}:{server.port}/"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with trio_ws.reconnecting_websocket(url) as connections:
            async for ws in connections:
                assert ws.closed is None
                break
        assert ws.closed == trio_ws.CloseReason(1000, None)  # closed on leaving the block
        assert connections.current is None
        with pytest.raises(ValueError, match="from the loop"):  # itself, not in a group
            async with trio_ws.reconnecting_websocket(url) as connections:
                async for ws in connections:
                    assert ws.closed is None
                    raise ValueError("from the loop")
        assert ws.closed is not None and ws.closed.code == 1011
        gc.collect()
    assert await record.wait_for(2) == [1000, 1011]
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


async def test_old_call_with_a_nursery_gets_a_clear_error(nursery: trio.Nursery) -> None:
    with pytest.raises(TypeError, match="takes the URL first"):
        trio_ws.reconnecting_websocket(nursery, "ws://127.0.0.1/")  # type: ignore[arg-type]
