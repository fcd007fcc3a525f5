"""permessage-deflate: negotiation, bounded inflation, per-message skip, interop."""

from __future__ import annotations

import asyncio
import os
import threading
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest
import trio
import trio.testing

import trio_ws
from trio_ws import DeflateOptions

from .conftest import HOST, echo_handler
from .support.codec import BINARY, TEXT, frame
from .support.handshake import accept_answer
from .support.peers import Reader, raw_client, serve_raw

MiB = 2**20


def extension_header(headers: list[tuple[bytes, bytes]]) -> str | None:
    values = [v.decode() for n, v in headers if n == b"sec-websocket-extensions"]
    return ", ".join(values) or None


async def start(nursery: trio.Nursery, handler: object = echo_handler, **kwargs: object) -> int:
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


async def test_negotiated_by_default_and_round_trips(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    text = "compress me " * 10_000
    big = os.urandom(200_000) + bytes(300_000)  # above the worker-thread threshold
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
        answer = extension_header(ws.handshake_headers)
        assert answer == "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        for message in [text, b"", "", text, big, b"\x00" * 10]:
            await ws.send_message(message)
            assert await ws.get_message() == message


async def test_compression_off_on_either_side(nursery: trio.Nursery) -> None:
    plain_port = await start(nursery, compression=None)
    async with trio_ws.open_websocket(HOST, plain_port, "/", use_ssl=False) as ws:
        assert extension_header(ws.handshake_headers) is None
        await ws.send_message("not compressed")
        assert await ws.get_message() == "not compressed"
    seen: list[bytes | None] = []

    async def record(request: trio_ws.WebSocketRequest) -> None:
        seen.append(dict(request.headers).get(b"sec-websocket-extensions"))
        await echo_handler(request)

    port = await start(nursery, record)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False, compression=None) as ws:
        assert extension_header(ws.handshake_headers) is None
        await ws.send_message("plain")
        assert await ws.get_message() == "plain"
    assert seen == [None]


@pytest.mark.parametrize(
    "client, server, expected",
    [
        (
            DeflateOptions(server_no_context_takeover=True, client_no_context_takeover=True),
            DeflateOptions(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=12; client_max_window_bits=12",
        ),
        (
            DeflateOptions(server_max_window_bits=10),
            DeflateOptions(server_max_window_bits=15, client_max_window_bits=15),
            "permessage-deflate; server_max_window_bits=10",
        ),
        (
            DeflateOptions(client_max_window_bits=9),
            DeflateOptions(client_max_window_bits=11, server_no_context_takeover=True),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; "
            "client_max_window_bits=11",
        ),
        (
            DeflateOptions(server_max_window_bits=15),
            DeflateOptions(server_max_window_bits=15, client_max_window_bits=15),
            "permessage-deflate",
        ),
    ],
)
async def test_each_parameter_is_negotiated(
    nursery: trio.Nursery, client: DeflateOptions, server: DeflateOptions, expected: str
) -> None:
    port = await start(nursery, compression=server)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False, compression=client) as ws:
        assert extension_header(ws.handshake_headers) == expected
        for i in range(3):  # several messages: context takeover (or not) holds up
            message = f"message {i} " * 500
            await ws.send_message(message)
            assert await ws.get_message() == message


@pytest.mark.parametrize(
    "offer, answer",
    [
        # A browser's offer.
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
        ),
        # Offers the server must decline (RFC 7692 section 5), falling back
        # to the next acceptable one if there is one.
        ("permessage-deflate; unknown_param", None),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
        ("permessage-deflate; server_max_window_bits=16", None),
        ("permessage-deflate; server_max_window_bits", None),
        ("permessage-deflate; server_max_window_bits=8", None),
        ("permessage-deflate; client_max_window_bits=abc", None),
        ("permessage-deflate; server_no_context_takeover=1", None),
        (
            "permessage-deflate; x=1, permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10",
        ),
        ("x-webkit-deflate-frame", None),
    ],
)
async def test_server_answers_raw_offers(
    nursery: trio.Nursery, offer: str, answer: str | None
) -> None:
    port = await start(nursery)
    stream, reader, head = await raw_client(
        port, extra=f"Sec-WebSocket-Extensions: {offer}\r\n".encode()
    )
    async with stream:
        assert head.startswith(b"HTTP/1.1 101 ")
        lines = [line for line in head.decode().split("\r\n") if ":" in line]
        got = [
            v.strip()
            for n, v in (line.split(":", 1) for line in lines)
            if n.lower() == "sec-websocket-extensions"
        ]
        assert got == ([answer] if answer else [])
        if answer is None:
            # Declined: the connection works uncompressed.
            await stream.send_all(frame(TEXT, b"plain"))
            with trio.fail_after(5):
                assert await reader.frame() == (TEXT, b"plain")


