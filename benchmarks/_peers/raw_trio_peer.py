"""Raw Trio TCP echo with 4-byte big-endian length-prefixed framing.

The floor for the other libraries: no handshake, no masking, no protocol
state. The server echoes each batch of complete frames it has received in one
``send_all``; the client reads frames from a buffer. ``--compress`` is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from _common import trio_main

HEADER = 4
READ = 64 * 1024


async def serve(port: int, compress: bool, max_size: int, *, task_status: Any) -> None:
    if compress:
        raise SystemExit("raw TCP has no compression")

    async def handle(stream: trio.SocketStream) -> None:
        buffer = bytearray()
        try:
            while True:
                data = await stream.receive_some(READ)
                if not data:
                    break
                buffer += data
                end, size = 0, len(buffer)
                while size - end >= HEADER:
                    length = int.from_bytes(buffer[end : end + HEADER], "big")
                    if length > max_size:
                        return
                    if size - end - HEADER < length:
                        break
                    end += HEADER + length
                if end:
                    out = bytes(buffer[:end])
                    del buffer[:end]
                    await stream.send_all(out)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started(listeners[0].socket.getsockname()[1])


class Framed:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(len(data).to_bytes(HEADER, "big") + data)

    async def recv(self) -> bytes:
        buffer = self.buffer
        while True:
            if len(buffer) >= HEADER:
                end = HEADER + int.from_bytes(buffer[:HEADER], "big")
                if len(buffer) >= end:
                    message = bytes(buffer[HEADER:end])
                    del buffer[:end]
                    return message
            data = await self.stream.receive_some(READ)
            if not data:
                raise EOFError("server closed the connection")
            buffer += data


@asynccontextmanager
async def connect(port: int, compress: bool, max_size: int) -> AsyncIterator[Any]:
    if compress:
        raise SystemExit("raw TCP has no compression")
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        framed = Framed(stream)
        yield framed.send, framed.recv


if __name__ == "__main__":
    trio_main(serve, connect)
