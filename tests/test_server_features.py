"""Server features: request hook, origins, connection limit, graceful shutdown."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trio_ws

from .conftest import HOST, echo_handler
from .support.handshake import upgrade_request
from .support.peers import http_exchange


async def start(
    nursery: trio.Nursery, handler: object = echo_handler, **kwargs: object
) -> trio_ws.WebSocketServer:
    return await nursery.start(  # type: ignore[no-any-return]
        lambda task_status: trio_ws.serve_websocket(
            handler,  # type: ignore[arg-type]
            HOST,
            0,
            None,
            task_status=task_status,
            **kwargs,  # type: ignore[arg-type]
        )
    )


async def hook(request: trio_ws.HTTPRequest) -> trio_ws.HTTPResponse | None:
    if request.path == "/healthz":
        return trio_ws.HTTPResponse(200, [("Content-Type", "text/plain")], b"ok\n")
    if request.path == "/old":
        return trio_ws.HTTPResponse(302, [("Location", "/new")])
    if request.path == "/boom":
        raise RuntimeError("hook exploded")
    if request.path.startswith("/private") and request.header("Authorization") != "Bearer s3cret":
        return trio_ws.HTTPResponse(401, [("WWW-Authenticate", 'Bearer realm="x"')], b"no\n")
    return None


async def test_request_hook_answers_plain_http(nursery: trio.Nursery) -> None:
    server = await start(nursery, request_hook=hook)
    health = await http_exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert health.startswith(b"HTTP/1.1 200 ") and health.endswith(b"\r\n\r\nok\n")
    assert b"content-type: text/plain" in health.lower()
    moved = await http_exchange(server.port, b"GET /old HTTP/1.1\r\nHost: x\r\n\r\n")
    assert moved.startswith(b"HTTP/1.1 302 ") and b"location: /new" in moved.lower()
    # Not handled by the hook and not an upgrade: 426 as usual.
    plain = await http_exchange(server.port, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
    assert plain.startswith(b"HTTP/1.1 426 ")


async def test_request_hook_authenticates_upgrades(nursery: trio.Nursery) -> None:
    server = await start(nursery, request_hook=hook)
    with pytest.raises(trio_ws.ConnectionRejected) as info:
        async with trio_ws.open_websocket(HOST, server.port, "/private", use_ssl=False):
            pass  # pragma: no cover
    assert info.value.status_code == 401
    assert (b"www-authenticate", b'Bearer realm="x"') in info.value.headers
    async with trio_ws.open_websocket(
        HOST,
        server.port,
        "/private",
        use_ssl=False,
        extra_headers=[("Authorization", "Bearer s3cret")],
    ) as ws:
        await ws.send_message("in")
        assert await ws.get_message() == "in"


async def test_request_hook_error_is_500_and_logged(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start(nursery, request_hook=hook)
    answer = await http_exchange(server.port, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 500 ")
    assert "hook exploded" in caplog.text
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
        await ws.send_message("still serving")
        assert await ws.get_message() == "still serving"


async def test_origin_check(nursery: trio.Nursery) -> None:
    server = await start(nursery, origins=["https://good.example", None])
    for origin, allowed in [("https://good.example", True), ("https://evil.example", False)]:
        request = upgrade_request(extra=f"Origin: {origin}\r\n".encode())
        answer = await http_exchange(server.port, request) if not allowed else None
        if allowed:
            async with trio_ws.open_websocket(
                HOST, server.port, "/", use_ssl=False, extra_headers=[("Origin", origin)]
            ) as ws:
                await ws.send_message("ok")
                assert await ws.get_message() == "ok"
        else:
            assert answer is not None and answer.startswith(b"HTTP/1.1 403 ")
    # None in the list admits clients that send no Origin (non-browsers).
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
        await ws.send_message("no origin")
        assert await ws.get_message() == "no origin"


async def test_connection_limit_answers_503(nursery: trio.Nursery) -> None:
    server = await start(nursery, max_connections=2)
    async with (
        trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as one,
        trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as two,
    ):
        with pytest.raises(trio_ws.ConnectionRejected) as info:
            async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False):
                pass  # pragma: no cover
        assert info.value.status_code == 503
        assert len(server.connections) == 2
        await one.send_message("1")
        await two.send_message("2")
        assert (await one.get_message(), await two.get_message()) == ("1", "2")
    with trio.fail_after(5):
        while server.connections:
            await trio.sleep(0.01)
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as three:
        await three.send_message("3")
        assert await three.get_message() == "3"


async def test_too_many_headers_is_431(echo_server: trio_ws.WebSocketServer) -> None:
    extra = b"".join(f"X-H{i}: v\r\n".encode() for i in range(150))
    answer = await http_exchange(echo_server.port, upgrade_request(extra=extra))
    assert answer.startswith(b"HTTP/1.1 431 ")


async def test_graceful_shutdown_closes_with_1001_and_returns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    handler_ended: list[str] = []

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            await ws.get_message()
        except trio_ws.ConnectionClosed as exc:
            handler_ended.append(str(exc.reason))

    client_saw: list[trio_ws.CloseReason] = []
    async with trio.open_nursery() as nursery:
        server = await start(nursery, handler)

        async def client() -> None:
            async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
                with pytest.raises(trio_ws.ConnectionClosed) as info:
                    await ws.get_message()
                client_saw.append(info.value.reason)

        for _ in range(3):
            nursery.start_soon(client)
        with trio.fail_after(5):
            while len(server.connections) < 3:
                await trio.sleep(0.01)
        await server.shutdown()
        assert not server.connections
        # Not accepting any more.
        with pytest.raises(OSError):
            await trio.open_tcp_stream(HOST, server.port)
    assert client_saw == [trio_ws.CloseReason(1001, "going away")] * 3
    assert len(handler_ended) == 3


async def test_shutdown_cancels_stubborn_handlers_after_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cancelled: list[bool] = []

    async def stubborn(request: trio_ws.WebSocketRequest) -> None:
        await request.accept()
        try:
            await trio.sleep_forever()  # ignores the close entirely
        except trio.Cancelled:
            cancelled.append(True)
            raise

    async with trio.open_nursery() as nursery:
        server = await start(nursery, stubborn)
        ws = await trio_ws.connect_websocket(nursery, HOST, server.port, "/", use_ssl=False)
        while not server.connections:
            await trio.sleep(0.01)
        start_time = trio.current_time()
        await server.shutdown(timeout=3)
        assert trio.current_time() - start_time == pytest.approx(3, abs=0.1)
        assert cancelled == [True]
        await ws.aclose()
