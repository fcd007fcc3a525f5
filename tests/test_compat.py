"""trio-websocket behaviours that ordinary programs rely on, after
``import trio_ws as trio_websocket``: the logger, reprs and strs, endpoint
descriptions, exception classes and handshake details. The deliberate
differences are listed in docs/howto/migrating.rst."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
import trio
import trio.testing

import trio_ws

from .conftest import HOST, echo_handler
from .support.peers import Reader, raw_client, serve_raw


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def trio_websocket_logger() -> Iterator[tuple[logging.Logger, ListHandler]]:
    """The 'trio-websocket' logger with a handler, restored afterwards."""
    logger = logging.getLogger("trio-websocket")
    handler = ListHandler()
    level = logger.level
    logger.addHandler(handler)
    try:
        yield logger, handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_trio_websocket_logger_configuration_still_applies(
    echo_server: trio_ws.WebSocketServer,
    trio_websocket_logger: tuple[logging.Logger, ListHandler],
) -> None:
    logger, handler = trio_websocket_logger
    logger.setLevel(logging.DEBUG)  # what a trio-websocket program does to see frames
    async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws:
        await ws.send_message("hi")
        await ws.get_message()
    names = {r.name for r in handler.records}
    assert "trio_ws.connection" in names
    assert any("> text 2 chars" in r.getMessage() for r in handler.records)

    # And raising its level silences trio_ws too, as it silenced trio-websocket.
    logger.setLevel(logging.WARNING)
    del handler.records[:]
    async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws:
        await ws.send_message("hi")
        await ws.get_message()
    assert handler.records == []


def test_trio_ws_loggers_sit_below_the_trio_websocket_logger() -> None:
    compat = logging.getLogger("trio-websocket")
    assert logging.getLogger("trio_ws").parent is compat
    assert logging.getLogger("trio_ws.connection").parent is logging.getLogger("trio_ws")
    assert compat.parent is logging.getLogger()


async def test_str_of_a_connection_is_a_short_id(nursery: trio.Nursery) -> None:
    names: list[str] = []

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        names.append(str(ws))
        await ws.get_message()

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
        client_name = str(ws)
        await ws.ping()  # the handler has run accept() once the pong is back
    assert re.fullmatch(r"client-\d+", client_name)
    assert len(names) == 1 and re.fullmatch(r"server-\d+", names[0])
    assert client_name.split("-")[1] != names[0].split("-")[1]


def test_close_reason_repr_and_names() -> None:
    reason = trio_ws.CloseReason(1000, None)
    assert repr(reason) == "CloseReason<code=1000, name=NORMAL_CLOSURE, reason=None>"
    assert repr(trio_ws.CloseReason(4001, "bye")) == (
        "CloseReason<code=4001, name=PRIVATE_RESERVED, reason=bye>"
    )
    assert str(reason) == "1000/NORMAL_CLOSURE"  # trio_ws's own, shorter str
    names = {code: trio_ws.CloseReason(code).name for code in (1004, 2999, 3000, 4999, 5000)}
    assert names == {
        1004: "RFC_RESERVED",
        2999: "RFC_RESERVED",
        3000: "IANA_RESERVED",
        4999: "PRIVATE_RESERVED",
        5000: "INVALID_CODE",
    }
    assert trio_ws.CloseReason(1012).name == "SERVICE_RESTART"


def test_endpoint_str_and_repr() -> None:
    endpoint = trio_ws.Endpoint("127.0.0.1", 8000, False)
    expected = 'Endpoint(address="127.0.0.1", port=8000, is_ssl=False)'
    assert str(endpoint) == repr(endpoint) == expected
    assert trio_ws.Endpoint("::1", 443, True).url == "wss://[::1]"


class OddListener(trio.abc.Listener[trio.abc.Stream]):
    """A listener that is not a socket listener."""

    async def accept(self) -> trio.abc.Stream:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        pass


def test_listeners_that_are_not_sockets_are_their_repr() -> None:
    odd = OddListener()
    server = trio_ws.WebSocketServer(echo_handler, [odd])
    assert server.listeners == [repr(odd)]
    with pytest.raises(RuntimeError):
        server.port  # noqa: B018


async def test_port_of_a_server_listening_on_two_ports_is_an_error() -> None:
    listeners = [*await trio.open_tcp_listeners(0, host=HOST)]
    listeners += await trio.open_tcp_listeners(0, host=HOST)
    try:
        server = trio_ws.WebSocketServer(echo_handler, listeners)
        assert len(server.listeners) == 2
        with pytest.raises(RuntimeError, match="2 ports"):
            server.port  # noqa: B018
    finally:
        for listener in listeners:
            await listener.aclose()


def test_disconnection_timeout_is_a_handshake_error() -> None:
    assert issubclass(trio_ws.DisconnectionTimeout, trio_ws.HandshakeError)
    assert issubclass(trio_ws.ConnectionTimeout, trio_ws.HandshakeError)
    assert issubclass(trio_ws.ConnectionRejected, trio_ws.HandshakeError)


async def test_informational_answer_is_a_rejection(nursery: trio.Nursery) -> None:
    async def answer_100(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(b"HTTP/1.1 100 Continue\r\nX-Why: because\r\n\r\n")
        await trio.sleep(5)  # never upgrades; the client must not wait for more

    port = await nursery.start(serve_raw, answer_100)
    with trio.fail_after(2):
        with pytest.raises(trio_ws.ConnectionRejected) as info:
            async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False):
                pass
    assert info.value.status_code == 100 and info.value.body is None
    assert (b"x-why", b"because") in info.value.headers


async def test_accept_extra_headers_follow_the_upgrade_headers_in_order(
    nursery: trio.Nursery,
) -> None:
    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept(extra_headers=[("X-First", "1"), ("X-Second", "2")])
        await ws.get_message()

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    stream, _, head = await raw_client(server.port)
    await stream.aclose()
    names = [line.split(b":")[0].lower() for line in head.split(b"\r\n")[1:] if line]
    # As wsproto (and so trio-websocket) renders it: the upgrade headers,
    # then the handler's, in its order; trio_ws's default Server goes last.
    assert names == [
        b"upgrade",
        b"connection",
        b"sec-websocket-accept",
        b"x-first",
        b"x-second",
        b"server",
    ]


async def test_memory_stream_endpoints_are_reprs() -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    seen: list[object] = []
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            request = await trio_ws.wrap_server_stream(nursery, server_stream)
            seen.extend([request.local, request.remote])
            ws = await request.accept()
            seen.extend([ws.local, ws.remote])
            await ws.aclose()

        nursery.start_soon(serve)
        ws = await trio_ws.wrap_client_stream(nursery, client_stream, "example.com", "/")
        with pytest.raises(trio_ws.ConnectionClosed):
            await ws.get_message()
        await ws.aclose()
    assert seen == [repr(server_stream)] * 4