@pytest.mark.parametrize(
    "answer, match",
    [
        ("permessage-deflate; bogus", "invalid permessage-deflate"),
        ("permessage-deflate; server_max_window_bits=13", "larger than we asked"),
        ("permessage-deflate; client_max_window_bits=8", "zlib"),
        ("permessage-deflate; client_max_window_bits", "needs a value"),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", "repeated"),
        ("permessage-deflate, permessage-deflate", "did not offer"),
        ("x-other-extension", "did not offer"),
    ],
)
async def test_client_fails_on_invalid_answers(
    nursery: trio.Nursery, answer: str, match: str
) -> None:
    async def respond(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(
            accept_answer(head, f"Sec-WebSocket-Extensions: {answer}\r\n".encode())
        )
        await trio.sleep_forever()

    port = await nursery.start(serve_raw, respond)
    with trio.fail_after(5), pytest.raises(trio_ws.HandshakeError, match=match):
        async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False):
            pass  # pragma: no cover


def bomb(size: int) -> bytes:
    """A deflate stream of *size* zero bytes, made without holding them."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MiB)
    parts = [compressor.compress(zeros) for _ in range(size // MiB)]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    return b"".join(parts)[:-4]


async def test_compression_bomb_is_refused_with_bounded_memory(nursery: trio.Nursery) -> None:
    closed: list[int] = []

    async def victim(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            await ws.get_message()
        except trio_ws.ConnectionClosed as exc:
            closed.append(exc.reason.code)

    port = await start(nursery, victim)
    payload = bomb(512 * MiB)  # about half a MiB on the wire
    assert len(payload) < MiB
    bomb_frame = frame(BINARY, payload, rsv=4)  # RSV1: compressed
    stream, reader, head = await raw_client(
        port, extra=b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
    )
    async with stream:
        assert b"permessage-deflate" in head
        tracemalloc.start()
        try:
            await stream.send_all(bomb_frame)
            with trio.fail_after(10):
                assert await reader.close_code() == 1009
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    with trio.fail_after(5):
        while not closed:
            await trio.sleep(0.01)
    assert closed == [1009]
    print(f"bomb: peak traced memory {peak / MiB:.2f} MiB")
    # 1 MiB of output at most, plus the frame being parsed; nothing like 512 MiB.
    assert peak < 8 * MiB, peak


async def test_per_message_skip_sends_rsv1_clear(nursery: trio.Nursery) -> None:
    flags: list[bool] = []

    async def inspect(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(
            accept_answer(head, b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
        )
        for _ in range(3):
            await reader.frame()
            flags.append(bool(reader.last_first_byte & 0x40))
        await trio.sleep_forever()

    port = await nursery.start(serve_raw, inspect)
    async with trio.open_nursery() as inner:
        ws = await trio_ws.connect_websocket(inner, HOST, port, "/", use_ssl=False)
        await ws.send_message(b"compressible " * 100)
        await ws.send_message(os.urandom(1000), compress=False)
        await ws.send_message("compressed again " * 100)
        with trio.fail_after(5):
            while len(flags) < 3:
                await trio.sleep(0.01)
        inner.cancel_scope.cancel()
    assert flags == [True, False, True]


async def test_streamed_compressed_message_chunks_stay_small(nursery: trio.Nursery) -> None:
    async def send_zeros(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message_stream(bytes(MiB) for _ in range(64))
        await ws.get_message()

    port = await start(nursery, send_zeros)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
        total = largest = 0
        async with ws.get_message_stream(max_size=None) as stream:
            async for chunk in stream:
                total += len(chunk)
                largest = max(largest, len(chunk))
        await ws.send_message("done")
    assert total == 64 * MiB
    assert largest <= 2 * MiB


# ------------------------------------------------------------ interop


def run_asyncio_echo_server(ready: threading.Event, stop: threading.Event, port: list[int]) -> None:
    from websockets.asyncio.server import serve

    async def echo(connection: object) -> None:
        async for message in connection:  # type: ignore[attr-defined]
            await connection.send(message)  # type: ignore[attr-defined]

    async def main() -> None:
        async with serve(echo, HOST, 0, max_size=None) as server:
            port.append(next(iter(server.sockets)).getsockname()[1])
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    asyncio.run(main())


@pytest.fixture
def websockets_server() -> Iterator[int]:
    ready, stop, port = threading.Event(), threading.Event(), []
    thread = threading.Thread(target=run_asyncio_echo_server, args=(ready, stop, port))
    thread.start()
    try:
        assert ready.wait(10)
        yield port[0]
    finally:
        stop.set()
        thread.join(10)


async def test_interop_trio_ws_client_with_websockets_server(websockets_server: int) -> None:
    async with trio_ws.open_websocket(HOST, websockets_server, "/", use_ssl=False) as ws:
        assert "permessage-deflate" in (extension_header(ws.handshake_headers) or "")
        for message in ["hello " * 1000, b"\x01\x02" * 50_000, "é" * 70_000]:
            await ws.send_message(message)
            assert await ws.get_message() == message


async def test_interop_websockets_client_with_trio_ws_server(nursery: trio.Nursery) -> None:
    port = await start(nursery)

    def client() -> tuple[str | None, list[object]]:
        from websockets.sync.client import connect

        replies = []
        with connect(f"ws://{HOST}:{port}/", max_size=None) as ws:
            negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")
            for message in ["hello " * 1000, b"\x03" * 300_000, "ü" * 50_000]:
                ws.send(message)
                replies.append(ws.recv())
        return negotiated, replies

    negotiated, replies = await trio.to_thread.run_sync(client)
    assert negotiated is not None and negotiated.startswith("permessage-deflate")
    assert replies == ["hello " * 1000, b"\x03" * 300_000, "ü" * 50_000]
