"""Rooms across workers through Redis: one publisher, many subscribers in one room.

Serves ``examples/rooms.py`` with the runner (``python -m trio_ws serve
examples.rooms:handler``) in each mode:

- ``local``: one worker, no Redis: the in-process broadcast figure;
- ``pubsub`` and ``streams``: two workers sharing the port, rooms joined
  through a redis-server that this script starts (random port, no
  persistence).

Subscribers are the minimal asyncio clients of ``benchmarks/broadcast.py``
(several processes, no compression), all in room ``lobby``; they spread
over the workers by the kernel's SO_REUSEPORT hashing. One trio_ws client
publishes for ``--seconds`` with at most ``--window`` messages in flight
(it is a member of the room too, and counts its own messages coming
back). Each message carries ``time.monotonic()`` (system-wide on Linux), so
subscribers measure delivery latency: publisher -> worker -> Redis ->
every worker -> subscriber.

Each mode runs at every ``--rates`` value: 0 publishes as fast as the
window allows (the throughput figure), a modest rate measures latency
below saturation. Reported per run: messages
published, messages delivered per second (all subscribers together, first
publish to last arrival), p50/p99 latency, and sequence gaps seen. Bounded: fixed time,
every wait has a timeout, children are killed on exit. Run it alone::

    flock /tmp/trio_ws-bench.lock python benchmarks/redis_rooms.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

import trio_ws

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from broadcast import Child, message, raise_fd_limit  # noqa: E402

MODES = ("local", "pubsub", "streams")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            directory,
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16) == b"+PONG\r\n":
                    return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def start_runner(mode: str, url: str) -> tuple[subprocess.Popen[str], int]:
    workers = "1" if mode == "local" else "2"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trio_ws",
            "serve",
            "examples.rooms:handler",
            "--workers",
            workers,
            "--port",
            "0",
            "--shutdown-timeout",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": url, "REDIS_MODE": mode},
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # "serving ... on ws://127.0.0.1:PORT/ ..."
    if "ws://" not in line:
        process.kill()
        raise RuntimeError(f"the runner did not start: {line!r}")
    return process, int(line.split("ws://127.0.0.1:")[1].split("/")[0])


async def publish(port: int, seconds: float, size: int, rate: float, window: int) -> int:
    """Send numbered messages to room lobby for *seconds*; count their echoes.

    At most *window* messages are in flight (sent, not yet back to the
    publisher, which is a member too), so the figures measure delivery,
    not an ever-growing queue. *rate* 0 sends as fast as the window allows;
    otherwise *rate* messages a second, to measure latency below saturation.
    """
    url = f"ws://127.0.0.1:{port}/"
    async with trio_ws.open_websocket_url(url, compression=None, ping_interval=None) as ws:
        echoed = 0
        moved = trio.Event()
        async with trio.open_nursery() as nursery:

            async def count_echoes() -> None:
                nonlocal echoed, moved
                async for _ in ws:
                    echoed += 1
                    moved.set()
                    moved = trio.Event()

            nursery.start_soon(count_echoes)
            seq, start = 0, time.monotonic()
            while (now := time.monotonic()) < start + seconds:
                if rate and seq > (now - start) * rate:
                    await trio.sleep(1 / rate)
                elif seq - echoed >= window:
                    with trio.move_on_after(1):
                        await moved.wait()
                else:
                    await ws.send_message(message(seq, size))
                    seq += 1
            with trio.move_on_after(10):
                while echoed < seq:
                    await moved.wait()
            nursery.cancel_scope.cancel()
    return seq


def run_one(mode: str, url: str, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    runner, port = start_runner(mode, url)
    clients: list[Child] = []
    try:
        per_client = args.subscribers // args.clients
        clients = [Child("subscribe", str(port), str(per_client), "0") for _ in range(args.clients)]
        for client in clients:
            assert client.line(180) == "ready"
        time.sleep(1)  # let the workers settle after the handshakes
        start = time.monotonic()
        published = trio.run(publish, port, args.seconds, args.size, rate, args.window)
        results = [json.loads(client.line(args.seconds + 120)) for client in clients]
    finally:
        for client in clients:
            client.kill()
        runner.terminate()
        try:
            runner.wait(15)
        except subprocess.TimeoutExpired:
            runner.kill()
    received = sum(r["received"] for r in results)
    last = max(r["last"] for r in results)
    latencies = sorted(x for r in results for x in r["latencies"])

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else 0.0

    return {
        "mode": mode,
        "rate": rate or "max",
        "workers": 1 if mode == "local" else 2,
        "subscribers": per_client * args.clients,
        "published": published,
        "delivered_per_s": received / max(1e-9, last - start),
        "received_per_subscriber": received / (per_client * args.clients),
        "gaps": sum(r["gaps"] for r in results),
        "closes": {k: v for r in results for k, v in r["closes"].items()},
        "p50_ms": percentile(0.50) * 1000,
        "p99_ms": percentile(0.99) * 1000,
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| mode | workers | subscribers | offered msg/s | published | delivered msg/s "
        "| per subscriber | p50 ms | p99 ms | gaps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['workers']} | {r['subscribers']} | {r['rate']} | {r['published']} "
            f"| {r['delivered_per_s']:,.0f} | {r['received_per_subscriber']:,.0f} "
            f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['gaps']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4, help="subscriber processes")
    parser.add_argument("--seconds", type=float, default=5.0, help="publishing time per mode")
    parser.add_argument("--size", type=int, default=64, help="message size in bytes")
    parser.add_argument("--window", type=int, default=16, help="messages in flight at most")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument(
        "--rates",
        type=float,
        nargs="+",
        default=[0, 10],
        help="publishing rates, msg/s (0: as fast as possible, for throughput)",
    )
    args = parser.parse_args()
    raise_fd_limit(args.subscribers + 1000)  # inherited by the runner and its workers
    with tempfile.TemporaryDirectory() as directory:
        redis, url = start_redis(directory)
        try:
            rows = []
            for rate in args.rates:
                for mode in args.modes:
                    row = run_one(mode, url, rate, args)
                    print(json.dumps(row), flush=True)
                    rows.append(row)
        finally:
            redis.kill()
            redis.wait()
    print(table(rows))


if __name__ == "__main__":
    main()
