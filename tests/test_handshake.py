"""Opening handshake failures, on both sides, fail promptly and clearly."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trio_ws

from .conftest import HOST, echo_handler
from .support.codec import frame
from .support.handshake import accept_answer, upgrade_request
from .support.peers import Reader, http_exchange, serve_raw

PROMPTLY = 5  # seconds; every connect_timeout below is much longer


async def start(
    nursery: trio.Nursery, handler: object, **kwargs: object
) -> trio_ws.WebSocketServer:
    return await nursery.start(
        lambda task_status: trio_ws.serve_websocket(
            handler,
            HOST,
            0,
            None,
            task_status=task_status,
            **kwargs,  # type: ignore[arg-type]
        )
    )


async def test_server_hangs_up_before_answering(nursery: trio.Nursery) -> None:
    async def hang_up(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.aclose()

    port = await nursery.start(serve_raw, hang_up)
    with trio.fail_after(PROMPTLY):
        with pytest.raises(trio_ws.HandshakeError, match="closed the connection"):
            async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False, connect_timeout=60):
                pass  # pragma: no cover


async def test_handler_returning_without_accepting_rejects_with_403(nursery: trio.Nursery) -> None:
    async def undecided(request: trio_ws.WebSocketRequest) -> None:
        pass

    server = await start(nursery, undecided)
    with trio.fail_after(PROMPTLY):
        with pytest.raises(trio_ws.ConnectionRejected) as info:
            async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False):
                pass  # pragma: no cover
    assert info.value.status_code == 403


async def test_reject_carries_status_headers_and_body(nursery: trio.Nursery) -> None:
    async def deny(request: trio_ws.WebSocketRequest) -> None:
        await request.reject(401, extra_headers=[(b"WWW-Authenticate", b"Bearer")], body=b"who?")
        with pytest.raises(RuntimeError):
            await request.accept()

    server = await start(nursery, deny)
    with pytest.raises(trio_ws.ConnectionRejected) as info:
        async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False):
            pass  # pragma: no cover
    assert info.value.status_code == 401
    assert (b"www-authenticate", b"Bearer") in info.value.headers
    assert info.value.body == b"who?"
    assert isinstance(info.value, trio_ws.HandshakeError)


async def test_handler_error_before_accept_is_500_and_server_survives(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: trio_ws.WebSocketRequest) -> None:
        if request.path == "/bad":
            raise RuntimeError("handler bug")
        await echo_handler(request)

    server = await start(nursery, broken)
    with pytest.raises(trio_ws.ConnectionRejected) as info:
        async with trio_ws.open_websocket(HOST, server.port, "/bad", use_ssl=False):
            pass  # pragma: no cover
    assert info.value.status_code == 500
    assert "handler bug" in caplog.text
    async with trio_ws.open_websocket(HOST, server.port, "/good", use_ssl=False) as ws:
        await ws.send_message("ok")
        assert await ws.get_message() == "ok"


@pytest.mark.parametrize(
    "answer, match",
    [
        (
            lambda head: accept_answer(head).replace(
                b"Sec-WebSocket-Accept: ", b"Sec-WebSocket-Accept: x"
            ),
            "Accept",
        ),
        (lambda head: accept_answer(head, b"Sec-WebSocket-Protocol: other\r\n"), "subprotocol"),
        (
            lambda head: accept_answer(head).replace(b"Upgrade: websocket", b"Upgrade: h2c"),
            "Upgrade",
        ),
        (
            lambda head: accept_answer(head, b"Sec-WebSocket-Extensions: x-made-up\r\n"),
            "extensions",
        ),
        (lambda head: b"HTTP/1.1 101 Switching Protocols\r\nbroken header\r\n\r\n", "invalid HTTP"),
    ],
)
async def test_invalid_101_answers(nursery: trio.Nursery, answer: object, match: str) -> None:
    async def respond(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(answer(head))  # type: ignore[operator]
        await trio.sleep_forever()

    port = await nursery.start(serve_raw, respond)
    with trio.fail_after(PROMPTLY):
        with pytest.raises(trio_ws.HandshakeError, match=match):
            async with trio_ws.open_websocket(
                HOST, port, "/", use_ssl=False, subprotocols=["mine"]
            ):
                pass  # pragma: no cover


async def test_connect_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def never_answer(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await trio.sleep_forever()

    port = await nursery.start(serve_raw, never_answer)
    start_time = trio.current_time()
    with pytest.raises(trio_ws.ConnectionTimeout):
        async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False, connect_timeout=7):
            pass  # pragma: no cover
    assert trio.current_time() - start_time == pytest.approx(7)


async def test_refused_connection_is_an_oserror() -> None:
    listener = trio.socket.socket()
    await listener.bind((HOST, 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    with pytest.raises(OSError):
        async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False):
            pass  # pragma: no cover


# ------------------------------------------------------------------ server side


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 426),
        (b"this is not http\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n", 405),
        (upgrade_request().replace(b"Version: 13", b"Version: 8"), 426),
        (upgrade_request().replace(b"Connection: Upgrade", b"Connection: keep-alive"), 400),
        (upgrade_request().replace(b"Sec-WebSocket-Key", b"X-Not-The-Key"), 400),
        (upgrade_request().replace(b"HTTP/1.1", b"HTTP/1.0"), 400),
        (upgrade_request(extra=b"X-Big: " + b"a" * 20000 + b"\r\n"), 431),
    ],
)
async def test_bad_requests_get_http_errors(
    echo_server: trio_ws.WebSocketServer, request_bytes: bytes, status: int
) -> None:
    answer = await http_exchange(echo_server.port, request_bytes)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:80]
    if status == 426:
        assert b"sec-websocket-version: 13" in answer.lower()
    # ...and the server keeps serving everyone else.
    async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws:
        await ws.send_message("still here")
        assert await ws.get_message() == "still here"


async def test_slow_handshake_is_dropped_while_others_are_served(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = await start(nursery, echo_handler, connect_timeout=10)
    slow = await trio.open_tcp_stream(HOST, server.port)
    await slow.send_all(upgrade_request()[:20])  # and never the rest
    start_time = trio.current_time()
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
        await ws.send_message("fast")
        assert await ws.get_message() == "fast"
    assert trio.current_time() - start_time < 1
    assert await slow.receive_some(100) == b""  # dropped at the deadline
    assert trio.current_time() - start_time == pytest.approx(10, abs=0.1)
    await slow.aclose()


async def test_a_request_hook_that_outlasts_connect_timeout_drops_the_client(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # The hook returns without a checkpoint after the deadline has passed:
    # the handshake still took longer than connect_timeout, so the client
    # is dropped rather than handed to the handler.
    handled: list[str] = []

    async def slow_hook(request: trio_ws.HTTPRequest) -> None:
        autojump_clock.jump(11)

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        handled.append(request.path)  # pragma: no cover

    caplog.set_level("DEBUG", logger="trio_ws.server")
    server = await start(nursery, handler, connect_timeout=10, request_hook=slow_hook)
    with pytest.raises(trio_ws.HandshakeError, match="closed the connection"):
        async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False):
            pass  # pragma: no cover
    assert handled == []
    assert any("did not finish its handshake in time" in r.getMessage() for r in caplog.records)


async def test_wrap_server_stream_raises_handshake_error_on_bad_request() -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        await client.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(trio_ws.HandshakeError, match="426"):
            await trio_ws.wrap_server_stream(nursery, server)
        answer = await client.receive_some(1000)
        assert answer.startswith(b"HTTP/1.1 426 ")


@pytest.mark.parametrize("body", [b"", b"hi"])
async def test_frames_sent_with_the_request_reach_the_handler(
    echo_server: trio_ws.WebSocketServer, body: bytes
) -> None:
    # The first frame in the same write as the head is the connection's
    # first message; a request body (which an upgrade should not have) is
    # read and dropped first, not taken for frames.
    extra = f"Content-Length: {len(body)}\r\n".encode() if body else b""
    request = upgrade_request(extra=extra)
    async with await trio.open_tcp_stream(HOST, echo_server.port) as stream:
        await stream.send_all(request + body + frame(0x1, b"early"))
        reader = Reader(stream)
        with trio.fail_after(5):
            assert (await reader.head()).startswith(b"HTTP/1.1 101 ")
            assert await reader.frame() == (0x1, b"early")
