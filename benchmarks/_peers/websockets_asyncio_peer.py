"""websockets' asyncio layer (websockets.asyncio) echo server and client worker."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from _common import aio_main
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed


async def echo(ws: ServerConnection) -> None:
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


def _compression(compress: bool) -> str | None:
    return "deflate" if compress else None


async def serve(args: argparse.Namespace, started: Callable[[int], None]) -> None:
    async with ws_serve(
        echo,
        "127.0.0.1",
        args.port,
        compression=_compression(args.compress),
        max_size=args.max_size,
    ) as server:
        started(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()  # until cancelled


@asynccontextmanager
async def connect(port: int, compress: bool, max_size: int) -> AsyncIterator[Any]:
    uri = f"ws://127.0.0.1:{port}/"
    async with ws_connect(
        uri, compression=_compression(compress), max_size=max_size, proxy=None
    ) as ws:
        yield ws.send, ws.recv


if __name__ == "__main__":
    aio_main(serve, connect)
