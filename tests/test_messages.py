"""The message queue: backpressure, size limits and protocol violations."""

from __future__ import annotations

import pytest
import trio
import trio.testing

import trio_ws

from .conftest import HOST
from .support.codec import BINARY, CLOSE, CONTINUATION, PING, TEXT, close_payload, frame
from .support.handshake import accept_answer
from .support.peers import Reader, raw_client, serve_raw

MiB = 2**20


async def wait_until_stalled(counter: list[int], rounds: int = 50) -> int:
    """Wait until *counter[0]* stops moving for 0.2 s; return its value."""
    last = -1
    for _ in range(rounds):
        if counter[0] == last:
            return last
        last = counter[0]
        await trio.sleep(0.2)
    raise AssertionError("sender never stalled")


async def test_full_queue_stops_reading_and_blocks_the_peer(nursery: trio.Nursery) -> None:
    release = trio.Event()
    received: list[bytes] = []

    async def slow_reader(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        await release.wait()
        received.extend([await ws.get_message() for _ in range(total)])  # type: ignore[misc]

    total = 40
    server = await nursery.start(
        trio_ws.serve_websocket, slow_reader, HOST, 0, None
    )  # message_queue_size=1, max_message_size=1 MiB by default
    sent = [0]
    # No compression: these messages would shrink to nothing and never stall.
    async with trio_ws.open_websocket(
        HOST, server.port, "/", use_ssl=False, compression=None
    ) as ws:

        async def flood() -> None:
            for i in range(total):
                await ws.send_message(i.to_bytes(4, "big") * (MiB // 4))
                sent[0] += 1

        async with trio.open_nursery() as inner:
            inner.start_soon(flood)
            stalled_at = await wait_until_stalled(sent)
            # The queue holds 1, the reader assembles 1, TCP buffers a few.
            assert stalled_at < total
            release.set()
        assert sent[0] == total
        with trio.fail_after(10):
            while len(received) < total:
                await trio.sleep(0.05)
    assert [m[:4] for m in received] == [i.to_bytes(4, "big") for i in range(total)]


async def test_client_queue_backpressure_blocks_server(nursery: trio.Nursery) -> None:
    sent = [0]
    total = 40

    async def flooder(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        for i in range(total):
            await ws.send_message(bytes([i]) * MiB)
            sent[0] += 1

    server = await nursery.start(trio_ws.serve_websocket, flooder, HOST, 0, None)
    async with trio_ws.open_websocket(
        HOST, server.port, "/", use_ssl=False, compression=None
    ) as ws:
        assert await wait_until_stalled(sent) < total
        for i in range(total):
            message = await ws.get_message()
            assert message == bytes([i]) * MiB


async def test_message_of_exactly_max_size_is_accepted(nursery: trio.Nursery) -> None:
    async def send_big(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message(b"x" * 5000)
        await ws.send_message("é" * 2500)  # 5000 bytes of UTF-8
        await ws.get_message()

    server = await nursery.start(trio_ws.serve_websocket, send_big, HOST, 0, None)
    async with trio_ws.open_websocket(
        HOST, server.port, "/", use_ssl=False, max_message_size=5000
    ) as ws:
        assert len(await ws.get_message()) == 5000
        assert await ws.get_message() == "é" * 2500
        await ws.send_message("thanks")


async def test_frame_announcing_too_much_is_refused_before_its_payload(
    nursery: trio.Nursery,
) -> None:
    server = await nursery.start(
        lambda task_status: trio_ws.serve_websocket(
            _expect_closed, HOST, 0, None, max_message_size=1000, task_status=task_status
        )
    )
    stream, reader, head = await raw_client(server.port)
    async with stream:
        assert head.startswith(b"HTTP/1.1 101")
        # Only the header of a 10 MiB frame: the payload never comes.
        await stream.send_all(frame(BINARY, b"", length=10 * MiB)[:14])
        with trio.fail_after(5):
            assert await reader.close_code() == 1009
            await stream.send_all(frame(CLOSE, close_payload(1009)))
            assert await reader.eof()
    await handler_saw(1009)


async def test_fragmented_message_is_refused_once_it_crosses_the_limit(
    nursery: trio.Nursery,
) -> None:
    server = await nursery.start(
        lambda task_status: trio_ws.serve_websocket(
            _expect_closed, HOST, 0, None, max_message_size=1000, task_status=task_status
        )
    )
    stream, reader, _ = await raw_client(server.port)
    async with stream:
        await stream.send_all(frame(TEXT, b"a" * 400, fin=False))
        await stream.send_all(frame(CONTINUATION, b"a" * 400, fin=False))
        with pytest.raises(trio.TooSlowError):
            with trio.fail_after(0.3):
                await reader.frame()  # 800 bytes so far: still fine
        await stream.send_all(frame(CONTINUATION, b"a" * 400, fin=False))
        with trio.fail_after(5):
            assert await reader.close_code() == 1009
    await handler_saw(1009)


closed_codes: list[int] = []


async def handler_saw(code: int) -> None:
    with trio.fail_after(5):
        while closed_codes != [code]:
            await trio.sleep(0.01)


async def _expect_closed(request: trio_ws.WebSocketRequest) -> None:
    ws = await request.accept()
    closed_codes.clear()
    try:
        await ws.get_message()
    except trio_ws.ConnectionClosed as exc:
        closed_codes.append(exc.reason.code)


async def test_client_refuses_oversized_frame_from_server(nursery: trio.Nursery) -> None:
    async def big_header(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(accept_answer(head) + frame(BINARY, b"", length=MiB, mask=False)[:10])
        assert await reader.close_code() == 1009
        await stream.aclose()

    port = await nursery.start(serve_raw, big_header)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False, max_message_size=100) as ws:
        with pytest.raises(trio_ws.ConnectionClosed) as info:
            await ws.get_message()
    assert info.value.reason.code == 1009
    assert "exceeds limit of 100" in (info.value.reason.reason or "")


@pytest.mark.parametrize(
    "bad_frame, code",
    [
        (frame(0x3, b"reserved opcode"), 1002),
        (frame(TEXT, b"\xff\xfe not utf-8"), 1007),
        (frame(TEXT, b"\xe2\x82", fin=False) + frame(CONTINUATION, b"\x28"), 1007),
        (frame(TEXT, b"unmasked", mask=False), 1002),
        (frame(CLOSE, close_payload(999)), 1002),
        (frame(CLOSE, close_payload(1000, b"\xff")), 1007),
        (frame(PING, b"", fin=False), 1002),
        (frame(TEXT, b"rsv", rsv=2), 1002),
        (frame(CONTINUATION, b"no start"), 1002),
    ],
)
async def test_protocol_violations_get_rfc_close_codes(
    nursery: trio.Nursery, bad_frame: bytes, code: int
) -> None:
    server = await nursery.start(trio_ws.serve_websocket, _expect_closed, HOST, 0, None)
    stream, reader, _ = await raw_client(server.port)
    async with stream:
        await stream.send_all(bad_frame)
        with trio.fail_after(5):
            assert await reader.close_code() == code
            # The server closes the TCP connection without waiting for us.
            await reader.eof()
    await handler_saw(code)


async def test_client_fails_connection_on_violation_and_never_hangs(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def violate(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(accept_answer(head) + frame(0xB, b"", mask=False))
        assert await reader.close_code() == 1002
        await trio.sleep_forever()  # never closes: the client must not wait forever

    port = await nursery.start(serve_raw, violate)
    start = trio.current_time()
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False, disconnect_timeout=10) as ws:
        with pytest.raises(trio_ws.ConnectionClosed):
            await ws.get_message()
    assert ws.closed is not None and ws.closed.code == 1002
    assert trio.current_time() - start <= 10 + 0.1


async def test_frames_sent_with_the_101_answer_are_delivered(nursery: trio.Nursery) -> None:
    async def eager(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(accept_answer(head) + frame(TEXT, b"early", mask=False))
        await trio.sleep_forever()

    port = await nursery.start(serve_raw, eager)
    async with trio.open_nursery() as inner:
        ws = await trio_ws.connect_websocket(inner, HOST, port, "/", use_ssl=False)
        with trio.fail_after(5):
            assert await ws.get_message() == "early"
        inner.cancel_scope.cancel()


async def test_frames_sent_with_the_request_are_delivered(nursery: trio.Nursery) -> None:
    from .conftest import echo_handler
    from .support.handshake import upgrade_request

    server = await nursery.start(trio_ws.serve_websocket, echo_handler, HOST, 0, None)
    async with await trio.open_tcp_stream(HOST, server.port) as stream:
        await stream.send_all(upgrade_request() + frame(TEXT, b"pipelined"))
        reader = Reader(stream)
        assert (await reader.head()).startswith(b"HTTP/1.1 101")
        with trio.fail_after(5):
            assert await reader.frame() == (TEXT, b"pipelined")


async def test_messages_before_a_violation_are_answered_first(nursery: trio.Nursery) -> None:
    from .conftest import echo_handler

    server = await nursery.start(trio_ws.serve_websocket, echo_handler, HOST, 0, None)
    stream, reader, _ = await raw_client(server.port)
    async with stream:
        # A valid message and a bad frame in one write, as in Autobahn 3.2.
        await stream.send_all(frame(TEXT, b"valid") + frame(TEXT, b"bad", rsv=2))
        with trio.fail_after(5):
            assert await reader.frame() == (TEXT, b"valid")  # the echo comes first
            assert await reader.close_code() == 1002


async def test_violation_is_sent_after_grace_if_application_is_busy(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def never_reads(request: trio_ws.WebSocketRequest) -> None:
        await request.accept()
        await trio.sleep_forever()

    server = await nursery.start(trio_ws.serve_websocket, never_reads, HOST, 0, None)
    stream, reader, _ = await raw_client(server.port)
    async with stream:
        start = trio.current_time()
        # "one" fills the queue; the violation cannot be queued behind it.
        await stream.send_all(frame(TEXT, b"one") + frame(0x3, b""))
        assert await reader.close_code() == 1002
        assert trio.current_time() - start == pytest.approx(1.0, abs=0.1)


async def test_too_many_fragments_are_refused(nursery: trio.Nursery) -> None:
    server = await nursery.start(trio_ws.serve_websocket, _expect_closed, HOST, 0, None)
    stream, reader, _ = await raw_client(server.port)
    async with stream:
        # Empty fragments never reach the size limit; the count limit stops them.
        fragments = frame(TEXT, b"", fin=False) + frame(CONTINUATION, b"", fin=False) * 20000
        with trio.move_on_after(5):
            await stream.send_all(fragments)
        with trio.fail_after(5):
            assert await reader.close_code() == 1008
    await handler_saw(1008)
