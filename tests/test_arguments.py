"""Bad arguments get a clear TypeError or ValueError from trio_ws itself,
before any network traffic where the call makes that possible."""

from __future__ import annotations

import sys
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


@pytest.mark.parametrize(
    "extra_headers",
    [
        {"X-A": "1\r\nX-Evil: 1"},  # header injection
        {"X A": "1"},  # a name must be a token
        {"X-A:": "1"},
        {"": "1"},
        {"X-A": "bell\x07"},  # no control characters in a value
        {"X-A": "\x7f"},
    ],
)
async def test_invalid_headers_are_a_value_error_before_connecting(
    idle_port: tuple[int, list[int]], extra_headers: dict[str, str]
) -> None:
    port, accepted = idle_port
    with pytest.raises(ValueError, match="invalid header"):
        async with trio_ws.open_websocket(
            HOST, port, "/", use_ssl=False, extra_headers=extra_headers
        ):
            pass
    assert accepted == []


async def test_a_host_in_extra_headers_replaces_the_default(nursery: trio.Nursery) -> None:
    # A virtual host reached by address: one Host header, the caller's.
    hosts: list[list[bytes]] = []

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        hosts.append([v for n, v in request.headers if n == b"host"])
        ws = await request.accept()
        await ws.get_message()

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    headers = {"Host": "chat.example.test"}
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False, extra_headers=headers):
        pass
    assert hosts == [[b"chat.example.test"]]


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("Upgrade", "handshake sends it"),
        ("connection", "handshake sends it"),
        ("Sec-WebSocket-Key", "fresh one"),
        ("Sec-WebSocket-Version", "handshake sends it"),
        ("Sec-WebSocket-Accept", "server's answer"),
        ("Sec-WebSocket-Protocol", "subprotocols="),
        ("Sec-WebSocket-Extensions", "compression="),
    ],
)
async def test_headers_the_handshake_owns_are_refused_before_connecting(
    idle_port: tuple[int, list[int]], name: str, hint: str
) -> None:
    port, accepted = idle_port
    with pytest.raises(ValueError, match=f"may not set '{name.lower()}': .*{hint}"):
        async with trio_ws.open_websocket(
            HOST, port, "/", use_ssl=False, extra_headers={name: "x"}
        ):
            pass  # pragma: no cover
    assert accepted == []


@pytest.mark.parametrize("resource", ["/a b", "/chat\r\nX-Evil: 1", "/caf\u00e9", "", "/\t"])
def test_invalid_resource_is_a_value_error_from_the_call(resource: str) -> None:
    # Before, h11 refused the target after the TCP connection was made.
    with pytest.raises(ValueError, match="invalid resource"):
        trio_ws.open_websocket(HOST, 1, resource, use_ssl=False)


def test_invalid_url_path_is_a_value_error_from_the_call() -> None:
    with pytest.raises(ValueError, match="invalid resource"):
        trio_ws.open_websocket_url(f"ws://{HOST}:1/caf\u00e9")


@pytest.mark.parametrize("host", ["example.com\r\nX-Evil: 1", "", "nul\x00"])
async def test_invalid_host_is_a_value_error_before_sending(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, host: str
) -> None:
    client, server = trio.testing.memory_stream_pair()
    with pytest.raises(ValueError, match="invalid host"), trio.fail_after(10):
        await trio_ws.wrap_client_stream(nursery, client, host, "/")
    await client.send_all(b"end")  # the first bytes the server sees
    assert await server.receive_some() == b"end"


@pytest.mark.parametrize("name", ["X A", "X(A)", "X-A\x01"])
async def test_server_refuses_to_send_an_invalid_header_name(
    nursery: trio.Nursery, name: str
) -> None:
    # The server renders its answers itself: a name that is not a token
    # must not reach the wire.
    refused: list[BaseException] = []

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        try:
            await request.accept(extra_headers={name: "1"})
        except ValueError as exc:
            refused.append(exc)
            await request.reject(400)

    server = await nursery.start(
        lambda task_status: trio_ws.serve_websocket(handler, HOST, 0, None, task_status=task_status)
    )
    with pytest.raises(trio_ws.ConnectionRejected) as rejected:
        async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False):
            pass  # pragma: no cover
    assert rejected.value.status_code == 400
    assert len(refused) == 1 and "invalid header" in str(refused[0])


async def test_tab_and_non_ascii_bytes_are_allowed_in_values(nursery: trio.Nursery) -> None:
    seen: list[bytes | None] = []

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        seen.append(dict(request.headers).get(b"x-a"))
        await request.reject(404)

    server = await nursery.start(
        lambda task_status: trio_ws.serve_websocket(handler, HOST, 0, None, task_status=task_status)
    )
    with pytest.raises(trio_ws.ConnectionRejected):
        async with trio_ws.open_websocket(
            HOST, server.port, "/", use_ssl=False, extra_headers={"X-A": b"a\tb \xe9"}
        ):
            pass  # pragma: no cover
    assert seen == [b"a\tb \xe9"]


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


# ------------------------------------------------ one source of connection options


def test_connection_keywords_are_the_fields_of_connection_options() -> None:
    """The typed dicts and ConnectionOptions list the same options, with the same types."""
    from dataclasses import fields

    from trio_ws.options import ConnectionKeywords, ConnectionOptions

    def text(annotation: object) -> str:  # "int", or ForwardRef("int")
        return str(getattr(annotation, "__forward_arg__", annotation))

    typed = {name: text(kind) for name, kind in ConnectionKeywords.__annotations__.items()}
    assert typed == {field.name: text(field.type) for field in fields(ConnectionOptions)}


