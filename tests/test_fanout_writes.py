"""Broadcasts close together share system calls; a lone one is written at once.

The writes are counted by wrapping ``os.writev``, which the writer uses for
plain sockets: the effect under test is the number of system calls.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import AsyncIterator, Sequence

import pytest
import trio

import trio_ws
from trio_ws import broadcast
from trio_ws.options import BATCH_BYTES

from .conftest import HOST
from .support.peers import raw_client

CLIENTS = 10


class Writes:
    """Counts ``os.writev`` calls from the moment it is made."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = os.writev

        def counting(fd: int, buffers: Sequence[bytes | bytearray | memoryview]) -> int:
            self.count += 1
            return real(fd, buffers)

        monkeypatch.setattr(os, "writev", counting)


async def reader(request: trio_ws.WebSocketRequest) -> None:
    ws = await request.accept()
    with contextlib.suppress(trio_ws.ConnectionClosed):
        async for _ in ws:
            pass


@contextlib.asynccontextmanager
async def fanout(
    nursery: trio.Nursery,
) -> AsyncIterator[tuple[trio_ws.WebSocketServer, list[trio_ws.WebSocketConnection]]]:
    """A server whose handlers only read, and CLIENTS clients connected to it."""
    server = await nursery.start(trio_ws.serve_websocket, reader, HOST, 0, None)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False, compression=None)
            )
            for _ in range(CLIENTS)
        ]
        with trio.fail_after(10):
            while len(server.connections) < CLIENTS:
                await trio.sleep(0.01)
        yield server, clients


async def receive(clients: list[trio_ws.WebSocketConnection], count: int) -> list[list[object]]:
    # A loop, not nested comprehensions: Python 3.10 refuses an await in
    # a comprehension nested in another.
    received: list[list[object]] = []
    with trio.fail_after(10):
        for ws in clients:
            received.append([await ws.get_message() for _ in range(count)])
    return received


async def test_back_to_back_broadcasts_share_writes(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 40
    async with fanout(nursery) as (server, clients):
        writes = Writes(monkeypatch)
        for i in range(count):  # the benchmark's publisher: a scheduler pass between
            assert broadcast(server.connections, f"message {i}") == CLIENTS
            await trio.sleep(0)
        received = await receive(clients, count)
        written = writes.count  # before the closing handshakes
    assert received == [[f"message {i}" for i in range(count)]] * CLIENTS
    # One write per message and connection is what writing each at once makes.
    assert written <= count * CLIENTS * 3 // 4


async def test_broadcasts_in_one_pass_take_two_writes_per_connection(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 30
    async with fanout(nursery) as (server, clients):
        writes = Writes(monkeypatch)
        for i in range(count):  # say, many handlers publishing in the same pass
            broadcast(server.connections, f"message {i}")
        received = await receive(clients, count)
        written = writes.count
    assert received == [[f"message {i}" for i in range(count)]] * CLIENTS
    # The first broadcast at once, the other 29 together.
    assert written <= 2 * CLIENTS


async def test_a_lone_broadcast_is_written_at_once(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with fanout(nursery) as (server, clients):
        writes = Writes(monkeypatch)
        for i in range(2):
            before = writes.count
            broadcast(server.connections, f"lone {i}")
            assert writes.count - before == CLIENTS  # before any schedule point
            assert await receive(clients, 1) == [[f"lone {i}"]] * CLIENTS
            await trio.sleep(0.05)  # quiet for many passes: the next is lone too


async def test_a_big_message_is_written_at_once_even_right_after_another(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = "x" * BATCH_BYTES
    async with fanout(nursery) as (server, clients):
        writes = Writes(monkeypatch)
        broadcast(server.connections, "small")
        before = writes.count
        broadcast(server.connections, big)
        assert writes.count - before == CLIENTS
        assert await receive(clients, 2) == [["small", big]] * CLIENTS


async def test_direct_sends_keep_their_place_among_batched_broadcasts(
    nursery: trio.Nursery,
) -> None:
    async with fanout(nursery) as (server, clients):
        broadcast(server.connections, "a")
        broadcast(server.connections, "b")  # waits for the flusher
        for ws in server.connections:
            await ws.send_message("direct")
        broadcast(server.connections, "c")
        await trio.sleep(0)
        broadcast(server.connections, "d")
        received = await receive(clients, 5)
    assert received == [["a", "b", "direct", "c", "d"]] * CLIENTS


async def test_a_held_message_nothing_joins_is_written_a_few_passes_later(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with fanout(nursery) as (server, clients):
        writes = Writes(monkeypatch)
        broadcast(server.connections, "first")  # written at once
        broadcast(server.connections, "second")  # waits for company that never comes
        assert writes.count == CLIENTS
        assert await receive(clients, 2) == [["first", "second"]] * CLIENTS
        assert writes.count == 2 * CLIENTS


async def test_closing_writes_held_messages_before_the_close(nursery: trio.Nursery) -> None:
    async with fanout(nursery) as (server, clients):
        received: list[list[object]] = [[] for _ in clients]

        async def collect(ws: trio_ws.WebSocketConnection, into: list[object]) -> None:
            with contextlib.suppress(trio_ws.ConnectionClosed):
                while True:
                    into.append(await ws.get_message())

        with trio.fail_after(10):
            async with trio.open_nursery() as inner:
                for ws, into in zip(clients, received, strict=True):
                    inner.start_soon(collect, ws, into)
                broadcast(server.connections, "a")
                broadcast(server.connections, "b")  # held when the closing starts
                for ws in server.connections:
                    inner.start_soon(ws.aclose)
    assert received == [["a", "b"]] * CLIENTS
    assert all(ws.closed is not None and ws.closed.code == 1000 for ws in clients)


async def test_a_peer_reset_while_messages_are_held_fails_only_its_connection(
    nursery: trio.Nursery,
) -> None:
    async with fanout(nursery) as (server, clients):
        before = server.connections
        stream, _, head = await raw_client(server.port)
        assert head.startswith(b"HTTP/1.1 101 ")
        with trio.fail_after(10):
            while len(server.connections) < CLIENTS + 1:
                await trio.sleep(0.01)
        (doomed,) = server.connections - before
        # SO_LINGER 0: closing sends RST, as a crashed peer's kernel would.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()
        await trio.sleep(0.05)
        sent = 0
        with trio.fail_after(10):
            while doomed.closed is None:
                broadcast(server.connections, f"message {sent}")
                broadcast(server.connections, f"message {sent + 1}")  # held
                sent += 2
                await trio.sleep(0)
        received = await receive(clients, sent)
    assert received == [[f"message {i}" for i in range(sent)]] * CLIENTS
    assert doomed.closed.code == 1006
