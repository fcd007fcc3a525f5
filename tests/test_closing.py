"""Closing and cancellation: nothing hangs, nothing is lost, nothing leaks."""

from __future__ import annotations

import logging
import os
import ssl

import pytest
import trio
import trio.testing

import trio_ws

from .conftest import HOST, CloseRecorder, echo_handler
from .support.codec import CLOSE, PING, TEXT, close_payload, frame
from .support.handshake import accept_answer
from .support.peers import Reader, raw_client, serve_raw


async def test_pending_ping_raises_when_connection_is_lost(nursery: trio.Nursery) -> None:
    async def ignore_then_vanish(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(accept_answer(head))
        opcode, _ = await reader.frame()
        assert opcode == PING
        await stream.aclose()  # never answers

    port = await nursery.start(serve_raw, ignore_then_vanish)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
        with trio.fail_after(5):
            with pytest.raises(trio_ws.ConnectionClosed) as info:
                await ws.ping()
    assert info.value.reason.code == 1006


async def test_pending_ping_raises_when_we_close(nursery: trio.Nursery) -> None:
    async def silent(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(accept_answer(head))
        assert await reader.close_code() == 1000
        await stream.send_all(frame(CLOSE, close_payload(1000), mask=False))

    port = await nursery.start(serve_raw, silent)
    outcome: list[BaseException] = []
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:

        async def pinger() -> None:
            try:
                await ws.ping()
            except trio_ws.ConnectionClosed as exc:
                outcome.append(exc)

        async with trio.open_nursery() as inner:
            inner.start_soon(pinger)
            await trio.testing.wait_all_tasks_blocked()
            with trio.fail_after(5):
                await ws.aclose()
    assert len(outcome) == 1


async def test_ping_during_closing_handshake_does_not_crash_reader(nursery: trio.Nursery) -> None:
    async def ping_while_closing(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(accept_answer(head))
        assert await reader.close_code() == 1000
        # The client is now closing; a ping must not break it.
        await stream.send_all(frame(PING, b"late", mask=False))
        await stream.send_all(frame(TEXT, b"late message", mask=False))
        await stream.send_all(frame(CLOSE, close_payload(1000), mask=False))
        await stream.aclose()

    port = await nursery.start(serve_raw, ping_while_closing)
    with trio.fail_after(5):
        async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
            pass
    assert ws.closed == trio_ws.CloseReason(1000, None)


async def test_handler_error_closes_with_1011_and_server_survives(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        if await ws.get_message() == "crash":
            raise RuntimeError("handler exploded")
        await ws.send_message("fine")

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as other:
        async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
            with caplog.at_level(logging.ERROR, logger="trio_ws"):
                await ws.send_message("crash")
                with pytest.raises(trio_ws.ConnectionClosed) as info:
                    await ws.get_message()
        assert info.value.reason.code == 1011
        assert "handler exploded" in caplog.text
        await other.send_message("hello")
        assert await other.get_message() == "fine"


async def test_leaving_block_with_full_queue_while_peer_floods(nursery: trio.Nursery) -> None:
    async def flood(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                await ws.send_message(b"x" * 10000)
                with trio.move_on_after(0.001):
                    await ws.ping()
        except trio_ws.ConnectionClosed:
            pass

    server = await nursery.start(trio_ws.serve_websocket, flood, HOST, 0, None)
    after_block = False
    with trio.fail_after(5):
        async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
            await ws.get_message()
            await trio.sleep(0.1)  # the queue fills and the peer keeps going
        after_block = True
    assert after_block
    assert ws.closed == trio_ws.CloseReason(1000, None)


async def test_errors_are_not_wrapped_in_exception_groups(
    nursery: trio.Nursery, echo_server: trio_ws.WebSocketServer
) -> None:
    with pytest.raises(ValueError, match="from the block"):
        async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False):
            raise ValueError("from the block")
    with pytest.raises(trio_ws.HandshakeError):
        async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=True):
            pass  # pragma: no cover
    with pytest.raises(OSError):  # the port is taken
        await nursery.start(trio_ws.serve_websocket, echo_handler, HOST, echo_server.port, None)


async def test_block_error_closes_with_1011(nursery: trio.Nursery) -> None:
    record = CloseRecorder()
    server = await nursery.start(trio_ws.serve_websocket, record, HOST, 0, None)
    with pytest.raises(KeyError):
        async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False):
            raise KeyError("boom")
    assert await record.wait_for(1) == [1011]


async def test_cancelled_get_message_loses_nothing(nursery: trio.Nursery) -> None:
    count = 200

    async def sender(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        for i in range(count):
            await ws.send_message(str(i))
            if i % 7 == 0:
                await trio.sleep(0.002)
        await ws.get_message()

    server = await nursery.start(trio_ws.serve_websocket, sender, HOST, 0, None)
    received: list[str] = []
    cancellations = 0
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
        with trio.fail_after(20):
            while len(received) < count:
                with trio.move_on_after(0.0005) as scope:
                    received.append(await ws.get_message())  # type: ignore[arg-type]
                cancellations += scope.cancelled_caught
        await ws.send_message("done")
    assert received == [str(i) for i in range(count)]
    assert cancellations > 0  # the test did exercise cancellation


async def test_cancelled_send_waiting_for_room_sends_nothing(nursery: trio.Nursery) -> None:
    server_saw: list[object] = []
    release = trio.Event()

    async def stalled(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        await release.wait()
        try:
            while True:
                message = await ws.get_message()
                server_saw.append(message if len(message) < 100 else len(message))
        except trio_ws.ConnectionClosed as exc:
            server_saw.append(exc.reason.code)

    server = await nursery.start(
        lambda task_status: trio_ws.serve_websocket(
            stalled, HOST, 0, None, max_message_size=10**9, task_status=task_status
        )
    )
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
        # One message fills the server's queue, the next blocks its reader.
        await ws.send_message("first")
        await ws.send_message("second")
        # Queued at once; far more than TCP buffers hold (and incompressible).
        await ws.send_message(os.urandom(50_000_000))
        with trio.move_on_after(0.5) as scope:
            await ws.send_message("never sent")  # waits for room in the buffer
        assert scope.cancelled_caught
        assert ws.closed is None
        release.set()
        await ws.send_message("after")
        with trio.fail_after(10):
            while len(server_saw) < 4:
                await trio.sleep(0.01)
    assert server_saw == ["first", "second", 50_000_000, "after", 1000]


async def test_disconnect_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def never_reply(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(accept_answer(head))
        await trio.sleep_forever()

    port = await nursery.start(serve_raw, never_reply)
    start = trio.current_time()
    with pytest.raises(trio_ws.DisconnectionTimeout):
        async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False, disconnect_timeout=4):
            pass
    assert trio.current_time() - start == pytest.approx(4)


async def test_server_initiated_close_is_echoed(nursery: trio.Nursery) -> None:
    async def closer(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(accept_answer(head))
        await stream.send_all(frame(CLOSE, close_payload(4321, b"bye"), mask=False))
        assert await reader.close_code() == 4321
        await stream.aclose()

    port = await nursery.start(serve_raw, closer)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
        with pytest.raises(trio_ws.ConnectionClosed) as info:
            await ws.get_message()
    assert info.value.reason == trio_ws.CloseReason(4321, "bye")


async def test_reader_keeps_reading_while_a_send_is_blocked(nursery: trio.Nursery) -> None:
    """A ping must not make the reader wait behind a send the peer is not reading."""
    from .support.codec import BINARY, PONG

    release = trio.Event()

    async def peer(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(accept_answer(head))
        await trio.sleep(0.5)  # the client's big send is blocked by now
        await stream.send_all(frame(PING, b"are you there", mask=False))
        await stream.send_all(frame(TEXT, b"read me", mask=False))
        await release.wait()
        pongs = []
        while True:  # now read everything: the big message, then the pong
            opcode, payload = await reader.frame()
            if opcode == PONG:
                pongs.append(payload)
                break
            assert opcode in (BINARY, 0)
        assert pongs == [b"are you there"]
        await trio.sleep_forever()

    port = await nursery.start(serve_raw, peer)
    async with trio.open_nursery() as inner:
        ws = await trio_ws.connect_websocket(
            inner, HOST, port, "/", use_ssl=False, compression=None, ping_interval=None
        )
        sent = trio.Event()

        async def big_send() -> None:
            await ws.send_message(os.urandom(30_000_000))  # blocks: the peer is not reading
            sent.set()

        inner.start_soon(big_send)
        with trio.fail_after(5):
            assert await ws.get_message() == "read me"  # the reader was not stuck
        release.set()
        with trio.fail_after(20):
            await sent.wait()
        inner.cancel_scope.cancel()


async def test_close_races_over_tls_raise_nothing_and_send_the_close(
    nursery: trio.Nursery, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    # Issue 13 item 1: a cancelled aclose() dropped the TLS stream while the
    # reader was closing it gracefully, and the reader's ClosedResourceError
    # came out of the context manager in an ExceptionGroup.
    seen: dict[str, list[tuple[int, str | None]]] = {"/cancelled": [], "/concurrent": []}

    async def record(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            await ws.get_message()
        except trio_ws.ConnectionClosed as exc:
            seen[request.path].append((exc.reason.code, exc.reason.reason))

    server = await nursery.start(trio_ws.serve_websocket, record, HOST, 0, server_context)
    url = f"wss://{HOST}:{server.port}"
    for _ in range(40):  # the race lost about half the runs before the fix
        async with trio_ws.open_websocket_url(url + "/cancelled", client_context) as ws:
            with trio.move_on_after(0.0005):
                await ws.aclose(1000, "bye")
    for _ in range(10):  # one task closes while another waits for a message
        async with trio_ws.open_websocket_url(url + "/concurrent", client_context) as ws:
            async with trio.open_nursery() as tasks:
                tasks.start_soon(ws.aclose, 1000, "bye")
                with pytest.raises(trio_ws.ConnectionClosed):
                    await ws.get_message()
    with trio.fail_after(10):
        while len(seen["/cancelled"]) < 40 or len(seen["/concurrent"]) < 10:
            await trio.sleep(0.01)
    # A close cancelled before its frame was written may leave the peer
    # with 1006; every other one must arrive as sent.
    assert all(s == (1000, "bye") or s[0] == 1006 for s in seen["/cancelled"]), seen
    assert seen["/concurrent"] == [(1000, "bye")] * 10


async def test_error_raised_during_cancellation_is_not_lost(
    echo_server: trio_ws.WebSocketServer,
) -> None:
    # Issue 13 item 2 (Trio issue 1559): the private nursery's Cancelled
    # used to replace the exception raised by the block's finally.
    with pytest.raises(ValueError, match="from finally") as caught:
        with trio.move_on_after(0.5):
            async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False):
                try:
                    await trio.sleep_forever()
                finally:
                    raise ValueError("from finally")
    assert type(caught.value) is ValueError


async def test_server_torn_down_by_cancellation_closes_with_1001() -> None:
    # Issue 13 item 4: cancelling the server's nursery used to say 1000.
    async with trio.open_nursery() as outer:
        server_scope = trio.CancelScope()
        server = await outer.start(_serve_in_scope, server_scope)
        async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False) as ws:
            await ws.send_message("hello")
            assert await ws.get_message() == "hello"
            server_scope.cancel()
            with pytest.raises(trio_ws.ConnectionClosed) as caught:
                with trio.fail_after(5):
                    await ws.get_message()
            assert caught.value.reason.code == 1001


async def _serve_in_scope(
    scope: trio.CancelScope,
    context: ssl.SSLContext | None = None,
    *,
    task_status: trio.TaskStatus[trio_ws.WebSocketServer],
) -> None:
    """An echo server (over TLS with *context*) that *scope* can cancel."""
    with scope:
        await trio_ws.serve_websocket(echo_handler, HOST, 0, context, task_status=task_status)


async def test_close_frame_without_code_ends_async_for_quietly(nursery: trio.Nursery) -> None:
    # Issue 13 item 5: a browser's ws.close() sends an empty Close frame (1005).
    outcome: list[object] = []

    async def iterate(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            async for message in ws:
                outcome.append(message)
        except trio_ws.ConnectionClosed as exc:
            outcome.append(exc)
        else:
            outcome.append("ended")

    server = await nursery.start(trio_ws.serve_websocket, iterate, HOST, 0, None)
    stream, reader, _ = await raw_client(server.port)
    await stream.send_all(frame(TEXT, b"hi") + frame(CLOSE))
    with trio.fail_after(5):
        assert await reader.close_code() is None  # the empty Close is echoed
        while len(outcome) < 2:
            await trio.sleep(0.01)
    assert outcome == ["hi", "ended"]
    await stream.aclose()


async def test_block_left_by_cancellation_closes_with_1001(nursery: trio.Nursery) -> None:
    record = CloseRecorder()
    server = await nursery.start(trio_ws.serve_websocket, record, HOST, 0, None)
    with trio.move_on_after(0.2):
        async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False):
            await trio.sleep_forever()
    assert await record.wait_for(1) == [1001]  # going away, not the normal closure of before


async def test_a_cancelled_sender_gets_cancelled_not_the_close_it_caused(
    echo_server: trio_ws.WebSocketServer,
) -> None:
    # The reader closes with 1001 when the cancellation reaches it first; a
    # send in the same cancelled block used to raise ConnectionClosedOK
    # (1001), which the cancel scope does not catch, instead of Cancelled.
    with trio.CancelScope() as scope:
        async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws:
            scope.cancel()
            with trio.CancelScope(shield=True):
                await trio.sleep(0.1)  # the reader sees the cancellation first
            assert ws.closed is not None and ws.closed.code == 1001
            await ws.send_message("too late")
    assert scope.cancelled_caught


async def test_tls_server_torn_down_by_cancellation_closes_with_1001(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    # Over TLS the Close frame needs a write that the teardown's own
    # cancellation used to interrupt (a cancelled TLS write breaks the
    # stream): every client saw 1006 instead of 1001.
    codes = []
    for _ in range(5):
        async with trio.open_nursery() as outer:
            server_scope = trio.CancelScope()
            server = await outer.start(_serve_in_scope, server_scope, server_context)
            url = f"wss://{HOST}:{server.port}/"
            async with trio_ws.open_websocket_url(url, client_context) as ws:
                await ws.send_message("hello")
                assert await ws.get_message() == "hello"
                server_scope.cancel()
                with pytest.raises(trio_ws.ConnectionClosed) as caught:
                    with trio.fail_after(5):
                        await ws.get_message()
                codes.append(caught.value.reason.code)
    assert codes == [1001] * 5
