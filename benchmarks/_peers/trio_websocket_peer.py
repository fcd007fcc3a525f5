"""trio-websocket echo server and client worker (see _common.py).

trio-websocket has no permessage-deflate, so ``--compress`` is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
import trio_websocket
from _common import trio_main


async def echo(request: trio_websocket.WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except trio_websocket.ConnectionClosed:
        pass


async def serve(port: int, compress: bool, max_size: int, *, task_status: Any) -> None:
    if compress:
        raise SystemExit("trio-websocket has no compression")
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(
                trio_websocket.serve_websocket,
                echo,
                "127.0.0.1",
                port,
                None,
                max_message_size=max_size,
            )
        )
        task_status.started(server.port)


@asynccontextmanager
async def connect(port: int, compress: bool, max_size: int) -> AsyncIterator[Any]:
    if compress:
        raise SystemExit("trio-websocket has no compression")
    url = f"ws://127.0.0.1:{port}/"
    async with trio_websocket.open_websocket_url(url, max_message_size=max_size) as ws:
        yield ws.send_message, ws.get_message


if __name__ == "__main__":
    trio_main(serve, connect)
