"""The ordinary use of the public API, client and server, over loopback."""

from __future__ import annotations

import errno
import socket
import ssl

import pytest
import trio
import trio.testing

import trio_ws
from trio_ws.options import DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MESSAGE_QUEUE_SIZE

from .conftest import HOST, echo_handler
from .support.handshake import accept_answer
from .support.peers import Reader, serve_raw


async def test_echo_text_and_bytes(echo_server: trio_ws.WebSocketServer) -> None:
    async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws:
        await ws.send_message("héllo")
        assert await ws.get_message() == "héllo"
        await ws.send_message(b"\x00\xff")
        reply = await ws.get_message()
        assert reply == b"\x00\xff" and isinstance(reply, bytes)
        await ws.send_message(b"")
        assert await ws.get_message() == b""
    assert ws.closed == trio_ws.CloseReason(1000, None)
    assert ws.closed.name == "NORMAL_CLOSURE"


async def test_defaults_match_trio_websocket() -> None:
    assert DEFAULT_MESSAGE_QUEUE_SIZE == 1
    assert DEFAULT_MAX_MESSAGE_SIZE == 2**20


async def test_import_as_trio_websocket() -> None:
    import trio_ws as trio_websocket

    for name in [
        "open_websocket_url",
        "open_websocket",
        "connect_websocket",
        "connect_websocket_url",
        "wrap_client_stream",
        "serve_websocket",
        "WebSocketServer",
        "wrap_server_stream",
        "WebSocketRequest",
        "WebSocketConnection",
        "CloseReason",
        "Endpoint",
        "ConnectionClosed",
        "HandshakeError",
        "ConnectionRejected",
        "ConnectionTimeout",
        "DisconnectionTimeout",
    ]:
        assert hasattr(trio_websocket, name), name


async def test_connection_properties(nursery: trio.Nursery) -> None:
    seen: dict[str, object] = {}

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        seen["path"] = request.path
        seen["proposed"] = request.proposed_subprotocols
        seen["header"] = dict(request.headers)[b"x-token"]
        seen["remote"] = request.remote
        ws = await request.accept(subprotocol="chat.v2", extra_headers=[(b"X-Server", b"yes")])
        seen["server_side"] = (ws.is_server, ws.is_client, ws.path, ws.subprotocol)
        await ws.get_message()

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    url = f"ws://{HOST}:{server.port}/room/1?x=y"
    async with trio_ws.open_websocket_url(
        url, subprotocols=["chat.v1", "chat.v2"], extra_headers=[(b"X-Token", b"abc")]
    ) as ws:
        assert ws.is_client and not ws.is_server
        assert ws.subprotocol == "chat.v2"
        assert ws.path == "/room/1?x=y"
        assert (b"x-server", b"yes") in ws.handshake_headers
        assert ws.remote == trio_ws.Endpoint(HOST, server.port, False)
        assert ws.remote.url == f"ws://{HOST}:{server.port}"
        assert ws.local is not None and ws.local.address == HOST
        await ws.send_message("done")
    assert seen["path"] == "/room/1?x=y"
    assert seen["proposed"] == ("chat.v1", "chat.v2")
    assert seen["header"] == b"abc"
    assert seen["server_side"] == (True, False, "/room/1?x=y", "chat.v2")
    assert isinstance(seen["remote"], trio_ws.Endpoint)
    assert server.listeners == [trio_ws.Endpoint(HOST, server.port, False)]


async def test_accept_refuses_unproposed_subprotocol(nursery: trio.Nursery) -> None:
    errors: list[Exception] = []

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        try:
            await request.accept(subprotocol="nope")
        except ValueError as exc:
            errors.append(exc)
            await request.accept()

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
        assert ws.subprotocol is None
    assert len(errors) == 1


