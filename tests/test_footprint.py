"""What an idle connection keeps alive (see docs/topics/memory.rst)."""

from __future__ import annotations

import gc
import os
import types

import pytest
import trio

import trio_ws
import trio_ws.reader
from trio_ws import handshake
from trio_ws.handshake import shared_headers
from trio_ws.options import SHARED_HEADER_VALUE_SIZE, SHARED_HEADERS

from .conftest import HOST


async def test_an_idle_reader_keeps_no_exception_alive(
    echo_server: trio_ws.WebSocketServer,
) -> None:
    # A reader that waited for its socket inside "except BlockingIOError"
    # kept that exception and its traceback for as long as it idled.
    async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws:
        await ws.send_message("hello")
        assert await ws.get_message() == "hello"
        await trio.sleep(0.05)  # both readers are waiting for their sockets now
        gc.collect()
        held = [obj for obj in gc.get_objects() if isinstance(obj, BlockingIOError)]
        assert held == []


async def test_connections_share_equal_handshake_headers(nursery: trio.Nursery) -> None:
    # Every open connection keeps its handshake's headers; equal pairs are
    # one object for all of them, the per-connection key excepted.
    requests: list[trio_ws.WebSocketRequest] = []

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        requests.append(request)
        await request.reject(404)

    server = await nursery.start(
        lambda task_status: trio_ws.serve_websocket(handler, HOST, 0, None, task_status=task_status)
    )
    for _ in range(2):
        with pytest.raises(trio_ws.ConnectionRejected):
            async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False):
                pass  # pragma: no cover
    first, second = (dict((n, pair) for pair in r.headers for n in [pair[0]]) for r in requests)
    assert first[b"host"] is second[b"host"]
    assert first[b"user-agent"] is second[b"user-agent"]
    assert first[b"sec-websocket-key"] != second[b"sec-websocket-key"]


async def test_clients_share_the_answers_headers_but_not_its_accept_token(
    echo_server: trio_ws.WebSocketServer,
) -> None:
    # The accept token differs on every connection: kept in the table, it
    # would only push out the pairs that are worth sharing.
    answers = []
    for _ in range(2):
        async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws:
            answers.append({pair[0]: pair for pair in ws.handshake_headers})
    first, second = answers
    assert first[b"upgrade"] is second[b"upgrade"]  # names lowercased, pairs shared
    assert first[b"sec-websocket-accept"] != second[b"sec-websocket-accept"]
    assert not any(n == b"sec-websocket-accept" for n, _ in handshake._seen_headers.values())


def test_the_shared_header_table_stays_bounded() -> None:
    many = [(b"x-random", str(i).encode()) for i in range(3 * SHARED_HEADERS)]
    assert shared_headers(many) == many
    assert len(handshake._seen_headers) <= SHARED_HEADERS
    long_value = (b"x-long", b"v" * (SHARED_HEADER_VALUE_SIZE + 1))
    shared_headers([long_value, (b"sec-websocket-key", b"abc")])
    assert long_value not in handshake._seen_headers
    assert (b"sec-websocket-key", b"abc") not in handshake._seen_headers


