"""trio_ws echo server and client worker (see _common.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
from _common import trio_main

import trio_ws


async def echo(request: trio_ws.WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        async for message in ws:
            await ws.send_message(message)
    except trio_ws.ConnectionClosed:
        pass


def _options(compress: bool, max_size: int) -> dict[str, Any]:
    options: dict[str, Any] = {"max_message_size": max_size}
    if not compress:
        options["compression"] = None  # default is permessage-deflate on
    return options


async def serve(port: int, compress: bool, max_size: int, *, task_status: Any) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(
                trio_ws.serve_websocket,
                echo,
                "127.0.0.1",
                port,
                None,
                **_options(compress, max_size),
            )
        )
        task_status.started(server.port)


@asynccontextmanager
async def connect(port: int, compress: bool, max_size: int) -> AsyncIterator[Any]:
    url = f"ws://127.0.0.1:{port}/"
    async with trio_ws.open_websocket_url(url, **_options(compress, max_size)) as ws:
        yield ws.send_message, ws.get_message


if __name__ == "__main__":
    trio_main(serve, connect)
