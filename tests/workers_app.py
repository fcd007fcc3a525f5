"""Handlers that the runner tests serve in worker processes."""

from __future__ import annotations

import os
from contextlib import AbstractAsyncContextManager

import trio

import trio_ws


async def handler(request: trio_ws.WebSocketRequest) -> None:
    """Answer every message with ``<pid> <message>``; on /slow, linger after close."""
    ws = await request.accept()
    try:
        async for message in ws:
            await ws.send_message(f"{os.getpid()} {message}")
    finally:
        if request.path == "/slow":
            await trio.sleep(60)  # cut short by the shutdown timeout


not_callable = 42


class FailsToStart:
    """A handler whose per-worker setup fails, so no worker ever serves."""

    async def __call__(self, request: trio_ws.WebSocketRequest) -> None:
        await request.reject(500)

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        raise RuntimeError("no database")


fails_to_start = FailsToStart()
