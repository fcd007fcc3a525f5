"""One publisher, many subscribers: trio_ws's broadcast() against websockets'.

Each run starts a server process (trio_ws, or websockets' asyncio layer),
opens N subscriber connections from several client processes, and then has
the server publish as fast as it can for a fixed time: ``broadcast()`` to
every open connection, a scheduler pass, again. Each message carries its
sequence number and ``time.monotonic()`` at publishing (system-wide on
Linux), so subscribers measure delivery latency. A fraction of subscribers
may be idle: they complete the handshake and never read again, the slow
consumers. The parent samples the server's RSS meanwhile.

Reported per run: messages delivered per second to the reading subscribers
(all their messages over the time from the first publish to the last
arrival), p50/p99 delivery latency, messages published, what the server did
with slow consumers, and the server's RSS before, at peak and at the end.

Both servers run with their defaults, except that trio_ws's broadcast uses
the SKIP policy here (the default, CLOSE, would end the idle subscribers'
connections, which is the point of it but leaves nothing to measure about
memory). The subscribers are the same minimal asyncio clients for both and
offer no compression, so both servers send plain frames. Bounded: every run
publishes for ``--seconds`` and every wait has a timeout; children are
killed on exit. Run it under the lock, on a machine as quiet as possible::

    flock /tmp/trio_ws-bench.lock python benchmarks/broadcast.py
    flock /tmp/trio_ws-bench.lock python benchmarks/broadcast.py --subscribers 1000 --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MiB = 2**20
SERVERS = ("trio_ws", "websockets")
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
SAMPLES_PER_CLIENT = 20_000  # latencies each client process reports


def raise_fd_limit(needed: int) -> None:
    """The benchmark, never the library, raises the open-file limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def message(seq: int, size: int) -> str:
    head = f"{seq} {time.monotonic():.6f} "
    return head + "x" * max(0, size - len(head))