def test_connection_options_are_keyword_only() -> None:
    from trio_ws.options import ConnectionOptions

    with pytest.raises(TypeError):
        ConnectionOptions(4)  # type: ignore[call-arg]
    assert ConnectionOptions(message_queue_size=4).message_queue_size == 4


async def test_unknown_keywords_are_a_type_error_naming_function_and_keyword(
    idle_port: tuple[int, list[int]],
) -> None:
    port, accepted = idle_port
    url = f"ws://{HOST}:{port}/"
    bad = {"max_mesage_size": 10}
    with pytest.raises(TypeError, match=r"^open_websocket_url\(\) .* 'max_mesage_size'$"):
        trio_ws.open_websocket_url(url, **bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^open_websocket\(\) .* 'max_mesage_size'$"):
        trio_ws.open_websocket(HOST, port, "/", use_ssl=False, **bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^reconnecting_websocket\(\) .* 'max_mesage_size'$"):
        trio_ws.reconnecting_websocket(url, **bad)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        with pytest.raises(TypeError, match=r"^connect_websocket_url\(\) .* 'max_mesage_size'"):
            await trio_ws.connect_websocket_url(nursery, url, **bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"^connect_websocket\(\) .* 'max_mesage_size'"):
            await trio_ws.connect_websocket(nursery, HOST, port, "/", use_ssl=False, **bad)  # type: ignore[arg-type]
    await trio.sleep(0.05)
    assert accepted == []  # nothing connected


async def test_server_keywords_are_checked_before_any_listener_opens(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[object] = []

    async def open_tcp_listeners(*args: object, **kwargs: object) -> None:
        opened.append(args)
        raise AssertionError("a listener was opened before the options were checked")

    monkeypatch.setattr(trio, "open_tcp_listeners", open_tcp_listeners)
    with pytest.raises(TypeError, match=r"^serve_websocket\(\) .* 'origin'$"):
        await trio_ws.serve_websocket(echo_handler, HOST, 0, None, origin=["x"])  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="max_message_size"):
        await trio_ws.serve_websocket(echo_handler, HOST, 0, None, max_message_size=0)
    assert opened == []
    monkeypatch.undo()
    listeners = await trio.open_tcp_listeners(0, host=HOST)
    with pytest.raises(TypeError, match=r"^WebSocketServer\(\) .* 'proxy'$"):
        trio_ws.WebSocketServer(echo_handler, listeners, proxy=None)  # type: ignore[call-arg]
    with pytest.raises(TypeError):  # options are keyword-only, as in trio-websocket
        trio_ws.WebSocketServer(echo_handler, listeners, None)  # type: ignore[call-arg]
    for listener in listeners:
        await listener.aclose()


async def test_wrapped_streams_take_no_connect_timeout() -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        with pytest.raises(TypeError, match=r"^wrap_client_stream\(\) .* 'connect_timeout'$"):
            await trio_ws.wrap_client_stream(
                nursery,
                client_stream,
                "example.com",
                "/",
                connect_timeout=1,  # type: ignore[call-arg]
            )
        with pytest.raises(TypeError, match=r"^wrap_server_stream\(\) .* 'connect_timeout'$"):
            await trio_ws.wrap_server_stream(nursery, server_stream, connect_timeout=1)  # type: ignore[call-arg]


async def test_wrap_server_stream_takes_its_buffer_sizes_positionally() -> None:
    """As in trio-websocket: (nursery, stream, message_queue_size, max_message_size, ...)."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            request = await trio_ws.wrap_server_stream(nursery, server_stream, 2, 10, 4096)
            ws = await request.accept()
            with pytest.raises(trio_ws.ConnectionClosed) as info:
                await ws.get_message()
            assert info.value.reason.code == 1009  # the positional max_message_size
            await ws.aclose()

        nursery.start_soon(serve)
        ws = await trio_ws.wrap_client_stream(nursery, client_stream, "example.com", "/")
        await ws.send_message(b"x" * 11)
        with pytest.raises(trio_ws.ConnectionClosed) as info:
            await ws.get_message()
        assert info.value.reason.code == 1009
        await ws.aclose()


async def test_options_given_to_serve_websocket_reach_its_connections(
    nursery: trio.Nursery,
) -> None:
    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.get_message()

    server = await nursery.start(
        partial(trio_ws.serve_websocket, max_message_size=10, server_header="test/1"),
        handler,
        HOST,
        0,
        None,
    )
    async with trio_ws.open_websocket_url(f"ws://{HOST}:{server.port}/", compression=None) as ws:
        assert dict(ws.handshake_headers)[b"server"] == b"test/1"
        await ws.send_message(b"x" * 11)
        with pytest.raises(trio_ws.ConnectionClosed) as info:
            await ws.get_message()
        assert info.value.reason.code == 1009


@pytest.mark.skipif(sys.version_info < (3, 11), reason="typing.Unpack is 3.11+ at run time")
def test_options_are_typed_for_type_checkers() -> None:
    """Each public function's ``**options`` unpacks the typed dict of what it takes."""
    import typing

    from trio_ws.client import ClientKeywords
    from trio_ws.options import SessionKeywords, StreamKeywords
    from trio_ws.server import ServerKeywords

    expected = {
        trio_ws.open_websocket_url: ClientKeywords,
        trio_ws.open_websocket: ClientKeywords,
        trio_ws.connect_websocket_url: ClientKeywords,
        trio_ws.connect_websocket: ClientKeywords,
        trio_ws.reconnecting_websocket: ClientKeywords,
        trio_ws.wrap_client_stream: StreamKeywords,
        trio_ws.serve_websocket: ServerKeywords,
        trio_ws.WebSocketServer.__init__: ServerKeywords,
        trio_ws.wrap_server_stream: SessionKeywords,
    }
    for function, keywords in expected.items():
        assert typing.get_type_hints(function)["options"] == typing.Unpack[keywords], function
