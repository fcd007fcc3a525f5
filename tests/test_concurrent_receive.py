"""Several tasks receiving from one connection, as the reference describes it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio
import trio.testing

import trio_ws

from .conftest import HOST


@pytest.fixture
async def pair(
    nursery: trio.Nursery,
) -> AsyncIterator[tuple[trio_ws.WebSocketConnection, trio_ws.WebSocketConnection]]:
    """A (server side, client side) pair of connected WebSockets over loopback."""
    send, receive = trio.open_memory_channel[trio_ws.WebSocketConnection](1)
    done = trio.Event()

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        await send.send(await request.accept())
        await done.wait()

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    async with trio_ws.open_websocket_url(f"ws://{HOST}:{server.port}/") as client:
        yield await receive.receive(), client
        done.set()


async def start_waiting(
    nursery: trio.Nursery, task: Callable[..., Awaitable[object]], *args: object
) -> None:
    """Start *task* and return once it (and everything else) is blocked."""
    nursery.start_soon(task, *args)
    await trio.testing.wait_all_tasks_blocked()


async def test_each_message_goes_to_exactly_one_receiver_longest_waiting_first(
    pair: tuple[trio_ws.WebSocketConnection, trio_ws.WebSocketConnection],
) -> None:
    server, client = pair
    got: list[list[int]] = [[] for _ in range(4)]

    async def consume(index: int) -> None:
        async for message in client:
            got[index].append(int(message))

    with trio.fail_after(10):
        async with trio.open_nursery() as consumers:
            # One at a time, so that the order in which they wait is known.
            for index in range(4):
                await start_waiting(consumers, consume, index)
            for number in range(200):
                await server.send_message(str(number))
            await server.aclose(1000, "done")
    # Every loop ended quietly on the normal close, having together received
    # each message exactly once; each task saw its messages in arrival order.
    assert sorted(n for messages in got for n in messages) == list(range(200))
    assert all(messages == sorted(messages) for messages in got)
    # The first four went to the four waiting tasks, longest waiting first.
    assert [messages[0] for messages in got] == [0, 1, 2, 3]
    assert client.closed == trio_ws.CloseReason(1000, "done")


async def test_an_error_close_reaches_every_waiting_receiver(
    pair: tuple[trio_ws.WebSocketConnection, trio_ws.WebSocketConnection],
) -> None:
    server, client = pair
    errors: list[int] = []

    async def iterate() -> None:
        with pytest.raises(trio_ws.ConnectionClosed) as info:
            async for _ in client:
                raise AssertionError("no message was sent")  # pragma: no cover
        errors.append(info.value.reason.code)

    async def get() -> None:
        with pytest.raises(trio_ws.ConnectionClosed) as info:
            await client.get_message()
        errors.append(info.value.reason.code)

    with trio.fail_after(10):
        async with trio.open_nursery() as receivers:
            for task in (iterate, get, iterate, get):
                await start_waiting(receivers, task)
            await server.aclose(1011, "broken")
    assert errors == [1011] * 4
