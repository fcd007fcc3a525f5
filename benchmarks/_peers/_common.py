"""Plumbing shared by the peer workers that ``benchmarks/peers.py`` starts.

Every library has one worker script in this folder, run as::

    python benchmarks/_peers/<lib>_peer.py server [--compress] [--profile PATH]
    python benchmarks/_peers/<lib>_peer.py client --port P --measure M --params JSON

A worker only supplies how to serve an echo and how to open a connection;
the measuring loops live here, once for Trio and once for asyncio, so every
library runs exactly the same client code. Workers talk to the parent with
one line per event on stdout (``PORT 1234``, ``RESULT {...}``) and, for the
memory measure, wait for a line on stdin between steps.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import ctypes
import json
import os
import random
import resource
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

KiB = 1024
MiB = 1024 * KiB

SMALL = b"0123456789abcdef"  # 16 bytes
#: Connections opened and closed before the memory baseline is taken, so that
#: lazily created objects (caches, code paths, thread pools) are not counted.
MEMORY_WARMUP = 20

Send = Callable[[Any], Awaitable[None]]
Recv = Callable[[], Awaitable[Any]]
Connect = Callable[[int, bool, int], AbstractAsyncContextManager[tuple[Send, Recv]]]


# -- process setup -----------------------------------------------------------


def setup_process() -> None:
    """Die with the parent, and allow thousands of sockets."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["server", "client"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--compress", action="store_true", help="permessage-deflate on")
    parser.add_argument("--max-size", type=int, default=4 * MiB)
    parser.add_argument("--lifetime", type=float, default=900.0, help="server exits after this")
    parser.add_argument("--profile", help="write cProfile stats here on exit")
    parser.add_argument("--measure", choices=sorted(TRIO_MEASURES))
    parser.add_argument("--params", default="{}")
    args = parser.parse_args(argv)
    args.params = json.loads(args.params)
    return args


def emit(tag: str, payload: object) -> None:
    print(tag, json.dumps(payload), flush=True)


