"""Bad arguments get a clear TypeError or ValueError from trio_ws itself,
before any network traffic where the call makes that possible."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import pytest
import trio

import trio_ws

from .conftest import HOST, echo_handler
from .support.peers import http_exchange


@pytest.fixture
async def idle_port(nursery: trio.Nursery) -> AsyncIterator[tuple[int, list[int]]]:
    """A port whose listener counts connections and never answers."""
    accepted: list[int] = []

    async def count(stream: trio.SocketStream) -> None:
        accepted.append(1)
        await stream.aclose()

    listeners = await nursery.start(trio.serve_tcp, count, 0)
    yield listeners[0].socket.getsockname()[1], accepted


async def test_extra_headers_as_a_mapping(nursery: trio.Nursery) -> None:
    seen: list[object] = []

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        seen.append((request.header("x-a"), request.header("x-b")))
        ws = await request.accept(extra_headers={"X-Reply": "yes"})
        await ws.get_message()

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    async with trio_ws.open_websocket(
        HOST, server.port, "/", use_ssl=False, extra_headers={"X-A": "1", b"X-B": b"2"}
    ) as ws:
        assert dict(ws.handshake_headers)[b"x-reply"] == b"yes"
    assert seen == [("1", "2")]


@pytest.mark.parametrize(
    ("extra_headers", "match"),
    [
        ("X-A: 1", "mapping or a sequence"),
        (b"X-A: 1", "mapping or a sequence"),
        (42, "mapping or a sequence"),
        ([("X-A",)], r"\(name, value\) pair"),
        (["X-A"], r"\(name, value\) pair"),
        ([("X-A", 1)], "str or bytes, not int"),
        ({"X-A": 1}, "str or bytes, not int"),
    ],
)
async def test_bad_extra_headers_are_a_type_error_before_connecting(
    idle_port: tuple[int, list[int]], extra_headers: object, match: str
) -> None:
    port, accepted = idle_port
    with pytest.raises(TypeError, match=match):
        async with trio_ws.open_websocket(
            HOST,
            port,
            "/",
            use_ssl=False,
            extra_headers=extra_headers,  # type: ignore[arg-type]
        ):
            pass
    await trio.sleep(0.05)
    assert accepted == []


async def test_header_injection_is_still_a_value_error(idle_port: tuple[int, list[int]]) -> None:
    port, accepted = idle_port
    with pytest.raises(ValueError, match="invalid header"):
        async with trio_ws.open_websocket(
            HOST, port, "/", use_ssl=False, extra_headers={"X-A": "1\r\nX-Evil: 1"}
        ):
            pass
    assert accepted == []


@pytest.mark.parametrize("subprotocols", ["chat", b"chat", ["chat", 1]])
async def test_subprotocols_must_be_a_sequence_of_str(
    idle_port: tuple[int, list[int]], subprotocols: object
) -> None:
    port, accepted = idle_port
    url = f"ws://{HOST}:{port}/"
    with pytest.raises(TypeError, match="subprotocol"):
        async with trio_ws.open_websocket_url(url, subprotocols=subprotocols):  # type: ignore[arg-type]
            pass
    async with trio.open_nursery() as nursery:
        with pytest.raises(TypeError, match="subprotocol"):
            await trio_ws.connect_websocket_url(nursery, url, subprotocols=subprotocols)  # type: ignore[arg-type]
    await trio.sleep(0.05)
    assert accepted == []


async def test_invalid_subprotocol_token_is_a_value_error(
    idle_port: tuple[int, list[int]],
) -> None:
    port, accepted = idle_port
    with pytest.raises(ValueError, match="invalid subprotocol"):
        async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False, subprotocols=["a, b"]):
            pass
    assert accepted == []


async def test_ping_and_pong_payloads_are_checked(echo_server: trio_ws.WebSocketServer) -> None:
    async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws:
        with pytest.raises(TypeError, match="must be bytes, not str"):
            await ws.ping("abc")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="must be bytes, not str"):
            await ws.pong("abc")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="at most 125 bytes, not 126"):
            await ws.ping(b"x" * 126)
        with pytest.raises(ValueError, match="at most 125 bytes"):
            await ws.pong(b"x" * 126)
        # The connection is unharmed, and the limits themselves are fine.
        with trio.fail_after(5):
            await ws.ping(b"x" * 125)
            await ws.ping(bytearray(b"ba"))
        await ws.pong(b"y" * 125)
        await ws.send_message("still open")
        assert await ws.get_message() == "still open"


async def test_close_reason_longer_than_123_utf8_bytes_is_a_value_error(
    nursery: trio.Nursery,
) -> None:
    reasons: list[str | None] = []

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        with pytest.raises(trio_ws.ConnectionClosed) as info:
            await ws.get_message()
        reasons.append(info.value.reason.reason)

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
        with pytest.raises(ValueError, match="at most 123 bytes of UTF-8, not 200"):
            await ws.aclose(1000, "é" * 100)
        with pytest.raises(TypeError, match="str or None"):
            await ws.aclose(1000, b"bytes")  # type: ignore[arg-type]
        assert ws.closed is None  # nothing was sent
        reason = "é" * 61 + "x"  # exactly 123 bytes
        await ws.aclose(1000, reason)
    with trio.fail_after(5):
        while not reasons:
            await trio.sleep(0.01)
    assert reasons == [reason]  # whole, not cut short


async def test_server_shutdown_checks_its_reason_first(nursery: trio.Nursery) -> None:
    server = await nursery.start(trio_ws.serve_websocket, echo_handler, HOST, 0, None)
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
        with pytest.raises(ValueError, match="at most 123 bytes"):
            await server.shutdown(1001, "x" * 124)
        await ws.send_message("still served")
        assert await ws.get_message() == "still served"


async def test_hook_response_headers_may_be_a_mapping(nursery: trio.Nursery) -> None:
    async def hook(request: trio_ws.HTTPRequest) -> trio_ws.HTTPResponse:
        return trio_ws.HTTPResponse(200, {"Content-Type": "text/plain", "Server": None}, b"ok\n")

    server = await nursery.start(
        partial(trio_ws.serve_websocket, request_hook=hook), echo_handler, HOST, 0, None
    )
    answer = await http_exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == b"ok\n"
    assert b"\r\ncontent-type: text/plain" in head
    assert b"\r\nserver:" not in head.lower()  # None removed the default
