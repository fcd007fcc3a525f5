"""websockets' Trio layer (websockets.trio) echo server and client worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
from _common import trio_main
from websockets.exceptions import ConnectionClosed
from websockets.trio.client import connect as ws_connect
from websockets.trio.server import ServerConnection
from websockets.trio.server import serve as ws_serve


async def echo(ws: ServerConnection) -> None:
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


def _compression(compress: bool) -> str | None:
    return "deflate" if compress else None


async def serve(port: int, compress: bool, max_size: int, *, task_status: Any) -> None:
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(
                ws_serve,
                echo,
                listeners=listeners,
                compression=_compression(compress),
                max_size=max_size,
            )
        )
        task_status.started(listeners[0].socket.getsockname()[1])


@asynccontextmanager
async def connect(port: int, compress: bool, max_size: int) -> AsyncIterator[Any]:
    uri = f"ws://127.0.0.1:{port}/"
    async with ws_connect(
        uri, compression=_compression(compress), max_size=max_size, proxy=None
    ) as ws:
        yield ws.send, ws.recv


if __name__ == "__main__":
    trio_main(serve, connect)
