"""Reaching servers over unix sockets and through HTTP CONNECT proxies."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import trio

import trio_ws
from trio_ws.transport import proxy_from_environment

from .conftest import HOST, echo_handler
from .support.peers import Reader


async def test_unix_socket_both_sides(nursery: trio.Nursery, tmp_path: Path) -> None:
    path = str(tmp_path / "ws.sock")
    server = await nursery.start(
        lambda task_status: trio_ws.serve_websocket(
            echo_handler, None, None, None, unix_socket=path, task_status=task_status
        )
    )
    assert server.listeners == [trio_ws.Endpoint(path, 0, False)]
    async with trio_ws.open_websocket_url("ws://localhost/over-unix", unix_socket=path) as ws:
        await ws.send_message("through a unix socket")
        assert await ws.get_message() == "through a unix socket"


async def test_stale_unix_socket_file_is_replaced(nursery: trio.Nursery, tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    stale = trio.socket.socket(trio.socket.AF_UNIX)
    await stale.bind(str(path))
    stale.close()  # the file stays behind, as after a crash
    await nursery.start(
        lambda task_status: trio_ws.serve_websocket(
            echo_handler, None, None, None, unix_socket=str(path), task_status=task_status
        )
    )
    async with trio_ws.open_websocket_url("ws://localhost/", unix_socket=str(path)) as ws:
        await ws.send_message("fresh")
        assert await ws.get_message() == "fresh"


class ConnectProxy:
    """A small HTTP CONNECT proxy for the tests, with optional Basic auth."""

    def __init__(self, credentials: str | None = None) -> None:
        self.credentials = credentials
        self.targets: list[str] = []

    async def handle(self, client: trio.SocketStream) -> None:
        reader = Reader(client)
        head = (await reader.head()).decode()
        method, target, _ = head.split("\r\n", 1)[0].split(" ")
        auth = [
            line.split(":", 1)[1].strip()
            for line in head.split("\r\n")
            if line.lower().startswith("proxy-authorization:")
        ]
        if method != "CONNECT":
            await client.send_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
            if auth != [expected]:
                await client.send_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                return
        self.targets.append(target)
        host, port = target.rsplit(":", 1)
        upstream = await trio.open_tcp_stream(host.strip("[]"), int(port))
        await client.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        async with upstream, trio.open_nursery() as pipes:

            async def pipe(source: trio.abc.Stream, sink: trio.abc.Stream, first: bytes) -> None:
                try:
                    if first:
                        await sink.send_all(first)
                    while data := await source.receive_some(65536):
                        await sink.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                pipes.cancel_scope.cancel()

            pipes.start_soon(pipe, client, upstream, bytes(reader.buffer))
            pipes.start_soon(pipe, upstream, client, b"")

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        async def handle(stream: trio.SocketStream) -> None:
            async with stream:
                try:
                    await self.handle(stream)
                except (EOFError, trio.BrokenResourceError, OSError):
                    pass

        listeners = await trio.open_tcp_listeners(0, host=HOST)
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handle, listeners)
            task_status.started(listeners[0].socket.getsockname()[1])


async def test_connect_through_proxy_with_basic_auth(nursery: trio.Nursery) -> None:
    server = await nursery.start(trio_ws.serve_websocket, echo_handler, HOST, 0, None)
    proxy = ConnectProxy("alice:pa ss")
    proxy_port = await nursery.start(proxy.serve)
    url = f"ws://{HOST}:{server.port}/via-proxy"
    async with trio_ws.open_websocket_url(
        url, proxy=f"http://alice:pa%20ss@{HOST}:{proxy_port}"
    ) as ws:
        await ws.send_message("proxied")
        assert await ws.get_message() == "proxied"
    assert proxy.targets == [f"{HOST}:{server.port}"]
    with pytest.raises(trio_ws.HandshakeError, match="407"):
        async with trio_ws.open_websocket_url(url, proxy=f"http://{HOST}:{proxy_port}"):
            pass  # pragma: no cover


async def test_proxy_from_environment_and_no_proxy(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await nursery.start(trio_ws.serve_websocket, echo_handler, HOST, 0, None)
    proxy = ConnectProxy()
    proxy_port = await nursery.start(proxy.serve)
    monkeypatch.setenv("http_proxy", f"http://{HOST}:{proxy_port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    url = f"ws://{HOST}:{server.port}/"
    async with trio_ws.open_websocket_url(url) as ws:
        await ws.send_message("env proxy")
        assert await ws.get_message() == "env proxy"
    assert len(proxy.targets) == 1
    monkeypatch.setenv("no_proxy", f"example.com,{HOST}")
    async with trio_ws.open_websocket_url(url) as ws:
        await ws.send_message("direct")
        assert await ws.get_message() == "direct"
    async with trio_ws.open_websocket_url(url, proxy=None) as ws:
        await ws.send_message("explicitly direct")
        assert await ws.get_message() == "explicitly direct"
    assert len(proxy.targets) == 1


def test_upper_case_http_proxy_is_ignored_in_a_cgi_script(monkeypatch: pytest.MonkeyPatch) -> None:
    # "httpoxy": in a CGI script a client sets HTTP_PROXY with a Proxy: header.
    monkeypatch.setenv("HTTP_PROXY", "http://upper:1")
    assert proxy_from_environment("example.com", False) == "http://upper:1"
    monkeypatch.setenv("REQUEST_METHOD", "GET")
    assert proxy_from_environment("example.com", False) is None
    monkeypatch.setenv("HTTPS_PROXY", "http://secure:1")
    assert proxy_from_environment("example.com", True) == "http://secure:1"
    monkeypatch.setenv("http_proxy", "http://lower:1")  # no header sets a lower-case name
    assert proxy_from_environment("example.com", False) == "http://lower:1"