async def test_ipv6_literal_url_and_host_header(nursery: trio.Nursery) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    hosts: list[bytes] = []

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        hosts.append(dict(request.headers)[b"host"])
        ws = await request.accept()
        await ws.send_message("v6")

    try:
        server = await nursery.start(trio_ws.serve_websocket, handler, "::1", 0, None)
    except OSError:
        pytest.skip("IPv6 loopback unavailable")
    async with trio_ws.open_websocket_url(f"ws://[::1]:{server.port}/") as ws:
        assert await ws.get_message() == "v6"
        assert ws.remote is not None and ws.remote.address == "::1"
        assert ws.remote.url == f"ws://[::1]:{server.port}"
    assert hosts == [f"[::1]:{server.port}".encode()]


async def test_wss_verifies_certificates(
    nursery: trio.Nursery, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    server = await nursery.start(trio_ws.serve_websocket, echo_handler, HOST, 0, server_context)
    url = f"wss://localhost:{server.port}/"
    async with trio_ws.open_websocket_url(url, client_context) as ws:
        assert ws.remote is not None and ws.remote.is_ssl
        await ws.send_message("secure")
        assert await ws.get_message() == "secure"
    # The default context does not trust the test CA: verification must fail.
    with pytest.raises(trio_ws.HandshakeError) as info:
        async with trio_ws.open_websocket_url(url):
            pass  # pragma: no cover
    assert isinstance(info.value.__cause__, trio.BrokenResourceError)
    assert isinstance(info.value.__cause__.__cause__, ssl.SSLCertVerificationError)
    # use_ssl=True also means a default, verifying context.
    with pytest.raises(trio_ws.HandshakeError):
        async with trio_ws.open_websocket("localhost", server.port, "/", use_ssl=True):
            pass  # pragma: no cover


async def test_connect_websocket_caller_owns_close(echo_server: trio_ws.WebSocketServer) -> None:
    async with trio.open_nursery() as nursery:
        ws = await trio_ws.connect_websocket(nursery, HOST, echo_server.port, "/", use_ssl=False)
        await ws.send_message("a")
        assert await ws.get_message() == "a"
        await ws.aclose()
        url_ws = await trio_ws.connect_websocket_url(nursery, f"ws://{HOST}:{echo_server.port}/")
        await url_ws.aclose(code=4000, reason="bye")
        assert url_ws.closed == trio_ws.CloseReason(4000, "bye")


async def test_wrap_streams_over_memory() -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            request = await trio_ws.wrap_server_stream(nursery, server_stream)
            assert request.path == "/mem"
            ws = await request.accept()
            await ws.send_message(await ws.get_message())
            await ws.aclose()

        nursery.start_soon(serve)
        ws = await trio_ws.wrap_client_stream(nursery, client_stream, "example.com", "/mem")
        # As in trio-websocket: a stream that is not a socket is its repr().
        assert ws.local == ws.remote == repr(client_stream)
        await ws.send_message(b"over memory")
        assert await ws.get_message() == b"over memory"
        with pytest.raises(trio_ws.ConnectionClosed) as info:
            await ws.get_message()
        assert info.value.reason.code == 1000
        await ws.aclose()


async def test_aclose_is_idempotent_and_sends_fail_after(
    echo_server: trio_ws.WebSocketServer,
) -> None:
    async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws:
        await ws.aclose(1001, "going")
        await ws.aclose()
        assert ws.closed == trio_ws.CloseReason(1001, "going")
        with pytest.raises(trio_ws.ConnectionClosed):
            await ws.send_message("late")
        with pytest.raises(trio_ws.ConnectionClosed):
            await ws.get_message()
        with pytest.raises(trio_ws.ConnectionClosed):
            await ws.ping()


async def test_aclose_rejects_reserved_codes(echo_server: trio_ws.WebSocketServer) -> None:
    async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws:
        for code in (1005, 1006, 1015, 999, 2000, 5000):
            with pytest.raises(ValueError):
                await ws.aclose(code)
        assert ws.closed is None


async def test_ping_returns_on_pong_and_pong_is_allowed(
    echo_server: trio_ws.WebSocketServer,
) -> None:
    async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws:
        await ws.ping()
        await ws.ping(b"custom")
        await ws.pong(b"unsolicited")
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(ws.ping, str(i).encode())
        await ws.send_message("still fine")
        assert await ws.get_message() == "still fine"


async def test_ping_payload_in_flight_twice_is_refused(nursery: trio.Nursery) -> None:
    async def silent(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(accept_answer(head))
        await trio.sleep_forever()  # never answers a ping

    port = await nursery.start(serve_raw, silent)
    async with trio.open_nursery() as inner:
        ws = await trio_ws.connect_websocket(inner, HOST, port, "/", use_ssl=False)
        inner.start_soon(ws.ping, b"same")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(ValueError):
            await ws.ping(b"same")
        inner.cancel_scope.cancel()


async def test_async_for_ends_quietly_on_normal_close(nursery: trio.Nursery) -> None:
    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        for i in range(3):
            await ws.send_message(str(i))
        await ws.aclose(1001)

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
        assert [m async for m in ws] == ["0", "1", "2"]
        assert ws.closed is not None and ws.closed.code == 1001


async def test_async_for_raises_on_abnormal_close(nursery: trio.Nursery) -> None:
    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.aclose(4001, "custom")

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
        with pytest.raises(trio_ws.ConnectionClosed) as info:
            async for _ in ws:
                pass  # pragma: no cover
        assert info.value.reason == trio_ws.CloseReason(4001, "custom")


async def test_concurrent_senders_are_served_in_order(echo_server: trio_ws.WebSocketServer) -> None:
    async with trio_ws.open_websocket(
        HOST, echo_server.port, "/", use_ssl=False, message_queue_size=100
    ) as ws:
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(ws.send_message, f"m{i}")
                await trio.lowlevel.checkpoint()
        received = [await ws.get_message() for _ in range(50)]
        assert received == [f"m{i}" for i in range(50)]


async def test_invalid_arguments_are_refused(echo_server: trio_ws.WebSocketServer) -> None:
    with pytest.raises(ValueError):
        async with trio_ws.open_websocket(HOST, 1, "/", use_ssl=False, message_queue_size=-1):
            pass  # pragma: no cover
    with pytest.raises(ValueError):
        async with trio_ws.open_websocket_url("http://example.com/"):
            pass  # pragma: no cover
    with pytest.raises(ValueError):
        async with trio_ws.open_websocket_url(
            f"ws://{HOST}:{echo_server.port}/", extra_headers=[(b"X-Evil", b"a\r\nInjected: 1")]
        ):
            pass  # pragma: no cover
    async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws:
        with pytest.raises(TypeError):
            await ws.send_message(42)  # type: ignore[arg-type]
        await ws.send_message("unharmed")
        assert await ws.get_message() == "unharmed"


def _closed_port() -> int:
    """A loopback port with nothing listening (bound, never listened on)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


async def test_bad_tls_arguments_fail_before_any_network(client_context: ssl.SSLContext) -> None:
    # Issue 13 item 7. Nothing listens on the port: had a connection been
    # attempted, the error would be ConnectionRefusedError.
    port = _closed_port()
    with pytest.raises(ValueError, match="ws:// URL; use wss://"):
        async with trio_ws.open_websocket_url(f"ws://{HOST}:{port}/", client_context):
            pass  # pragma: no cover
    with pytest.raises(
        TypeError, match=r"use_ssl must be True, False or an ssl.SSLContext, not int"
    ):
        async with trio_ws.open_websocket(HOST, port, "/", use_ssl=1):  # type: ignore[arg-type]
            pass  # pragma: no cover
    async with trio.open_nursery() as nursery:
        with pytest.raises(TypeError, match="use_ssl"):
            await trio_ws.connect_websocket(nursery, HOST, port, "/", use_ssl="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid port"):
        trio_ws.open_websocket_url(f"ws://{HOST}:99999/")


async def test_refused_connection_carries_its_errno() -> None:
    # Issue 13 item 9: the errno used to be only inside an ExceptionGroup cause.
    with pytest.raises(OSError) as caught:
        async with trio_ws.open_websocket(HOST, _closed_port(), "/", use_ssl=False):
            pass  # pragma: no cover
    assert caught.value.errno == errno.ECONNREFUSED
    assert isinstance(caught.value, ConnectionRefusedError)
