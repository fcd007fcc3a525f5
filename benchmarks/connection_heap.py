"""Where a trio_ws server connection's Python heap goes, by traceback.

A trio_ws echo server runs in this process under :mod:`tracemalloc`; a
client process (``connections.py --child trio_ws --measure hold``) opens
``--connections`` connections, each echoes one 16-byte message ("idle"),
then ten JSON messages of about 2 KiB ("traffic"). Snapshots taken before,
at idle and after traffic are compared, and the growth is printed per
connection, grouped by the allocating traceback (``--frames`` deep), largest
first. This is the Python heap only (no allocator slack, no kernel socket
buffers, no zlib state, which tracemalloc does not see): it shows what to
cut, while ``connections.py --measures hold`` gives the RSS. Not a test::

    python benchmarks/connection_heap.py --connections 1000
    python benchmarks/connection_heap.py --connections 1000 --no-compression
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_peers"))

import trio_ws  # noqa: E402


async def echo(request: trio_ws.WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        async for message in ws:
            await ws.send_message(message)
    except trio_ws.ConnectionClosed:
        pass


def report(
    title: str, after: tracemalloc.Snapshot, before: tracemalloc.Snapshot, args: Any
) -> None:
    n = args.connections
    stats = after.compare_to(before, "traceback")
    total = sum(stat.size_diff for stat in stats)
    print(f"\n== {title}: {total / n / 1024:.2f} KiB per connection (Python heap) ==")
    if args.ours:
        print_ours(stats, n)
        return
    shown = 0
    for stat in stats:
        if stat.size_diff < n * args.min_bytes:
            continue
        shown += 1
        if shown > args.top:
            break
        count = stat.count_diff / n
        where = " < ".join(short(frame) for frame in list(stat.traceback)[::-1][: args.frames])
        print(f"{stat.size_diff / n:7.0f} B {count:5.2f} blocks  {where}")


def print_ours(stats: list[tracemalloc.StatisticDiff], n: int) -> None:
    """The growth grouped by the most recent frame in trio_ws: which of our
    lines holds (directly or through trio) how much."""
    totals: dict[str, list[float]] = {}
    for stat in stats:
        frames = list(stat.traceback)[::-1]
        ours = next((f for f in frames if "/trio_ws/" in f.filename), frames[0])
        row = totals.setdefault(short(ours), [0, 0])
        row[0] += stat.size_diff / n
        row[1] += stat.count_diff / n
    for where, (size, count) in sorted(totals.items(), key=lambda kv: -kv[1][0]):
        if size >= 8:
            print(f"{size:7.0f} B {count:5.2f} blocks  {where}")


def short(frame: tracemalloc.Frame) -> str:
    """``module.py:line``, with trio's and our paths cut to what matters."""
    name = frame.filename
    for marker in ("/site-packages/", "/trio_ws/", "/benchmarks/"):
        if marker in name:
            name = name.split(marker, 1)[1]
            break
    return f"{name}:{frame.lineno}"


async def main(args: argparse.Namespace) -> None:
    options: dict[str, Any] = {"max_message_size": 1024 * 1024}
    if args.no_compression:
        options["compression"] = None
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: trio_ws.serve_websocket(
                echo, "127.0.0.1", 0, None, task_status=task_status, **options
            )
        )
        params = {
            "connections": args.connections,
            "inflight": 100,
            "probes": 50,
            "timeout": 300,
            "compress": not args.no_compression,
        }
        argv = [sys.executable, str(HERE / "connections.py"), "--child", "trio_ws"]
        argv += ["--port", str(server.port), "--measure", "hold", "--params", json.dumps(params)]
        child = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE / "_peers"
        )
        assert child.stdin is not None and child.stdout is not None
        stdout, stdin = child.stdout, child.stdin

        async def expect(tag: str) -> None:
            while True:
                line = await trio.to_thread.run_sync(stdout.readline)
                if not line:
                    raise RuntimeError(f"client exited before {tag}")
                if line.startswith(tag):
                    return

        def tell() -> None:
            stdin.write("go\n")
            stdin.flush()

        async def snapshot() -> tracemalloc.Snapshot:
            await trio.sleep(0.5)  # let the last echoes settle
            gc.collect()
            return tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )

        await expect("BASELINE")
        base = await snapshot()
        tell()
        await expect("IDLE")
        idle = await snapshot()
        tell()
        await expect("TRAFFIC")
        busy = await snapshot()
        tell()
        await expect("RESULT")
        child.wait()
        kind = "compression off" if args.no_compression else "defaults"
        report(f"idle, {kind}", idle, base, args)
        report(f"after traffic, {kind}", busy, base, args)
        report(f"traffic minus idle, {kind}", busy, idle, args)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--no-compression", action="store_true")
    parser.add_argument("--frames", type=int, default=6, help="traceback depth shown")
    parser.add_argument("--top", type=int, default=25, help="groups shown")
    parser.add_argument("--ours", action="store_true", help="group by our most recent line")
    parser.add_argument("--min-bytes", type=float, default=8, help="per connection, to show")
    arguments = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    tracemalloc.start(arguments.frames)
    trio.run(main, arguments)
