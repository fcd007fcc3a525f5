"""Conveniences users of websockets expect: request state, header and query
access, choosing a subprotocol, default User-Agent and Server headers, typed
receives and the ConnectionClosedOK / ConnectionClosedError split."""

from __future__ import annotations

import typing
from functools import partial

import pytest
import trio

import trio_ws
from trio_ws.options import DEFAULT_SERVER_HEADER, DEFAULT_USER_AGENT

from .conftest import HOST, echo_handler
from .support.peers import http_exchange, raw_client


async def test_request_hook_hands_state_to_the_handler(nursery: trio.Nursery) -> None:
    seen: dict[str, object] = {}

    async def hook(request: trio_ws.HTTPRequest) -> trio_ws.HTTPResponse | None:
        assert request.state == {}
        if request.query.get("token") != "s3cret":
            return trio_ws.HTTPResponse(401, body=b"who are you?\n")
        request.state["user"] = "alice"
        return None

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        seen["user"] = request.state.get("user")
        ws = await request.accept()
        await ws.send_message(f"hello {request.state['user']}")
        await ws.get_message()

    server = await nursery.start(
        partial(trio_ws.serve_websocket, request_hook=hook), handler, HOST, 0, None
    )
    url = f"ws://{HOST}:{server.port}/chat?token=s3cret"
    async with trio_ws.open_websocket_url(url) as ws:
        assert await ws.get_message() == "hello alice"
    assert seen == {"user": "alice"}
    with pytest.raises(trio_ws.ConnectionRejected) as info:
        async with trio_ws.open_websocket_url(f"ws://{HOST}:{server.port}/chat?token=no"):
            pass
    assert info.value.status_code == 401


async def test_each_request_gets_its_own_state(nursery: trio.Nursery) -> None:
    states: list[dict[str, object]] = []

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        request.state["n"] = len(states)
        states.append(request.state)
        await request.reject(404)

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    for _ in range(2):
        with pytest.raises(trio_ws.ConnectionRejected):
            async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False):
                pass
    assert states == [{"n": 0}, {"n": 1}] and states[0] is not states[1]


async def test_request_header_and_query(nursery: trio.Nursery) -> None:
    seen: dict[str, object] = {}

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        seen["token"] = request.header("X-Token")
        seen["missing"] = request.header("x-missing")
        seen["query"] = request.query
        await request.reject(400)

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    url = f"ws://{HOST}:{server.port}/room?a=1&b=two%20words&a=2&flag"
    with pytest.raises(trio_ws.ConnectionRejected):
        async with trio_ws.open_websocket_url(url, extra_headers=[("X-Token", "abc")]):
            pass
    assert seen == {
        "token": "abc",
        "missing": None,
        "query": {"a": "1", "b": "two words", "flag": ""},
    }


def test_http_request_query_and_header() -> None:
    request = trio_ws.HTTPRequest("GET", "/h?x=1&x=2", "1.1", [(b"origin", b"https://a")])
    assert request.query == {"x": "1"}
    assert request.header("Origin") == "https://a"
    assert trio_ws.HTTPRequest("GET", "/h", "1.1", []).query == {}


@pytest.mark.parametrize(
    ("choice", "offered", "chosen"),
    [
        (["chat.v2", "chat.v1"], ["chat.v1", "chat.v2"], "chat.v1"),  # the client's preference
        (["chat.v3"], ["chat.v1", "chat.v2"], None),  # nothing in common: none
        (lambda offers: offers[-1], ["chat.v1", "chat.v2"], "chat.v2"),
        (lambda offers: None, ["chat.v1"], None),
    ],
)
async def test_server_subprotocols_choose_from_the_offer(
    nursery: trio.Nursery, choice: object, offered: list[str], chosen: str | None
) -> None:
    server = await nursery.start(
        partial(trio_ws.serve_websocket, subprotocols=choice), echo_handler, HOST, 0, None
    )
    async with trio_ws.open_websocket(
        HOST, server.port, "/", use_ssl=False, subprotocols=offered
    ) as ws:
        assert ws.subprotocol == chosen


async def test_subprotocol_callable_sees_the_offer_and_accept_may_override(
    nursery: trio.Nursery,
) -> None:
    calls: list[object] = []

    def choose(offers: object) -> str | None:
        calls.append(offers)
        return "b"

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept(subprotocol="a" if request.path == "/explicit" else None)
        await ws.get_message()

    server = await nursery.start(
        partial(trio_ws.serve_websocket, subprotocols=choose), handler, HOST, 0, None
    )
    for path, expected in (("/", "b"), ("/explicit", "a")):
        async with trio_ws.open_websocket(
            HOST, server.port, path, use_ssl=False, subprotocols=["a", "b"]
        ) as ws:
            assert ws.subprotocol == expected
    assert calls == [("a", "b")]  # not asked when accept() names one


async def test_server_subprotocols_rejects_a_bare_string() -> None:
    listeners = await trio.open_tcp_listeners(0, host=HOST)
    try:
        with pytest.raises(TypeError, match="sequence of str"):
            trio_ws.WebSocketServer(echo_handler, listeners, subprotocols="chat")  # type: ignore[arg-type]
    finally:
        for listener in listeners:
            await listener.aclose()


