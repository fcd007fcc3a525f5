from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
import trustme

import trio_ws

from .redis_server import RedisServer, require_redis_server

HOST = "127.0.0.1"


@pytest.fixture(autouse=True)
def no_proxy_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests talk to loopback directly, whatever proxy the machine has."""
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


async def echo_handler(request: trio_ws.WebSocketRequest) -> None:
    ws = await request.accept()
    async for message in ws:
        await ws.send_message(message)


class CloseRecorder:
    """A handler that accepts, waits for a message and records the close code."""

    def __init__(self) -> None:
        self.codes: list[int] = []

    async def __call__(self, request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            await ws.get_message()
        except trio_ws.ConnectionClosed as exc:
            self.codes.append(exc.reason.code)

    async def wait_for(self, count: int) -> list[int]:
        """The codes, once *count* connections have closed (at most 5 s)."""
        with trio.fail_after(5):
            while len(self.codes) < count:
                await trio.sleep(0.01)
        return self.codes


@pytest.fixture
async def echo_server(nursery: trio.Nursery) -> AsyncIterator[trio_ws.WebSocketServer]:
    server = await nursery.start(trio_ws.serve_websocket, echo_handler, HOST, 0, None)
    yield server


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost", "::1").configure_cert(context)
    return context


@pytest.fixture
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for one test (skipped without one, failed in CI)."""
    server = RedisServer(require_redis_server(), tmp_path)
    server.start(attempts=3)
    yield server
    if server.process is not None:
        server.stop()