def big_buffers_held(min_size: int) -> dict[int, object]:
    """The str, bytes and bytearray objects of at least *min_size* that some
    object the garbage collector tracks (a task's coroutine, a generator's
    frame, a connection's state) holds, by id."""
    gc.collect()
    found: dict[int, object] = {}
    for holder in gc.get_objects():
        for obj in gc.get_referents(holder):
            if isinstance(obj, (str, bytes, bytearray)) and len(obj) >= min_size:
                found[id(obj)] = obj
    return found


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "deflate"])
@pytest.mark.parametrize("size", [3000, 200_000], ids=["one-read", "many-reads"])
@pytest.mark.parametrize("text", [True, False], ids=["text", "binary"])
async def test_a_connection_keeps_no_message_after_it_was_read(
    nursery: trio.Nursery, compress: bool, size: int, text: bool
) -> None:
    # The frame parser's locals kept the last message it decoded, and the
    # reader its last read, for as long as the connection then idled: about
    # one message and one read per idle connection after traffic.
    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        async for message in ws:
            await ws.send_message(message)
            del message  # what the application holds is not the library's

    options: dict[str, object] = {} if compress else {"compression": None}
    server = await nursery.start(
        lambda task_status: trio_ws.serve_websocket(
            handler, HOST, 0, None, task_status=task_status, **options
        )
    )
    payload: str | bytes = "".join(f"{i:06d} " for i in range(size // 7 + 1))[:size]
    if not text:
        payload = payload.encode()
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False, **options) as ws:
        await ws.send_message("warm-up")
        assert await ws.get_message() == "warm-up"
        await trio.sleep(0.05)
        before = big_buffers_held(1000)  # docstrings and the like: not ours to judge
        await ws.send_message(payload)
        assert await ws.get_message() == payload
        del payload
        await trio.sleep(0.05)  # both readers wait for their sockets again
        held = big_buffers_held(1000)
        assert [len(obj) for key, obj in held.items() if key not in before] == []


def waiting_objects() -> int:
    """How many trio locks and parking lots exist in the process."""
    gc.collect()
    kinds = (trio.Lock, trio.lowlevel.ParkingLot)
    return sum(isinstance(obj, kinds) for obj in gc.get_objects())


async def test_a_connection_that_never_waited_to_send_keeps_no_lock(
    echo_server: trio_ws.WebSocketServer,
) -> None:
    # Every connection made a send lock and a parking lot for its writer
    # (about 570 bytes together) that only a sender that has to wait uses.
    async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws:
        await ws.send_message("warm-up")
        assert await ws.get_message() == "warm-up"
        await trio.sleep(0.05)
        before = waiting_objects()
        async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws2:
            for _ in range(3):
                await ws2.send_message("hello")
                assert await ws2.get_message() == "hello"
            await trio.sleep(0.05)
            assert waiting_objects() == before


def library_frames_under(task: trio.lowlevel.Task, caller: str) -> list[str]:
    """The names of trio_ws's functions that *task* is suspended in below
    its function named *caller*, outermost first."""
    package = os.path.dirname(trio_ws.__file__)
    codes = [frame.f_code for frame, _ in task.iter_await_frames()]
    below = [code.co_name for code in codes].index(caller) + 1
    return [code.co_name for code in codes[below:] if code.co_filename.startswith(package)]


async def test_a_handler_iterating_over_messages_idles_in_the_inbox_directly(
    nursery: trio.Nursery,
) -> None:
    # Each suspended coroutine frame is kept for as long as the connection
    # idles (about 230 bytes each); `async for` went through __anext__()
    # and get_message() to the inbox.
    handlers: list[trio.lowlevel.Task] = []

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        handlers.append(trio.lowlevel.current_task())
        async for message in ws:
            await ws.send_message(message)

    server = await nursery.start(
        lambda task_status: trio_ws.serve_websocket(handler, HOST, 0, None, task_status=task_status)
    )
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
        await ws.send_message("hello")
        assert await ws.get_message() == "hello"
        await trio.sleep(0.05)
        assert library_frames_under(handlers[0], "handler") == ["get"]


def is_reader(code: types.CodeType) -> bool:
    """Whether *code* is ``Reader.run`` (no co_qualname on Python 3.10)."""
    return code.co_name == "run" and code.co_filename == trio_ws.reader.__file__


def all_tasks() -> list[trio.lowlevel.Task]:
    tasks, todo = [], [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        assert task is not None
        tasks.append(task)
        todo.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return tasks


async def test_an_idle_reader_waits_for_its_socket_in_trio_directly(
    echo_server: trio_ws.WebSocketServer,
) -> None:
    # The reader waited inside FrameWriter.receive(): one more suspended
    # coroutine frame (about 210 bytes) per idle connection.
    async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws:
        await ws.send_message("hello")
        assert await ws.get_message() == "hello"
        await trio.sleep(0.05)
        readers = [t for t in all_tasks() if is_reader(t.coro.cr_code)]
        assert len(readers) == 2  # the client's and the server's
        for reader in readers:
            assert library_frames_under(reader, "run") == ["_read_frames"]
