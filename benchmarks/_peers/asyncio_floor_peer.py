"""The floor on asyncio: a hand-written WebSocket echo over asyncio streams.

The asyncio twin of ``trio_floor_peer.py`` (see ``_floor.py``): what a
WebSocket connection costs on asyncio itself. ``--compress`` is refused.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import _floor
from _common import aio_main

READ = 64 * 1024


class Peer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mask: bool):
        self.reader, self.writer, self.mask, self.buffer = reader, writer, mask, bytearray()

    async def head(self) -> bytes:
        return await self.reader.readuntil(b"\r\n\r\n")

    async def frame(self) -> tuple[int, bytes]:
        while (got := _floor.decode(self.buffer)) is None:
            data = await self.reader.read(READ)
            if not data:
                raise EOFError("closed mid-frame")
            self.buffer += data
        return got

    async def send(self, message: Any) -> None:
        text = isinstance(message, str)
        payload = message.encode() if text else message
        self.writer.write(_floor.encode(1 if text else 2, payload, self.mask))
        await self.writer.drain()

    async def recv(self) -> Any:
        opcode, payload = await self.frame()
        return payload.decode() if opcode == 1 else payload


async def serve(args: argparse.Namespace, started: Callable[[int], None]) -> None:
    if args.compress:
        raise SystemExit("the floor has no compression")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(reader, writer, mask=False)
        try:
            writer.write(_floor.response(await peer.head()))
            while True:
                opcode, payload = await peer.frame()
                if opcode == 8:
                    writer.write(_floor.encode(8, payload[:2], False))
                    break
                writer.write(_floor.encode(opcode, payload, False))
                await writer.drain()
        except (EOFError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", args.port)
    async with server:
        started(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()  # until cancelled


@asynccontextmanager
async def connect(port: int, compress: bool, max_size: int) -> AsyncIterator[Any]:
    if compress:
        raise SystemExit("the floor has no compression")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        peer = Peer(reader, writer, mask=True)
        writer.write(_floor.REQUEST_TEMPLATE % port)
        await peer.head()
        yield peer.send, peer.recv
        writer.write(_floor.encode(8, _floor.CLOSE_1000, True))
        while (await peer.frame())[0] != 8:
            pass
    finally:
        writer.close()
        await writer.wait_closed()


if __name__ == "__main__":
    aio_main(serve, connect)
