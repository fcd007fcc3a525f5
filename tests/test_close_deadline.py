"""The closing handshake's one deadline: every wait of a close ends by it.

Each connection's reader runs in one cancel scope whose deadline is set by
whichever close starts first (``aclose()``, the peer's Close, a violation);
these tests pin what that deadline bounds, on both sides, with the clock
jumping ahead (``autojump_clock``) so that every timeout is exact.
"""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing

import trio_ws

from .support.codec import CLOSE, close_payload, frame
from .support.handshake import accept_answer
from .support.peers import HOST, Reader, raw_client, serve_raw


async def test_echo_without_tcp_close_ends_at_the_close_deadline(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The server echoes our Close but never closes TCP: the client half-closes
    (the server reads EOF), then gives up at ``disconnect_timeout``."""
    saw: list[object] = []

    async def echo_then_hold(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(accept_answer(head))
        code = await reader.close_code()
        await stream.send_all(frame(CLOSE, close_payload(code or 1000), mask=False))
        saw.append(code)
        saw.append(await reader.eof())  # the client's half-close, not a drop
        saw.append(trio.current_time() - start)
        await trio.sleep_forever()

    port = await nursery.start(serve_raw, echo_then_hold)
    start = trio.current_time()
    with pytest.raises(trio_ws.DisconnectionTimeout):
        async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False, disconnect_timeout=4):
            pass
    assert trio.current_time() - start == pytest.approx(4)
    assert saw == [1000, True, pytest.approx(0)]


async def test_a_late_aclose_after_the_peers_close_is_not_a_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The server closes first and then holds TCP open: the client lingers
    ``disconnect_timeout`` from the server's Close, and an ``aclose()`` that
    comes later waits only for that, without a DisconnectionTimeout."""

    async def close_then_hold(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(accept_answer(head))
        await stream.send_all(frame(CLOSE, close_payload(1000), mask=False))
        await reader.close_code()
        await trio.sleep_forever()

    port = await nursery.start(serve_raw, close_then_hold)
    start = trio.current_time()
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False, disconnect_timeout=4) as ws:
        await trio.sleep(1)  # the server's Close has come and been echoed
        assert ws.closed == trio_ws.CloseReason(1000, None)
    # Left at 1 s: the linger's deadline (4 s) ends the wait, not 1 + 4 s.
    assert trio.current_time() - start == pytest.approx(4)


async def test_cancelled_aclose_drops_the_transport_at_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A peer that never answers, and an ``aclose()`` cancelled after 1 s: the
    Close went out, the transport is dropped then, not at the deadline."""
    ended: list[object] = []

    async def never_answer(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(accept_answer(head))
        ended.append(await reader.close_code())
        ended.append(await reader.eof())
        ended.append(trio.current_time() - start)

    port = await nursery.start(serve_raw, never_answer)
    start = trio.current_time()
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False, disconnect_timeout=60) as ws:
        with trio.move_on_after(1) as scope:
            await ws.aclose()
        assert scope.cancelled_caught
        await trio.sleep(1)  # the server notices the drop meanwhile
    assert ended == [1000, True, pytest.approx(1)]


async def test_aclose_of_a_closed_connection_is_a_cancellation_point(
    nursery: trio.Nursery,
) -> None:
    server = await nursery.start(partial(trio_ws.serve_websocket, _echo_once, HOST, 0, None))
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
        await ws.send_message("hi")
        assert await ws.get_message() == "hi"
        with pytest.raises(trio_ws.ConnectionClosed):
            await ws.get_message()  # the server closed after its echo
        await ws.aclose()  # the close is complete: returns without waiting
        with trio.CancelScope() as scope:
            scope.cancel()
            await ws.aclose()
        assert scope.cancelled_caught


async def _echo_once(request: trio_ws.WebSocketRequest) -> None:
    ws = await request.accept()
    await ws.send_message(await ws.get_message())


async def test_server_close_unanswered_drops_at_the_deadline(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The handler returns (the server sends 1000); the client reads the
    Close but never answers nor closes: the server drops it at
    ``disconnect_timeout``, and keeps serving."""

    async def just_return(request: trio_ws.WebSocketRequest) -> None:
        await request.accept()

    server = await nursery.start(
        partial(trio_ws.serve_websocket, just_return, HOST, 0, None, disconnect_timeout=5)
    )
    for _ in range(2):
        stream, reader, head = await raw_client(server.port)
        assert head.startswith(b"HTTP/1.1 101")
        start = trio.current_time()
        assert await reader.close_code() == 1000
        assert await reader.eof()
        assert trio.current_time() - start == pytest.approx(5)
        await stream.aclose()