async def test_default_user_agent_and_server_headers(nursery: trio.Nursery) -> None:
    seen: list[str | None] = []

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        seen.append(request.header("user-agent"))
        ws = await request.accept()
        await ws.get_message()

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
        assert dict(ws.handshake_headers)[b"server"] == DEFAULT_SERVER_HEADER.encode()
    assert DEFAULT_USER_AGENT == f"trio_ws/{trio_ws.__version__}"
    assert seen == [DEFAULT_USER_AGENT]
    # Overridden, in any case, and never sent twice; None leaves it out.
    for given, expected in (({"user-agent": "mine/1"}, "mine/1"), ({"User-Agent": None}, None)):
        async with trio_ws.open_websocket(
            HOST, server.port, "/", use_ssl=False, extra_headers=given
        ):
            pass
        assert seen[-1] == expected
    _, reader, head = await raw_client(server.port)
    await reader.stream.aclose()
    assert head.lower().count(b"\r\nserver: ") == 1


async def test_server_header_is_overridable_and_removable(nursery: trio.Nursery) -> None:
    async def handler(request: trio_ws.WebSocketRequest) -> None:
        if request.path == "/mine":
            await request.reject(404, extra_headers={"Server": "mine"})
        elif request.path == "/none":
            await request.reject(404, extra_headers=[("server", None)])
        else:
            await request.reject(404)

    default = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    quiet = await nursery.start(
        partial(trio_ws.serve_websocket, server_header=None), handler, HOST, 0, None
    )

    async def server_header(port: int, path: str) -> str | None:
        with pytest.raises(trio_ws.ConnectionRejected) as info:
            async with trio_ws.open_websocket(HOST, port, path, use_ssl=False):
                pass
        values = [v.decode() for n, v in info.value.headers if n == b"server"]
        assert len(values) <= 1
        return values[0] if values else None

    assert await server_header(default.port, "/") == DEFAULT_SERVER_HEADER
    assert await server_header(default.port, "/mine") == "mine"
    assert await server_header(default.port, "/none") is None
    assert await server_header(quiet.port, "/") is None
    assert await server_header(quiet.port, "/mine") == "mine"
    # The server's own answers carry it too, such as 426 to a plain GET.
    answer = await http_exchange(default.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 426")
    assert f"\r\nserver: {DEFAULT_SERVER_HEADER}\r\n".encode() in answer


async def test_get_text_and_get_bytes(echo_server: trio_ws.WebSocketServer) -> None:
    async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws:
        await ws.send_message("text")
        text: str = await ws.get_text()
        assert text == "text"
        await ws.send_message(b"binary")
        data: bytes = await ws.get_bytes()
        assert data == b"binary"
        await ws.send_message(b"\x01\x02")
        with pytest.raises(trio_ws.MessageTypeError) as info:
            await ws.get_text()
        assert info.value.message == b"\x01\x02" and info.value.expected is str
        assert "expected a text message, got 2 bytes" in str(info.value)
        assert isinstance(info.value, TypeError)
        await ws.send_message("é")
        with pytest.raises(trio_ws.MessageTypeError, match="expected a binary message"):
            await ws.get_bytes()
        # The connection is still open and in step.
        await ws.send_message("after")
        assert await ws.get_text() == "after"


def test_typed_receives_are_annotated_for_mypy() -> None:
    hints = typing.get_type_hints
    assert hints(trio_ws.WebSocketConnection.get_text)["return"] is str
    assert hints(trio_ws.WebSocketConnection.get_bytes)["return"] is bytes


async def test_connection_closed_ok_and_error(nursery: trio.Nursery) -> None:
    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.aclose(1000 if request.path == "/ok" else 1011)

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    for path, kind in (
        ("/ok", trio_ws.ConnectionClosedOK),
        ("/err", trio_ws.ConnectionClosedError),
    ):
        async with trio_ws.open_websocket(HOST, server.port, path, use_ssl=False) as ws:
            with pytest.raises(kind) as info:
                await ws.get_message()
            assert isinstance(info.value, trio_ws.ConnectionClosed)
            with pytest.raises(kind):
                await ws.send_message("late")


def test_connection_closed_picks_its_subclass_from_the_code() -> None:
    from trio_ws.close_codes import NORMAL_CODES

    for code in NORMAL_CODES:
        exc = trio_ws.ConnectionClosed(trio_ws.CloseReason(code, None))
        assert type(exc) is trio_ws.ConnectionClosedOK
    for code in (1002, 1006, 1009, 1011, 4000):
        exc = trio_ws.ConnectionClosed(trio_ws.CloseReason(code, None))
        assert type(exc) is trio_ws.ConnectionClosedError
    assert {1000, 1001} <= NORMAL_CODES
    # Without a reason (trio-websocket allowed None) it is an error close.
    assert type(trio_ws.ConnectionClosed(None)) is trio_ws.ConnectionClosedError  # type: ignore[arg-type]
    # Constructing a subclass directly keeps it.
    exc = trio_ws.ConnectionClosedError(trio_ws.CloseReason(1000, None))
    assert type(exc) is trio_ws.ConnectionClosedError