def cpu_seconds() -> float:
    """CPU time (user and system) this process used so far: on a shared
    machine, CPU per delivered message is steadier than the rate."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# ---------------------------------------------------------------- servers


def serve_trio_ws(seconds: float, size: int, interval: float) -> None:
    import trio

    import trio_ws

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                await ws.get_message()
        except trio_ws.ConnectionClosed:
            pass

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(trio_ws.serve_websocket, handler, "127.0.0.1", 0, None)
            print(server.port, flush=True)
            await trio.to_thread.run_sync(sys.stdin.readline)  # "go"
            totals = {"queued": 0, "skipped": 0, "closed": 0, "not_open": 0}
            cpu = cpu_seconds()
            start = time.monotonic()
            end, seq = start + seconds, 0
            inside = 0.0  # time spent in broadcast() itself
            while time.monotonic() < end:
                before = time.perf_counter()
                result = trio_ws.broadcast(
                    server.connections, message(seq, size), policy=trio_ws.SlowConsumer.SKIP
                )
                inside += time.perf_counter() - before
                totals["queued"] += result
                totals["skipped"] += result.skipped
                totals["closed"] += result.closed
                totals["not_open"] += result.not_open
                seq += 1
                await trio.sleep(interval)
            await trio.sleep(0.5)  # what is still queued goes out
            cpu = cpu_seconds() - cpu
            print(
                json.dumps(
                    {"published": seq, "start": start, "inside": inside, "cpu": cpu, **totals}
                ),
                flush=True,
            )
            await trio.to_thread.run_sync(sys.stdin.readline)  # "stop"
            nursery.cancel_scope.cancel()

    trio.run(main)


def serve_websockets(seconds: float, size: int, interval: float) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    connections: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        connections.add(ws)
        try:
            await ws.wait_closed()
        finally:
            connections.discard(ws)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
            print(server.sockets[0].getsockname()[1], flush=True)
            await loop.run_in_executor(None, sys.stdin.readline)  # "go"
            cpu = cpu_seconds()
            start = time.monotonic()
            end, seq = start + seconds, 0
            inside = 0.0
            while time.monotonic() < end:
                before = time.perf_counter()
                broadcast(connections, message(seq, size))
                inside += time.perf_counter() - before
                seq += 1
                await asyncio.sleep(interval)
            await asyncio.sleep(0.5)  # what is still buffered goes out
            cpu = cpu_seconds() - cpu
            print(
                json.dumps({"published": seq, "start": start, "inside": inside, "cpu": cpu}),
                flush=True,
            )
            await loop.run_in_executor(None, sys.stdin.readline)  # "stop"

    asyncio.run(main())


# ---------------------------------------------------------------- subscribers


class Subscriber(asyncio.Protocol):
    """A minimal client: handshake, then count frames and their latency."""

    def __init__(self, stats: dict[str, Any], idle: bool, opened: asyncio.Future[None]) -> None:
        self.stats, self.idle, self.opened = stats, idle, opened
        self.buffer = bytearray()
        self.handshaken = False
        self.last_seq = -1
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.handshaken:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(RuntimeError(bytes(buffer[:end]).decode()))
                return
            del buffer[: end + 4]
            self.handshaken = True
            self.opened.set_result(None)
            if self.idle:
                assert self.transport is not None
                self.transport.pause_reading()  # a consumer that stopped reading
                return
        now = time.monotonic()
        stats, pos, size = self.stats, 0, len(buffer)
        while size - pos >= 2:
            length, header = buffer[pos + 1] & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, header = int.from_bytes(buffer[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, header = int.from_bytes(buffer[pos + 2 : pos + 10], "big"), 10
            if size - pos < header + length:
                break
            opcode = buffer[pos] & 0x0F
            payload = bytes(buffer[pos + header : pos + header + length])
            pos += header + length
            if opcode == 1:
                seq_text, sent, _ = payload.split(b" ", 2)
                seq = int(seq_text)
                stats["received"] += 1
                if seq != self.last_seq + 1:
                    stats["gaps"] += 1
                self.last_seq = seq
                latencies = stats["latencies"]
                if len(latencies) < 200_000:
                    latencies.append(now - float(sent))
                stats["first"] = min(stats["first"], now)
                stats["last"] = max(stats["last"], now)
            elif opcode == 9 and self.transport is not None:  # ping: masked pong, zero key
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
            elif opcode == 8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                stats["closes"][str(code)] = stats["closes"].get(str(code), 0) + 1
                if self.transport is not None:
                    self.transport.close()
        del buffer[:pos]


async def subscribe(port: int, count: int, idle: int, quiet: float, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    stats: dict[str, Any] = {
        "received": 0,
        "gaps": 0,
        "latencies": [],
        "first": float("inf"),
        "last": 0.0,
        "closes": {},
    }
    gate = asyncio.Semaphore(100)  # handshakes in flight

    async def one(i: int) -> None:
        async with gate:
            opened: asyncio.Future[None] = loop.create_future()
            await loop.create_connection(
                lambda: Subscriber(stats, i < idle, opened), "127.0.0.1", port
            )
            await asyncio.wait_for(opened, 60)

    await asyncio.gather(*(one(i) for i in range(count)))
    print("ready", flush=True)
    deadline = time.monotonic() + timeout
    # Done once messages stopped arriving for `quiet` seconds (after some came).
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        if stats["received"] and time.monotonic() - stats["last"] > quiet:
            break
    latencies = stats.pop("latencies")
    stats["latencies"] = random.sample(latencies, min(len(latencies), SAMPLES_PER_CLIENT))
    print(json.dumps(stats), flush=True)


# ---------------------------------------------------------------- the parent


class Child:
    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, __file__, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def line(self, timeout: float) -> str:
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.process.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not result or not result[0]:
            raise TimeoutError(f"no answer from {self.process.args[2:]} in {timeout} s")
        return result[0].strip()

    def send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def run_one(
    server: str, subscribers: int, idle_share: float, size: int, args: argparse.Namespace
) -> dict[str, Any]:
    children: list[Child] = []
    try:
        host = Child("serve", server, str(args.seconds), str(size), str(args.interval))
        children.append(host)
        port = int(host.line(30))
        per_client = subscribers // args.clients
        idle_per_client = round(per_client * idle_share)
        clients = [
            Child("subscribe", str(port), str(per_client), str(idle_per_client))
            for _ in range(args.clients)
        ]
        children.extend(clients)
        for client in clients:
            assert client.line(180) == "ready"
        time.sleep(1)  # let the server settle after the handshakes
        base = rss(host.process.pid)
        peak = base
        host.send("go")
        done = threading.Event()
        samples: list[int] = []

        def sample() -> None:
            while not done.wait(0.25):
                samples.append(rss(host.process.pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            published = json.loads(host.line(args.seconds + 60))
            results = [json.loads(client.line(args.seconds + 120)) for client in clients]
        finally:
            done.set()
            sampler.join()
        end_rss = rss(host.process.pid)
        peak = max([base, end_rss, *samples])
        host.send("stop")
    finally:
        for child in children:
            child.kill()
    received = sum(r["received"] for r in results)
    last = max(r["last"] for r in results)
    latencies = sorted(x for r in results for x in r["latencies"])
    closes: dict[str, int] = {}
    for r in results:
        for code, n in r["closes"].items():
            closes[code] = closes.get(code, 0) + n
    readers = subscribers - idle_per_client * args.clients

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else 0.0

    return {
        "server": server,
        "subscribers": subscribers,
        "size": size,
        "idle": idle_per_client * args.clients,
        "published": published["published"],
        "delivered_per_s": received / max(1e-9, last - published["start"]),
        "received_per_reader": received / readers,
        "gaps": sum(r["gaps"] for r in results),
        "p50_ms": percentile(0.50) * 1000,
        "p99_ms": percentile(0.99) * 1000,
        "skipped": published.get("skipped"),
        # Share of the publishing time spent inside broadcast() itself.
        "inside_share": published["inside"] / args.seconds,
        # Server CPU time per message delivered to a reader (RUSAGE_SELF).
        "cpu_us": published["cpu"] / max(1, received) * 1e6,
        "closes": closes,
        "rss_base_mib": base / MiB,
        "rss_peak_mib": peak / MiB,
        "rss_end_mib": end_rss / MiB,
        "rss_trace_mib": [round(s / MiB) for s in samples[:: max(1, len(samples) // 12)]],
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| server | subs | idle | size | published | delivered msg/s | per reader "
        "| p50 ms | p99 ms | skipped | in broadcast() | server CPU µs per delivery "
        "| server RSS MiB (base / peak / end) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        skipped = r["skipped"]
        lines.append(
            f"| {r['server']} | {r['subscribers']} | {r['idle']} | {r['size']} | {r['published']} "
            f"| {r['delivered_per_s']:,.0f} | {r['received_per_reader']:,.0f} "
            f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {'-' if skipped is None else skipped} "
            f"| {r.get('inside_share', 0):.0%} | {r['cpu_us']:.1f} "
            f"| {r['rss_base_mib']:.0f} / {r['rss_peak_mib']:.0f} / {r['rss_end_mib']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--idle", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument("--servers", nargs="+", default=list(SERVERS), choices=SERVERS)
    parser.add_argument("--clients", type=int, default=4, help="subscriber processes")
    parser.add_argument("--seconds", type=float, default=5.0, help="publishing time per run")
    parser.add_argument("--size", type=int, default=1024, help="message size in bytes")
    parser.add_argument(
        "--memory-run",
        type=int,
        nargs=2,
        default=[100, 32768],
        metavar=("SUBSCRIBERS", "SIZE"),
        help="then a run with 10%% idle and big messages, so that enough is published "
        "per idle subscriber to overflow the kernel's socket buffers (0 0: none)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=0.0,
        help="seconds the publisher sleeps between broadcasts (default 0: one scheduler "
        "pass, as fast as it can; a longer one measures the latency of lone messages)",
    )
    parser.add_argument("--quick", action="store_true", help="2 s runs")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 2.0
    raise_fd_limit(max(args.subscribers) + 1000)
    runs = [(n, idle, args.size) for n in args.subscribers for idle in args.idle]
    if args.memory_run[0]:
        runs.append((args.memory_run[0], 0.1, args.memory_run[1]))
    rows = []
    for subscribers, idle, size in runs:
        for server in args.servers:
            row = run_one(server, subscribers, idle, size, args)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        raise_fd_limit(20_000)
        seconds, size, interval = float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        (serve_trio_ws if sys.argv[2] == "trio_ws" else serve_websockets)(seconds, size, interval)
    elif len(sys.argv) > 1 and sys.argv[1] == "subscribe":
        raise_fd_limit(20_000)
        port, count, idle = map(int, sys.argv[2:5])
        asyncio.run(subscribe(port, count, idle, quiet=2.0, timeout=120.0))
    else:
        main()
