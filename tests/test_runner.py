"""SO_REUSEPORT listeners and the multi-worker runner, over real loopback sockets."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys

import pytest
import trio

import trio_ws
from trio_ws.runner import load_handler

from .conftest import HOST, echo_handler
from .test_examples import ROOT, Program

needs_reuse_port = pytest.mark.skipif(
    not hasattr(socket, "SO_REUSEPORT"), reason="this platform has no SO_REUSEPORT"
)


@needs_reuse_port
async def test_reuse_port_lets_two_servers_share_a_port(nursery: trio.Nursery) -> None:
    first = await nursery.start(
        lambda task_status: trio_ws.serve_websocket(
            echo_handler, HOST, 0, None, reuse_port=True, task_status=task_status
        )
    )
    second = await nursery.start(
        lambda task_status: trio_ws.serve_websocket(
            echo_handler, HOST, first.port, None, reuse_port=True, task_status=task_status
        )
    )
    assert second.port == first.port
    async with trio_ws.open_websocket_url(f"ws://{HOST}:{first.port}/") as ws:
        await ws.send_message("shared")
        assert await ws.get_message() == "shared"


@needs_reuse_port
async def test_without_reuse_port_the_second_bind_fails(nursery: trio.Nursery) -> None:
    first = await nursery.start(trio_ws.serve_websocket, echo_handler, HOST, 0, None)
    with pytest.raises(OSError) as info:
        await trio_ws.serve_websocket(echo_handler, HOST, first.port, None)
    assert info.value.errno == errno.EADDRINUSE


async def test_reuse_port_where_the_platform_lacks_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(socket, "SO_REUSEPORT", raising=False)
    with pytest.raises(OSError, match="needs SO_REUSEPORT"):
        await trio_ws.serve_websocket(echo_handler, HOST, 0, None, reuse_port=True)


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("tests.workers_app", "expected MODULE:HANDLER"),
        ("tests.workers_app:missing", "has no attribute"),
        ("tests.workers_app:not_callable", "is not callable"),
    ],
)
def test_load_handler_explains_a_bad_spec(spec: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        load_handler(spec)


async def start_runner(nursery: trio.Nursery, *args: str) -> Program:
    """Start ``python -m trio_ws serve ...`` with its log lines on stdout.

    It leads a process group of its own, as a program started from a shell
    does, so that a test can signal the whole group as Ctrl-C would.
    """
    process = await nursery.start(
        lambda task_status: trio.run_process(
            [sys.executable, "-m", "trio_ws", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            check=False,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
            task_status=task_status,
        )
    )
    return Program(process)


async def pid_of_worker(url: str, attempts: int = 20) -> int:
    """The pid of the worker that serves a new connection, retrying as a client would.

    A connection the kernel queued on a worker that is dying is reset; the
    client tries again (briefly, in this test) and reaches a live worker.
    """
    for attempt in range(attempts):
        try:
            async with trio_ws.open_websocket_url(url) as ws:
                await ws.send_message("who")
                answer = await ws.get_message()
        except (trio_ws.HandshakeError, trio_ws.ConnectionClosed, OSError):
            if attempt == attempts - 1:
                raise
            await trio.sleep(0.05)
        else:
            assert isinstance(answer, str)
            return int(answer.split()[0])
    raise AssertionError("unreachable")


async def pids_seen(url: str, wanted: int, attempts: int = 60) -> set[int]:
    """Connect until *wanted* distinct workers answered (kernel hashing is random)."""
    pids: set[int] = set()
    for _ in range(attempts):
        pids.add(await pid_of_worker(url))
        if len(pids) >= wanted:
            break
    return pids


@needs_reuse_port
async def test_runner_serves_from_every_worker_and_restarts_a_dead_one(
    nursery: trio.Nursery,
) -> None:
    runner = await start_runner(
        nursery, "tests.workers_app:handler", "--workers", "2", "--port", "0"
    )
    port = int((await runner.read_until(r"on ws://127\.0\.0\.1:(\d+)/ with 2 workers")).group(1))
    url = f"ws://{HOST}:{port}/"
    original = await pids_seen(url, 2)
    assert len(original) == 2

    # A client of the worker that is about to die: it sees the connection
    # drop, reconnects, and the surviving worker serves it.
    victim = min(original)
    async with trio_ws.open_websocket_url(url) as ws:
        for _ in range(60):
            await ws.send_message("who")
            if int(str(await ws.get_message()).split()[0]) == victim:
                break
            await ws.aclose()
            ws = await trio_ws.connect_websocket_url(nursery, url)
        os.kill(victim, signal.SIGKILL)
        with trio.fail_after(10), pytest.raises(trio_ws.ConnectionClosed):
            await ws.get_message()
    assert await pid_of_worker(url) == max(original)

    await runner.read_until(r"worker \d exited with -9; restarting in 0\.5 s")
    await runner.read_until(r"(?s)(is serving.*){3}")  # two at the start, one restarted
    now = await pids_seen(url, 2)
    assert len(now) == 2 and max(original) in now and victim not in now

    # The same slot dying again soon after waits twice as long.
    os.kill(min(now - original), signal.SIGKILL)
    await runner.read_until(r"worker \d exited with -9; restarting in 1\.0 s")

    runner.process.send_signal(signal.SIGTERM)
    with trio.fail_after(20):
        assert await runner.process.wait() == 0


@needs_reuse_port
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_runner_shuts_down_gracefully(nursery: trio.Nursery, signum: int) -> None:
    runner = await start_runner(
        nursery,
        "tests.workers_app:handler",
        "--workers",
        "2",
        "--port",
        "0",
        "--shutdown-timeout",
        "1",
    )
    port = int((await runner.read_until(r"ws://127\.0\.0\.1:(\d+)/")).group(1))
    # The /slow handler sleeps 60 s after its connection closes: only the
    # shutdown timeout lets its worker exit.
    async with (
        trio_ws.open_websocket_url(f"ws://{HOST}:{port}/slow") as slow,
        trio_ws.open_websocket_url(f"ws://{HOST}:{port}/") as plain,
    ):
        for ws in (slow, plain):
            await ws.send_message("hi")
            await ws.get_message()
        runner.process.send_signal(signum)
        for ws in (slow, plain):
            with trio.fail_after(10), pytest.raises(trio_ws.ConnectionClosed) as info:
                await ws.get_message()
            assert info.value.reason.code == 1001
    with trio.fail_after(20):
        assert await runner.process.wait() == 0
    await runner.read_until("all workers stopped")
    assert "restarting" not in runner.output.decode()


async def test_runner_rejects_a_bad_handler_spec(nursery: trio.Nursery) -> None:
    runner = await start_runner(nursery, "tests.workers_app:missing", "--workers", "2")
    with trio.fail_after(20):
        assert await runner.process.wait() != 0
    await runner.read_until("has no attribute 'missing'")


async def test_runner_exits_1_when_no_worker_can_start(nursery: trio.Nursery) -> None:
    runner = await start_runner(nursery, "tests.workers_app:fails_to_start", "--workers", "2")
    with trio.fail_after(30):
        assert await runner.process.wait() == 1
    await runner.read_until("failed to start; stopping")
    assert "RuntimeError: no database" in runner.output.decode()
    assert "serving tests.workers_app" not in runner.output.decode()


@needs_reuse_port
@pytest.mark.parametrize("twice", ["ctrl-c to the group", "sigterm twice"])
async def test_runner_exits_0_when_signals_arrive_twice(nursery: trio.Nursery, twice: str) -> None:
    # Ctrl-C reaches the runner and every worker, and the runner then sends
    # each worker SIGTERM: two signals per worker. An impatient operator
    # signals the runner twice. A signal left pending would be delivered
    # again to Python's default handler once the receiver closes.
    runner = await start_runner(
        nursery, "tests.workers_app:handler", "--workers", "2", "--port", "0"
    )
    port = int((await runner.read_until(r"ws://127\.0\.0\.1:(\d+)/")).group(1))
    async with trio_ws.open_websocket_url(f"ws://{HOST}:{port}/") as ws:
        await ws.send_message("hi")
        await ws.get_message()
        if twice == "ctrl-c to the group":
            os.killpg(runner.process.pid, signal.SIGINT)
        else:
            runner.process.send_signal(signal.SIGTERM)
            await runner.read_until("got SIGTERM")
            runner.process.send_signal(signal.SIGTERM)
        with trio.fail_after(10), pytest.raises(trio_ws.ConnectionClosed):
            await ws.get_message()
    with trio.fail_after(20):
        assert await runner.process.wait() == 0
    await runner.read_until("all workers stopped")
    assert "Traceback" not in runner.output.decode()
