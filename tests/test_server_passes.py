"""What the server spends on a connection: scheduler passes (counted by a
Trio instrument) and what it keeps.

Counts, not timings: each pass of a task costs the whole Trio scheduling
machinery, so the accept loop and the opening handshake take as few as they
can. The clients here are blocking stdlib sockets that connect and send
their request before the server runs, so that what the server finds
waiting is known.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import socket
from collections import Counter

import pytest
import trio
import trio.testing

import trio_ws
from trio_ws.http import HTTPRequest
from trio_ws.listeners import accept_forever
from trio_ws.options import ACCEPT_BATCH, ACCEPT_RETRY_DELAY
from trio_ws.server_handshake import check_upgrade, read_request

from .conftest import HOST

REQUEST = (
    b"GET /passes HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


class StepCounter(trio.abc.Instrument):
    """How many times each task has been stepped (run until its next yield)."""

    def __init__(self) -> None:
        self.steps: Counter[trio.lowlevel.Task] = Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task] += 1

    def of(self, name_part: str) -> list[int]:
        return [n for task, n in self.steps.items() if name_part in task.name]


async def tcp_listener() -> tuple[trio.SocketListener, int]:
    (listener,) = await trio.open_tcp_listeners(0, host=HOST)
    return listener, listener.socket.getsockname()[1]


def waiting_clients(port: int, count: int, request: bytes = REQUEST) -> list[socket.socket]:
    """*count* connections in the listener's queue, each request sent already."""
    clients = []
    for _ in range(count):
        client = socket.create_connection((HOST, port))
        client.sendall(request)
        clients.append(client)
    return clients


async def read_answer(client: socket.socket) -> bytes:
    """The server's answer, read off the blocking client socket in a thread."""

    def read() -> bytes:
        client.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = client.recv(4096)
            if not chunk:
                break
            data += chunk
        return data

    return await trio.to_thread.run_sync(read)


async def test_waiting_connections_are_accepted_in_one_pass_each_answered_in_one() -> None:
    listener, port = await tcp_listener()
    clients = waiting_clients(port, 5)
    counter = StepCounter()
    steps_at_accept: list[int] = []
    accepted = trio.Event()

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        steps_at_accept.append(counter.steps[trio.lowlevel.current_task()])
        if len(steps_at_accept) == len(clients):
            accepted.set()
        await ws.get_message()

    trio.lowlevel.add_instrument(counter)
    try:
        async with trio.open_nursery() as nursery:
            server = trio_ws.WebSocketServer(handler, [listener])
            await nursery.start(server.run)
            with trio.fail_after(5):
                await accepted.wait()
            accept_steps = counter.of("accept_forever")
            for client in clients:
                assert (await read_answer(client)).startswith(b"HTTP/1.1 101 ")
            nursery.cancel_scope.cancel()
    finally:
        trio.lowlevel.remove_instrument(counter)
        for client in clients:
            client.close()
    # The accept loop took all five in its first step (trio's accept() costs
    # a pass per connection); each connection's task read the request that
    # was waiting and sent the 101 in its first step (receive_some() and
    # send_all() cost a pass each).
    assert accept_steps == [1]
    assert steps_at_accept == [1] * len(clients)


async def test_a_flood_of_connections_yields_every_accept_batch() -> None:
    listener, port = await tcp_listener()
    clients = waiting_clients(port, ACCEPT_BATCH + 3, b"")
    counter = StepCounter()
    served: list[trio.abc.Stream] = []

    async def serve(stream: trio.abc.Stream) -> None:
        served.append(stream)
        await trio.aclose_forcefully(stream)

    trio.lowlevel.add_instrument(counter)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept_forever, listener, serve, nursery)
            with trio.fail_after(5):
                while len(served) < len(clients):
                    await trio.sleep(0.01)
            accept_steps = counter.of("accept_forever")
            nursery.cancel_scope.cancel()
    finally:
        trio.lowlevel.remove_instrument(counter)
        for client in clients:
            client.close()
    assert all(isinstance(stream, trio.SocketStream) for stream in served)
    assert accept_steps == [2]  # one yield after ACCEPT_BATCH, then the rest


async def test_a_waiting_request_is_read_without_a_checkpoint() -> None:
    listener, port = await tcp_listener()
    (client,) = waiting_clients(port, 1)
    try:
        async with listener:
            stream = await listener.accept()
            async with stream:
                await trio.sleep(0.05)  # loopback: the request is in the socket
                with trio.testing.assert_no_checkpoints():
                    request = await read_request(stream, 4096, "client")
    finally:
        client.close()
    assert request.path == "/passes"
    assert request.header("upgrade") == "websocket"


async def test_closing_the_listener_ends_the_accept_loop() -> None:
    listener, _ = await tcp_listener()

    async def serve(stream: trio.abc.Stream) -> None:
        raise AssertionError("nothing connected")

    async with trio.open_nursery() as nursery:

        async def close_soon() -> None:
            await trio.sleep(0.05)
            listener.socket.close()

        nursery.start_soon(close_soon)
        with trio.fail_after(5), pytest.raises(trio.ClosedResourceError):
            await accept_forever(listener, serve, nursery)


async def test_a_socket_listener_out_of_descriptors_logs_and_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener, port = await tcp_listener()
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # its descriptor made now
    served: list[trio.abc.Stream] = []

    async def serve(stream: trio.abc.Stream) -> None:
        served.append(stream)
        await trio.aclose_forcefully(stream)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept_forever, listener, serve, nursery)
            await trio.sleep(0.05)  # the loop waits for connections
            lowest_free = os.dup(0)
            os.close(lowest_free)
            resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
            try:
                client.connect((HOST, port))  # accept() now needs a descriptor in vain
                await trio.sleep(ACCEPT_RETRY_DELAY * 1.5)
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            with trio.fail_after(5):
                while not served:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    finally:
        client.close()
    failures = [r for r in caplog.records if r.name == "trio_ws.server"]
    assert failures and all(r.levelno == logging.ERROR for r in failures)
    assert errno.errorcode[errno.EMFILE] in failures[0].getMessage()
    assert len(served) == 1


async def test_accept_called_cancelled_sends_nothing_and_the_stream_is_closed() -> None:
    # The 101 goes out without a scheduler pass, but a cancelled accept()
    # still sends nothing: the request is decided, the server closes.
    listener, port = await tcp_listener()
    (client,) = waiting_clients(port, 1)
    outcomes: list[str] = []

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        with trio.CancelScope() as scope:
            scope.cancel()
            await request.accept()
        outcomes.append("cancelled" if scope.cancelled_caught else "accepted")

    try:
        async with trio.open_nursery() as nursery:
            server = trio_ws.WebSocketServer(handler, [listener])
            await nursery.start(server.run)
            assert await read_answer(client) == b""  # closed, no answer at all
            nursery.cancel_scope.cancel()
    finally:
        client.close()
    assert outcomes == ["cancelled"]


def test_the_parsed_upgrade_kept_by_a_request_has_slots() -> None:
    # A handler keeps its request, and the request its parsed upgrade, for
    # the whole connection: slots, not a __dict__ (about 50 bytes less
    # per connection by tracemalloc on CPython 3.11).
    head = HTTPRequest(
        "GET",
        "/",
        "1.1",
        [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
            (b"sec-websocket-version", b"13"),
        ],
    )
    upgrade = check_upgrade(head)
    assert upgrade.key == b"dGhlIHNhbXBsZSBub25jZQ=="
    assert not hasattr(upgrade, "__dict__")
