"""What a connection costs: setup rate, memory, latency with many open.

trio_ws next to trio-websocket and websockets' asyncio layer, each with its
own defaults (permessage-deflate offered where the library offers it, 1 MiB
message limit, keepalive as shipped). For every library and measure a fresh
echo server (``benchmarks/_peers/<lib>_peer.py server``) and a fresh client
(this script with ``--child``) run as two processes over 127.0.0.1; the
client uses the same library as the server. Not a test: run it by hand,
alone on the machine if you can::

    flock /tmp/trio_ws-bench.lock python benchmarks/connections.py
    flock /tmp/trio_ws-bench.lock python benchmarks/connections.py --quick
    python benchmarks/connections.py --markdown benchmarks/RESULTS.md
    python benchmarks/connections.py --no-compression --measures hold

Measures (every loop is bounded in count and in time):

* **sequential**: connections one after another, each opened, one 16-byte
  message echoed, closed (closing handshake included); per second.
* **concurrent**: 50 tasks doing the same at once; connections per second.
  For both, each process's CPU time per connection is shown as well (the
  client's from ``time.process_time()`` around the loop, the server's from
  /proc): with two cores, the busier side bounds the concurrent rate.
* **hold**: a probe connection measures its round trip (16 bytes, median of
  500) with no other connection open; then 10,000 connections are opened,
  100 handshakes in flight (the time to open them all), each echoes one
  message (server RSS growth per connection: "idle"), the probe measures
  again, then each connection echoes 10 JSON messages of about 2 KiB
  ("after traffic", RSS growth per connection again). Then all close.

``--libs floor-trio floor-asyncio`` adds two hand-written WebSocket peers
(``_peers/_floor.py``: fixed key, no parsing, no checks) that show what a
connection costs on each event loop alone, the ceiling for any library.

The benchmark raises its own RLIMIT_NOFILE (the library never does); the
hold measure needs about 10,100 file descriptors in each process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEERS = HERE / "_peers"
MiB = 1024 * 1024
SMALL = b"0123456789abcdef"
#: library name -> (peer script, event loop, compression on by default)
LIBRARIES = {
    "trio_ws": ("trio_ws_peer.py", "trio", True),
    "trio-websocket": ("trio_websocket_peer.py", "trio", False),
    "websockets.asyncio": ("websockets_asyncio_peer.py", "asyncio", True),
    # What the event loops allow: hand-written WebSocket, no library (not run
    # unless named in --libs).
    "floor-trio": ("trio_floor_peer.py", "trio", False),
    "floor-asyncio": ("asyncio_floor_peer.py", "asyncio", False),
}
DEFAULT_LIBS = ["trio_ws", "trio-websocket", "websockets.asyncio"]
SECTION_START = "<!-- connections.py: start -->"
SECTION_END = "<!-- connections.py: end -->"


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def traffic_messages() -> list[str]:
    """Ten different JSON texts of about 2 KiB: compressible, not trivially."""
    docs = []
    for seed in range(10):
        items = [
            {"id": seed * 1000 + i, "user": f"user{(seed * 7 + i) % 13}", "score": i * 1.5}
            for i in range(40)
        ]
        docs.append(json.dumps({"page": seed, "items": items})[:2048])
    return docs


# -- the client child --------------------------------------------------------


class Backend:
    """The few concurrency primitives the client loops need, for one event loop."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "trio":
            import trio

            self.lib: Any = trio
        else:
            self.lib = asyncio

    def semaphore(self, value: int) -> Any:
        return self.lib.Semaphore(value)

    def event(self) -> Any:
        return self.lib.Event()

    async def gather(self, count: int, fn: Callable[[int], Awaitable[None]]) -> None:
        """Run ``fn(i)`` for i in range(count) concurrently; wait for all."""
        if self.name == "trio":
            async with self.lib.open_nursery() as nursery:
                for i in range(count):
                    nursery.start_soon(fn, i)
        else:
            await asyncio.gather(*(fn(i) for i in range(count)))

    async def wait_for_parent(self) -> None:
        """Block (in a thread) until the parent writes a line on stdin."""
        if self.name == "trio":
            await self.lib.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        else:
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    def run(self, main: Callable[[], Awaitable[None]]) -> None:
        if self.name == "trio":
            self.lib.run(main)
        else:
            asyncio.run(main())  # type: ignore[arg-type]