def rss_kib(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise LookupError("VmRSS")


def profiled(path: str | None, run: Callable[[], object]) -> None:
    if not path:
        run()
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        run()
    finally:
        profile.disable()
        profile.dump_stats(path)


# -- payloads ----------------------------------------------------------------


def json_documents(size: int = 64 * KiB, count: int = 8) -> list[str]:
    """*count* different JSON texts of about *size* characters each.

    Records of ids, names, tags, numbers and timestamps drawn from small
    vocabularies: compressible like typical API traffic, not trivially so.
    """
    names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan"]
    tags = ["red", "green", "blue", "urgent", "archived", "beta", "internal", "public"]
    docs = []
    for seed in range(count):
        rng = random.Random(seed)
        records: list[dict[str, object]] = []
        text = ""
        while len(text) < size:
            records.append(
                {
                    "id": rng.randrange(10**9),
                    "user": rng.choice(names),
                    "email": f"{rng.choice(names)}{rng.randrange(1000)}@example.org",
                    "score": round(rng.random() * 100, 3),
                    "active": rng.random() < 0.5,
                    "tags": rng.sample(tags, 3),
                    "created": 1_700_000_000 + rng.randrange(10**7),
                }
            )
            if len(records) % 16 == 0:
                text = json.dumps({"page": seed, "items": records})
        docs.append(json.dumps({"page": seed, "items": records})[:size])
    return docs


def payloads(params: dict[str, Any]) -> list[Any]:
    kind = params["kind"]
    if kind == "small":
        return [SMALL]
    if kind == "big":
        return [random.Random(1).randbytes(params["size"])]
    if kind == "json":
        return list(json_documents(params.get("size", 64 * KiB)))
    raise ValueError(kind)


def stream_result(count: int, nbytes: int, seconds: float) -> dict[str, float]:
    return {
        "messages": count,
        "seconds": seconds,
        "msg_per_s": count / seconds,
        "mib_per_s": nbytes / seconds / MiB,
    }


def latency_result(samples_ns: list[int]) -> dict[str, float]:
    samples_ns.sort()
    p99 = samples_ns[max(0, -(-99 * len(samples_ns) // 100) - 1)]
    return {
        "samples": len(samples_ns),
        "median_us": statistics.median(samples_ns) / 1000,
        "p99_us": p99 / 1000,
    }


def check_echo(sent: object, got: object) -> None:
    if sent != got:
        raise AssertionError(f"echo mismatch: sent {len(sent)} got {len(got)}")  # type: ignore[arg-type]


# -- Trio --------------------------------------------------------------------


def run_trio_server(args: argparse.Namespace, serve: Callable[..., Awaitable[None]]) -> None:
    """Run ``serve(port, compress, max_size, task_status=...)`` until SIGTERM.

    *serve* reports the listening port with ``task_status.started(port)``.
    """
    import trio

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                port = await nursery.start(serve, args.port, args.compress, args.max_size)
                emit("PORT", port)
                with trio.move_on_after(args.lifetime):
                    async for _ in signals:
                        break
                nursery.cancel_scope.cancel()

    profiled(args.profile, lambda: trio.run(main))


async def _trio_pipelined(
    send: Send, recv: Recv, messages: list[Any], inflight: int, window: float
) -> tuple[int, int, float]:
    """Keep *inflight* messages outstanding for *window* seconds, then drain."""
    import trio

    permits = trio.Semaphore(inflight)
    received = nbytes = 0

    async def receiver() -> None:
        nonlocal received, nbytes
        while True:
            message = await recv()
            nbytes += len(message)
            received += 1
            permits.release()

    sent = 0
    count = len(messages)
    start = time.perf_counter()
    deadline = start + window
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        while time.perf_counter() < deadline:
            await permits.acquire()
            await send(messages[sent % count])
            sent += 1
        for _ in range(inflight):  # every answer is back once all permits are
            await permits.acquire()
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    if received != sent:
        raise AssertionError(f"sent {sent}, received {received}")
    return received, nbytes, elapsed


async def trio_stream(connect: Connect, args: argparse.Namespace) -> dict[str, Any]:
    p = args.params
    messages = payloads(p)
    async with connect(args.port, args.compress, args.max_size) as (send, recv):
        await send(messages[0])
        check_echo(messages[0], await recv())
        await _trio_pipelined(send, recv, messages, p["inflight"], p["warmup"])
        return stream_result(
            *await _trio_pipelined(send, recv, messages, p["inflight"], p["window"])
        )


async def trio_latency(connect: Connect, args: argparse.Namespace) -> dict[str, Any]:
    p = args.params
    samples: list[int] = []
    clock = time.perf_counter_ns
    async with connect(args.port, args.compress, args.max_size) as (send, recv):
        for _ in range(p["warmup"]):
            await send(SMALL)
            check_echo(SMALL, await recv())
        deadline = time.perf_counter() + p["max_seconds"]
        for _ in range(p["count"]):
            start = clock()
            await send(SMALL)
            await recv()
            samples.append(clock() - start)
            if time.perf_counter() > deadline:
                break
    return latency_result(samples)


async def trio_setup(connect: Connect, args: argparse.Namespace) -> dict[str, Any]:
    p = args.params
    for _ in range(p["warmup"]):
        async with connect(args.port, args.compress, args.max_size):
            pass
    count = 0
    start = time.perf_counter()
    deadline = start + p["max_seconds"]
    while count < p["count"] and time.perf_counter() < deadline:
        async with connect(args.port, args.compress, args.max_size):
            pass
        count += 1
    elapsed = time.perf_counter() - start
    return {"connections": count, "conn_per_s": count / elapsed}


async def trio_memory(connect: Connect, args: argparse.Namespace) -> dict[str, Any]:
    import trio

    async def wait_for_parent() -> None:
        await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)

    n = args.params["conns"]
    for _ in range(MEMORY_WARMUP):
        async with connect(args.port, args.compress, args.max_size) as (send, recv):
            await send(SMALL)
            check_echo(SMALL, await recv())
    await trio.to_thread.run_sync(lambda: None)  # start the worker thread now
    before = rss_kib()
    emit("BASELINE", {"client_kib": before})
    await wait_for_parent()
    async with contextlib.AsyncExitStack() as stack:
        pairs = [
            await stack.enter_async_context(connect(args.port, args.compress, args.max_size))
            for _ in range(n)
        ]
        for send, recv in pairs:  # every server handler is now past its first message
            await send(SMALL)
            check_echo(SMALL, await recv())
        after = rss_kib()
        emit("OPENED", {"client_kib": after})
        await wait_for_parent()
    return {"connections": n, "client_kib_per_conn": (after - before) / n}


TRIO_MEASURES: dict[str, Callable[[Connect, argparse.Namespace], Awaitable[dict[str, Any]]]] = {
    "stream": trio_stream,
    "latency": trio_latency,
    "setup": trio_setup,
    "memory": trio_memory,
}


def run_trio_client(args: argparse.Namespace, connect: Connect) -> None:
    import trio

    async def main() -> None:
        try:
            with trio.fail_after(args.params["timeout"]):
                result = await TRIO_MEASURES[args.measure](connect, args)
        except trio.TooSlowError:
            result = {"error": "timeout"}
        emit("RESULT", result)

    profiled(args.profile, lambda: trio.run(main))


def trio_main(serve: Callable[..., Awaitable[None]], connect: Connect) -> None:
    setup_process()
    args = parse_args()
    if args.role == "server":
        run_trio_server(args, serve)
    else:
        run_trio_client(args, connect)


# -- asyncio -----------------------------------------------------------------
# The same loops as above, written with asyncio's primitives.


async def _aio_pipelined(
    send: Send, recv: Recv, messages: list[Any], inflight: int, window: float
) -> tuple[int, int, float]:
    import asyncio

    permits = asyncio.Semaphore(inflight)
    received = nbytes = 0

    async def receiver() -> None:
        nonlocal received, nbytes
        while True:
            message = await recv()
            nbytes += len(message)
            received += 1
            permits.release()

    sent = 0
    count = len(messages)
    start = time.perf_counter()
    deadline = start + window
    task = asyncio.ensure_future(receiver())
    try:
        while time.perf_counter() < deadline:
            await _aio_acquire(permits, task)
            await send(messages[sent % count])
            sent += 1
        for _ in range(inflight):
            await _aio_acquire(permits, task)
        elapsed = time.perf_counter() - start
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if received != sent:
        raise AssertionError(f"sent {sent}, received {received}")
    return received, nbytes, elapsed


async def _aio_acquire(permits: Any, receiver: Any) -> None:
    """Acquire a permit, or raise the receiver's error if it died."""
    import asyncio

    if not permits.locked():
        await permits.acquire()
        return
    acquire = asyncio.ensure_future(permits.acquire())
    await asyncio.wait([acquire, receiver], return_when=asyncio.FIRST_COMPLETED)
    if not acquire.done():
        acquire.cancel()
        receiver.result()  # raises the receiver's exception
        raise AssertionError("receiver stopped")


async def aio_stream(connect: Connect, args: argparse.Namespace) -> dict[str, Any]:
    p = args.params
    messages = payloads(p)
    async with connect(args.port, args.compress, args.max_size) as (send, recv):
        await send(messages[0])
        check_echo(messages[0], await recv())
        await _aio_pipelined(send, recv, messages, p["inflight"], p["warmup"])
        return stream_result(
            *await _aio_pipelined(send, recv, messages, p["inflight"], p["window"])
        )


async def aio_memory(connect: Connect, args: argparse.Namespace) -> dict[str, Any]:
    import asyncio

    loop = asyncio.get_running_loop()

    async def wait_for_parent() -> None:
        await loop.run_in_executor(None, sys.stdin.readline)

    n = args.params["conns"]
    for _ in range(MEMORY_WARMUP):
        async with connect(args.port, args.compress, args.max_size) as (send, recv):
            await send(SMALL)
            check_echo(SMALL, await recv())
    await loop.run_in_executor(None, lambda: None)  # start the executor thread now
    before = rss_kib()
    emit("BASELINE", {"client_kib": before})
    await wait_for_parent()
    async with contextlib.AsyncExitStack() as stack:
        pairs = [
            await stack.enter_async_context(connect(args.port, args.compress, args.max_size))
            for _ in range(n)
        ]
        for send, recv in pairs:
            await send(SMALL)
            check_echo(SMALL, await recv())
        after = rss_kib()
        emit("OPENED", {"client_kib": after})
        await wait_for_parent()
    return {"connections": n, "client_kib_per_conn": (after - before) / n}


# latency and setup have no concurrency: the Trio versions run unchanged.
AIO_MEASURES = {
    "stream": aio_stream,
    "latency": trio_latency,
    "setup": trio_setup,
    "memory": aio_memory,
}


def aio_main(
    serve: Callable[[argparse.Namespace, Callable[[int], None]], Awaitable[None]],
    connect: Connect,
) -> None:
    """*serve(args, started)* serves until cancelled, calling ``started(port)``."""
    import asyncio

    setup_process()
    args = parse_args()

    async def server() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        task = asyncio.ensure_future(serve(args, lambda port: emit("PORT", port)))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), args.lifetime)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def client() -> None:
        try:
            result = await asyncio.wait_for(
                AIO_MEASURES[args.measure](connect, args), args.params["timeout"]
            )
        except asyncio.TimeoutError:
            result = {"error": "timeout"}
        emit("RESULT", result)

    if args.role == "server":
        profiled(args.profile, lambda: asyncio.run(server()))
    else:
        asyncio.run(client())
        # the executor thread may still sit in stdin.readline(); don't wait for it
        sys.stdout.flush()
        os._exit(0)
