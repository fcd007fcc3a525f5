"""Streaming receive and send: one message as chunks, memory bounded by a chunk."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator, Iterator

import pytest
import trio
import trio.testing

import trio_ws

from .conftest import HOST

MiB = 2**20
CHUNK = 64 * 1024


def chunks_of(total: int, size: int = CHUNK) -> Iterator[bytes]:
    block = bytes(range(256)) * (size // 256)
    for _ in range(total // size):
        yield block


async def serve(nursery: trio.Nursery, handler: object, **kwargs: object) -> int:
    server = await nursery.start(
        lambda task_status: trio_ws.serve_websocket(
            handler,  # type: ignore[arg-type]
            HOST,
            0,
            None,
            task_status=task_status,
            **kwargs,  # type: ignore[arg-type]
        )
    )
    return server.port  # type: ignore[no-any-return]


async def test_large_message_streams_with_bounded_memory(nursery: trio.Nursery) -> None:
    total = 32 * MiB

    async def send_big(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message_stream(chunks_of(total))
        await ws.get_message()

    port = await serve(nursery, send_big)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
        tracemalloc.start()
        try:
            received = 0
            largest = 0
            async with ws.get_message_stream(max_size=None) as stream:
                async for chunk in stream:
                    assert isinstance(chunk, bytes)
                    received += len(chunk)
                    largest = max(largest, len(chunk))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        await ws.send_message("done")
    assert received == total
    assert largest <= 2 * CHUNK
    # Both ends live in this process; still, nothing near the message size.
    assert peak < 4 * MiB, peak


async def test_streamed_text_arrives_as_str_chunks(nursery: trio.Nursery) -> None:
    text = "日本語のテキスト" * 5000

    async def send_text(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message_stream(text[i : i + 999] for i in range(0, len(text), 999))
        await ws.get_message()

    port = await serve(nursery, send_text)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
        async with ws.get_message_stream() as stream:
            pieces = [chunk async for chunk in stream]
        assert all(isinstance(p, str) for p in pieces)
        assert "".join(pieces) == text  # type: ignore[arg-type]
        await ws.send_message("done")


async def test_queued_whole_message_is_streamed_as_one_chunk(nursery: trio.Nursery) -> None:
    async def two(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message("first")
        await ws.send_message("second")
        await ws.get_message()

    port = await serve(nursery, two)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False, message_queue_size=4) as ws:
        await ws.ping()  # both messages are queued by now
        async with ws.get_message_stream() as stream:
            assert [chunk async for chunk in stream] == ["first"]
        assert await ws.get_message() == "second"
        await ws.send_message("done")


async def test_get_message_waits_for_the_message_after_the_stream(nursery: trio.Nursery) -> None:
    go = trio.Event()

    async def slow_then_fast(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()

        async def parts() -> AsyncIterator[bytes]:
            yield b"a" * 1000
            await go.wait()
            yield b"b" * 1000

        await ws.send_message_stream(parts())
        await ws.send_message("after")
        await ws.get_message()

    port = await serve(nursery, slow_then_fast)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
        async with ws.get_message_stream() as stream, trio.open_nursery() as inner:
            got: list[object] = []

            async def whole() -> None:
                got.append(await ws.get_message())

            inner.start_soon(whole)
            assert await stream.__anext__() == b"a" * 1000
            await trio.testing.wait_all_tasks_blocked()
            assert got == []  # "after" cannot overtake the streamed message
            go.set()
            assert [c async for c in stream] == [b"b" * 1000]
        assert got == ["after"]
        await ws.send_message("done")


async def test_abandoned_stream_discards_the_rest_only(nursery: trio.Nursery) -> None:
    async def big_then_small(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message_stream(chunks_of(8 * MiB))
        await ws.send_message("small")
        await ws.get_message()

    port = await serve(nursery, big_then_small)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
        async with ws.get_message_stream(max_size=None) as stream:
            await stream.__anext__()
            await stream.__anext__()  # ...and walk away half-way
        with trio.fail_after(10):
            assert await ws.get_message() == "small"
        await ws.send_message("done")


async def test_stream_abandoned_before_any_chunk_leaves_the_message(nursery: trio.Nursery) -> None:
    go = trio.Event()

    async def later(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        await go.wait()
        await ws.send_message("for get_message")
        await ws.get_message()

    port = await serve(nursery, later)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
        async with ws.get_message_stream():
            pass
        go.set()
        assert await ws.get_message() == "for get_message"
        await ws.send_message("done")


async def test_stream_size_limit_closes_with_1009(nursery: trio.Nursery) -> None:
    async def send_5000(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message_stream([b"x" * 1000] * 5)
        await ws.get_message()

    port = await serve(nursery, send_5000)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
        with pytest.raises(trio_ws.ConnectionClosed) as info:
            async with ws.get_message_stream(max_size=2500) as stream:
                async for _ in stream:
                    pass
    assert info.value.reason.code == 1009


async def test_stream_limit_may_exceed_max_message_size(nursery: trio.Nursery) -> None:
    async def send_big(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message(b"y" * 10_000)
        await ws.send_message(b"z" * 10_000)
        await ws.get_message()

    port = await serve(nursery, send_big)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False, max_message_size=1000) as ws:
        async with ws.get_message_stream(max_size=None) as stream:
            assert b"".join([c async for c in stream]) == b"y" * 10_000  # type: ignore[misc]
        # The next message is held to max_message_size again.
        with pytest.raises(trio_ws.ConnectionClosed) as info:
            await ws.get_message()
        assert info.value.reason.code == 1009


async def test_only_one_stream_at_a_time(nursery: trio.Nursery) -> None:
    async def idle(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.get_message()

    port = await serve(nursery, idle)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
        async with ws.get_message_stream():
            with pytest.raises(RuntimeError):
                async with ws.get_message_stream():
                    pass  # pragma: no cover
        await ws.send_message("done")


async def test_send_stream_types_and_empty_messages(nursery: trio.Nursery) -> None:
    received: list[object] = []

    async def collect(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        async for message in ws:
            received.append(message)

    async def agen() -> AsyncIterator[str]:
        for part in ["as", "ync"]:
            yield part

    port = await serve(nursery, collect)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
        await ws.send_message_stream([b"by", bytearray(b"tes")])
        await ws.send_message_stream(agen())
        await ws.send_message_stream([], text=True)
        await ws.send_message_stream(iter(()))
        await ws.send_message("whole")
    with trio.fail_after(5):
        while len(received) < 5:
            await trio.sleep(0.01)
    assert received == [b"bytes", "async", "", b"", "whole"]


@pytest.mark.parametrize("failure", ["wrong type", "iterable raises"])
async def test_failed_send_stream_closes_with_1011(nursery: trio.Nursery, failure: str) -> None:
    seen: list[int] = []

    async def watch(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                await ws.get_message()
        except trio_ws.ConnectionClosed as exc:
            seen.append(exc.reason.code)

    def bad_chunks() -> Iterator[object]:
        yield b"first"
        if failure == "wrong type":
            yield "text in a binary message"
        raise KeyError("source failed")

    port = await serve(nursery, watch)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
        with pytest.raises(TypeError if failure == "wrong type" else KeyError):
            await ws.send_message_stream(bad_chunks())  # type: ignore[arg-type]
        assert ws.closed is not None and ws.closed.code == 1011
        with pytest.raises(trio_ws.ConnectionClosed):
            await ws.send_message("no more")
    with trio.fail_after(5):
        while not seen:
            await trio.sleep(0.01)
    assert seen == [1011]


async def test_pings_are_answered_between_fragments(nursery: trio.Nursery) -> None:
    release = trio.Event()

    async def slow_stream(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()

        async def parts() -> AsyncIterator[bytes]:
            yield b"part one"
            await release.wait()
            yield b"part two"

        await ws.send_message_stream(parts())
        await ws.get_message()

    port = await serve(nursery, slow_stream)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
        with trio.fail_after(5):
            await ws.ping()  # answered while the server's message is half-sent
        release.set()
        assert await ws.get_message() == b"part onepart two"
        await ws.send_message("done")


async def test_empty_messages_stream_no_chunks_but_know_their_type(nursery: trio.Nursery) -> None:
    async def empties(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message("")
        await ws.send_message(b"")
        await ws.get_message()

    port = await serve(nursery, empties)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
        async with ws.get_message_stream() as stream:
            assert [chunk async for chunk in stream] == []
            assert stream.is_text is True
        async with ws.get_message_stream() as stream:
            assert [chunk async for chunk in stream] == []
            assert stream.is_text is False
        await ws.send_message("done")


async def test_stream_opened_while_a_long_binary_frame_arrives_gets_it(
    nursery: trio.Nursery,
) -> None:
    """The stream gets the message whose first bytes were read before it opened."""
    import os

    from .support.codec import BINARY, TEXT, frame
    from .support.peers import raw_client

    got: list[object] = []
    header_read = trio.Event()

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        await header_read.wait()
        await trio.sleep(0.2)  # the reader is now inside the frame's payload
        async with ws.get_message_stream() as chunks:
            got.append(b"".join([c async for c in chunks if isinstance(c, bytes)]))
        got.append(await ws.get_message())

    server = await nursery.start(
        lambda task_status: trio_ws.serve_websocket(
            handler, HOST, 0, None, compression=None, task_status=task_status
        )
    )
    stream, _reader, head = await raw_client(server.port)
    assert head.startswith(b"HTTP/1.1 101 ")
    payload = os.urandom(300_000)
    whole = frame(BINARY, payload)
    await stream.send_all(whole[:100_000])
    header_read.set()
    await trio.sleep(0.5)
    await stream.send_all(whole[100_000:] + frame(TEXT, b"next"))
    with trio.fail_after(5):
        while len(got) < 2:
            await trio.sleep(0.01)
    assert got == [payload, "next"]
    await stream.aclose()