def emit(tag: str, payload: object) -> None:
    print(tag, json.dumps(payload), flush=True)


async def echo(send: Any, recv: Any, message: Any) -> None:
    await send(message)
    got = await recv()
    if got != message:
        raise AssertionError("echo mismatch")


async def probe_rtt(send: Any, recv: Any, count: int) -> dict[str, float]:
    for _ in range(50):
        await echo(send, recv, SMALL)
    samples = []
    for _ in range(count):
        start = time.perf_counter_ns()
        await send(SMALL)
        await recv()
        samples.append(time.perf_counter_ns() - start)
    samples.sort()
    return {
        "median_us": statistics.median(samples) / 1000,
        "p99_us": samples[min(len(samples) - 1, len(samples) * 99 // 100)] / 1000,
    }


async def sequential(connect: Any, port: int, p: dict[str, Any], be: Backend) -> dict[str, Any]:
    for _ in range(10):  # warm-up
        async with connect(port) as (send, recv):
            await echo(send, recv, SMALL)
    count = 0
    start, cpu = time.perf_counter(), time.process_time()
    while count < p["count"] and time.perf_counter() - start < p["seconds"]:
        async with connect(port) as (send, recv):
            await echo(send, recv, SMALL)
        count += 1
    return rate(count, start, cpu)


def rate(count: int, start: float, cpu: float) -> dict[str, Any]:
    """Connections per second, and this process's CPU time per connection."""
    return {
        "conn_per_s": count / (time.perf_counter() - start),
        "connections": count,
        "client_cpu_us": (time.process_time() - cpu) / count * 1e6,
    }


async def concurrent(connect: Any, port: int, p: dict[str, Any], be: Backend) -> dict[str, Any]:
    count = 0
    start, cpu = time.perf_counter(), time.process_time()

    async def opener(_: int) -> None:
        nonlocal count
        while count < p["count"] and time.perf_counter() - start < p["seconds"]:
            count += 1
            async with connect(port) as (send, recv):
                await echo(send, recv, SMALL)

    await be.gather(p["tasks"], opener)
    return rate(count, start, cpu)


async def hold(connect: Any, port: int, p: dict[str, Any], be: Backend) -> dict[str, Any]:
    n, result = p["connections"], {}
    traffic = traffic_messages()
    async with connect(port) as (probe_send, probe_recv):
        result["probe_0"] = await probe_rtt(probe_send, probe_recv, p["probes"])
        emit("BASELINE", {})
        await be.wait_for_parent()
        handshakes = be.semaphore(p["inflight"])
        opened, echoed, trafficked = be.event(), be.event(), be.event()
        go_traffic, release = be.event(), be.event()
        counts = [0, 0, 0]
        start = time.perf_counter()

        def step(which: int, event: Any) -> None:
            counts[which] += 1
            if counts[which] == n:
                event.set()

        async def one(_: int) -> None:
            async with handshakes:
                cm = connect(port)
                send, recv = await cm.__aenter__()
            try:
                step(0, opened)
                await opened.wait()
                await echo(send, recv, SMALL)
                step(1, echoed)
                await go_traffic.wait()
                for message in traffic:
                    await echo(send, recv, message)
                step(2, trafficked)
                await release.wait()
            finally:
                await cm.__aexit__(None, None, None)

        async def conductor() -> None:
            await opened.wait()
            result["open_seconds"] = time.perf_counter() - start
            await echoed.wait()
            emit("IDLE", {})
            await be.wait_for_parent()
            result["probe_n"] = await probe_rtt(probe_send, probe_recv, p["probes"])
            go_traffic.set()
            await trafficked.wait()
            emit("TRAFFIC", {})
            await be.wait_for_parent()
            release.set()

        async def both(i: int) -> None:
            if i == n:
                await conductor()
            else:
                await one(i)

        await be.gather(n + 1, both)
    return result


MEASURES = {"sequential": sequential, "concurrent": concurrent, "hold": hold}


def child(args: argparse.Namespace) -> None:
    raise_fd_limit()
    script, loop, _ = LIBRARIES[args.child]
    sys.path.insert(0, str(PEERS))
    spec = importlib.util.spec_from_file_location("peer", PEERS / script)
    assert spec is not None and spec.loader is not None
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    be = Backend(loop)
    params = json.loads(args.params)
    compress = LIBRARIES[args.child][2] and params["compress"]

    def connect(port: int) -> Any:
        return peer.connect(port, compress, MiB)

    async def main() -> None:
        measure = MEASURES[args.measure](connect, args.port, params, be)
        if loop == "trio":
            with be.lib.fail_after(params["timeout"]):
                emit("RESULT", await measure)
        else:
            emit("RESULT", await asyncio.wait_for(measure, params["timeout"]))

    be.run(main)
    sys.stdout.flush()
    os._exit(0)  # a thread may still wait on stdin


# -- the parent --------------------------------------------------------------


class Process:
    """A child whose stdout lines ("TAG json") arrive on a list, read by a thread."""

    def __init__(self, argv: list[str]) -> None:
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=PEERS,
        )
        self.lines: list[tuple[str, Any]] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            tag, _, rest = line.strip().partition(" ")
            with self.cond:
                self.lines.append((tag, json.loads(rest) if rest else None))
                self.cond.notify_all()
        with self.cond:
            self.lines.append(("EXIT", None))
            self.cond.notify_all()

    def expect(self, tag: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i, (got, payload) in enumerate(self.lines):
                    if got == tag:
                        del self.lines[: i + 1]
                        return payload
                    if got == "EXIT":
                        err = self.popen.stderr.read() if self.popen.stderr else ""
                        raise RuntimeError(f"child exited before {tag}: {err[-2000:]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {tag} within {timeout} s")
                self.cond.wait(left)

    def tell(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write("go\n")
        self.popen.stdin.flush()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process *pid*, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise LookupError("VmRSS")


def run_measure(lib: str, measure: str, params: dict[str, Any]) -> dict[str, Any]:
    script, _, compress = LIBRARIES[lib]
    compress = compress and params["compress"]
    server_argv = [sys.executable, str(PEERS / script), "server", "--max-size", str(MiB)]
    server = Process(server_argv + (["--compress"] if compress else []))
    client = None
    try:
        port = server.expect("PORT", 30)
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", lib]
        argv += ["--port", str(port), "--measure", measure, "--params", json.dumps(params)]
        client = Process(argv)
        limit = params["timeout"] + 10
        if measure != "hold":
            # The server idles before and after: its CPU time over the whole
            # client run (warm-up included, ~1 %) is the cost of the measure.
            before = cpu_seconds(server.popen.pid)
            result = dict(client.expect("RESULT", limit))
            server_cpu = cpu_seconds(server.popen.pid) - before
            result["server_cpu_us"] = server_cpu / result["connections"] * 1e6
            return result
        n = params["connections"]
        client.expect("BASELINE", limit)
        time.sleep(0.5)
        base = rss_kib(server.popen.pid)
        client.tell()
        client.expect("IDLE", limit)
        time.sleep(0.5)
        idle = rss_kib(server.popen.pid)
        client.tell()
        client.expect("TRAFFIC", limit)
        time.sleep(0.5)
        busy = rss_kib(server.popen.pid)
        client.tell()
        result = dict(client.expect("RESULT", limit))
        result["idle_kib"] = (idle - base) / n
        result["traffic_kib"] = (busy - base) / n
        return result
    finally:
        if client is not None:
            client.stop()
        server.stop()


def rows(results: dict[str, dict[str, dict[str, Any]]], n: int) -> list[list[str]]:
    def get(lib: str, measure: str, *keys: str) -> float | None:
        value: Any = results.get(lib, {}).get(measure)
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return float(value)

    def cell(value: float | None, digits: int = 0) -> str:
        return "error" if value is None else f"{value:,.{digits}f}"

    spec = [
        ("sequential connections (open, echo one, close) per second ↑", "sequential", 0),
        ("50 tasks opening connections at once, per second ↑", "concurrent", 0),
    ]
    table = []
    for label, measure, digits in spec:
        if not any(measure in results[lib] for lib in results):
            continue  # not run
        table.append([label] + [cell(get(lib, measure, "conn_per_s"), digits) for lib in results])
        for side in ("client", "server"):
            table.append(
                [f"… {side} CPU per connection, µs ↓"]
                + [cell(get(lib, measure, f"{side}_cpu_us")) for lib in results]
            )
    if not any("hold" in results[lib] for lib in results):
        return table
    hold_rows = [
        (f"time to open {n:,} connections (100 handshakes in flight), s ↓", ("open_seconds",), 1),
        ("server RSS per held connection, idle after one echo, KiB ↓", ("idle_kib",), 1),
        ("server RSS per held connection, after 10 echoes of 2 KiB, KiB ↓", ("traffic_kib",), 1),
        ("probe round trip, none other open, median µs ↓", ("probe_0", "median_us"), 0),
        (f"probe round trip, {n:,} open, median µs ↓", ("probe_n", "median_us"), 0),
    ]
    for label, keys, digits in hold_rows:
        table.append([label] + [cell(get(lib, "hold", *keys), digits) for lib in results])
    ratio = []
    for lib in results:
        zero = get(lib, "hold", "probe_0", "median_us")
        many = get(lib, "hold", "probe_n", "median_us")
        ratio.append(f"{many / zero:.2f}x" if zero and many else "error")
    table.append([f"probe round trip, {n:,} open ÷ none open ↓", *ratio])
    return table


def markdown(header: list[str], table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    return "\n".join(lines)


def write_section(path: Path, text: str, uncompressed: bool) -> None:
    """Replace this script's section (one per compression setting) in *path*."""
    start, end = SECTION_START, SECTION_END
    if uncompressed:
        start, end = start.replace("start", "off, start"), end.replace("end", "off, end")
    old = path.read_text() if path.exists() else ""
    block = f"{start}\n{text}\n{end}"
    if start in old and end in old:
        head, rest = old.split(start, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(new)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--libs", nargs="+", choices=list(LIBRARIES), default=DEFAULT_LIBS)
    parser.add_argument("--measures", nargs="+", choices=list(MEASURES), default=list(MEASURES))
    parser.add_argument("--connections", type=int, default=10_000, help="held by 'hold'")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    parser.add_argument("--markdown", type=Path, help="write a section into this file")
    parser.add_argument(
        "--no-compression", action="store_true", help="turn permessage-deflate off everywhere"
    )
    parser.add_argument("--child", choices=list(LIBRARIES), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=list(MEASURES), help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    raise_fd_limit()
    n = 300 if args.quick else args.connections
    params = {
        "sequential": {"count": 100 if args.quick else 1000, "seconds": 20, "timeout": 60},
        "concurrent": {"tasks": 50, "count": 300 if args.quick else 2000, "seconds": 20},
        "hold": {"connections": n, "inflight": 100, "probes": 500, "timeout": 300},
    }
    params["concurrent"]["timeout"] = 60
    for values in params.values():
        values["compress"] = not args.no_compression
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    started = time.monotonic()
    results: dict[str, dict[str, dict[str, Any]]] = {lib: {} for lib in args.libs}
    for measure in args.measures:
        for lib in args.libs:
            try:
                results[lib][measure] = run_measure(lib, measure, params[measure])
            except (RuntimeError, TimeoutError) as exc:
                print(f"{lib} {measure}: {exc}", file=sys.stderr)
            print(f"{lib} {measure}: {results[lib].get(measure)}", file=sys.stderr, flush=True)
    table = rows(results, n)
    header = ["measure", *args.libs]
    text = markdown(header, table)
    end_load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    versions = ", ".join(
        f"{name} {version(name)}" for name in ("trio", "wsproto", "trio-websocket", "websockets")
    )
    note = (
        f"* Date: {datetime.date.today()}; python {platform.python_version()}, {versions}\n"
        f"* Machine: {os.cpu_count()} CPUs, load average {load} at start, {end_load} at end;"
        f" {time.monotonic() - started:.0f} s in all; one run\n"
        f"* Command: `python benchmarks/connections.py{' --quick' if args.quick else ''}"
        f"{' --no-compression' if args.no_compression else ''}"
        f" --connections {args.connections} --measures {' '.join(args.measures)}`"
    )
    print(text)
    print(note)
    if args.markdown:
        title = "What a connection costs" + (", compression off" if args.no_compression else "")
        write_section(args.markdown, f"## {title}\n\n{note}\n\n{text}", args.no_compression)
    return 0


def version(name: str) -> str:
    import importlib.metadata

    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version(name)
    return "?"


if __name__ == "__main__":
    sys.exit(main())
