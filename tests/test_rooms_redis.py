"""examples/rooms.py end to end: two workers under the runner, a real redis-server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio

import trio_ws

from .redis_server import RedisServer
from .support.peers import http_exchange
from .test_examples import ROOT, Program

WORKERS = ["--workers", "2", "--port", "0", "--shutdown-timeout", "2"]


async def start_rooms(nursery: trio.Nursery, redis: RedisServer, mode: str) -> tuple[Program, int]:
    process = await nursery.start(
        lambda task_status: trio.run_process(
            [sys.executable, "-m", "trio_ws", "serve", "examples.rooms:handler", *WORKERS],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            check=False,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "REDIS_URL": redis.url, "REDIS_MODE": mode},
            task_status=task_status,
        )
    )
    program = Program(process)
    port = int((await program.read_until(r"ws://127\.0\.0\.1:(\d+)/ with 2 workers")).group(1))
    return program, port


async def open_per_worker(port: int) -> dict[int, int]:
    """Scrape /metrics until both workers answered: pid -> open connections."""
    seen: dict[int, int] = {}
    for _ in range(100):
        answer = await http_exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
        found = re.search(rb'trio_ws_connections_open\{worker="(\d+)"\} (\d+)', answer)
        assert found is not None, answer
        seen[int(found.group(1))] = int(float(found.group(2)))
        if len(seen) == 2:
            break
    return seen


@pytest.mark.parametrize("mode", ["pubsub", "streams"])
async def test_rooms_example_spans_two_workers(
    nursery: trio.Nursery, redis_server: RedisServer, mode: Any
) -> None:
    runner, port = await start_rooms(nursery, redis_server, mode)
    async with AsyncExitStack() as stack:
        members: list[trio_ws.WebSocketConnection] = []
        # Join until both workers have a member of room "a" (kernel hashing
        # is random; each new connection is a fresh coin toss).
        for _ in range(30):
            members.append(
                await stack.enter_async_context(
                    trio_ws.open_websocket_url(f"ws://127.0.0.1:{port}/a")
                )
            )
            counts = await open_per_worker(port)
            if len(members) >= 2 and len(counts) == 2 and all(counts.values()):
                break
        assert len(counts) == 2 and all(counts.values()), counts
        outsider = await stack.enter_async_context(
            trio_ws.open_websocket_url(f"ws://127.0.0.1:{port}/b")
        )
        for i, sender in enumerate(members[:3]):
            await sender.send_message(f"hello {i}")
            for member in members:  # the sender included, on either worker
                with trio.fail_after(10):
                    assert await member.get_message() == f"hello {i}"
        await outsider.send_message("only b")
        with trio.fail_after(10):
            assert await outsider.get_message() == "only b"
        for member in members:
            with trio.move_on_after(0.2):
                pytest.fail(f"room a got {await member.get_message()!r}")
    metrics = await http_exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert re.search(rb"trio_ws_broker_published_total\{worker=", metrics)
    runner.process.terminate()
    with trio.fail_after(20):
        assert await runner.process.wait() == 0
