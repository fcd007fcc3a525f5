"""Soak test: a trio_ws echo server in its own process under mixed, hostile load.

The script starts itself again as the server (``--serve``), in a separate
Python process, and from this process keeps opening connections, at most
``--concurrency`` at a time, for ``--seconds`` or until ``--max-connections``
have been opened. Each connection is one of:

``clean``
    a trio_ws client that echoes a few messages and closes normally;
``reset``
    a raw client that echoes a few messages, then drops the TCP connection
    with RST (``SO_LINGER`` 0) and no Close frame;
``violation``
    a raw client that sends a frame with a reserved opcode and expects Close
    1002;
``half_open``
    a raw client that completes the handshake, echoes one message and then
    goes silent for good: it never answers a ping. Only the server's
    keepalive (``--ping-interval``/``--ping-timeout``) can reclaim it;
``slow_handshake``
    a raw client that sends half an upgrade request and stops; the server
    must drop it after ``--connect-timeout``.

Silent clients do not hold a concurrency slot once they have gone silent;
they wait (reading, never writing) until the server closes them, or until
the end of the drain period, when they are counted as still open.

With ``--rounds N`` the whole load (``--seconds``/``--max-connections``,
then drain and settle) is repeated N times against the same server, and the
state after each round is reported: a leak grows round after round, while
the allocator's high-water mark does not.

The server answers ``/stats`` with its own view (open fds, resident memory,
live Trio tasks, handler counters) as JSON; this process also reads the
server's ``/proc/<pid>/status`` (VmRSS) and ``/proc/<pid>/fd``. The report
compares the baseline (idle server) with the peak during the load and the
final state after the drain and ``--settle`` periods.

Run from the repository root::

    python benchmarks/soak.py --seconds 60
    python benchmarks/soak.py --seconds 60 --max-connections 5000 --rounds 4
    python benchmarks/soak.py --seconds 300 --max-connections 50000 --concurrency 400
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import math
import os
import random
import resource
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

import trio_ws

# The raw clients speak through the test suite's own (independent) codec.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.support.codec import BINARY, decode_frame, frame
from tests.support.handshake import accept_token, new_key, upgrade_request

HOST = "127.0.0.1"
KINDS = ("clean", "reset", "violation", "half_open", "slow_handshake")
DEFAULT_MIX = "clean=60,reset=15,violation=5,half_open=10,slow_handshake=10"


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def task_count() -> int:
    count = 0
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


# ====================================================================== server


class ErrorCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        sys.stderr.write(f"server log: {record.name}: {record.getMessage()}\n")


async def serve(args: argparse.Namespace) -> None:
    raise_fd_limit()
    errors = ErrorCounter()
    logging.getLogger("trio_ws").addHandler(errors)
    counters: collections.Counter[str] = collections.Counter()
    codes: collections.Counter[int] = collections.Counter()
    active = 0

    def snapshot() -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "fds": fd_count(),
            "rss_kib": rss_kib(),
            "tasks": task_count(),
            "active_handlers": active,
            "counters": dict(counters),
            "close_codes": {str(k): v for k, v in sorted(codes.items())},
            "logged_errors": errors.count,
        }

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        nonlocal active
        if request.path == "/stats":
            ws = await request.accept()
            async for _ in ws:
                await ws.send_message(json.dumps(snapshot()))
            return
        active += 1
        counters["handled"] += 1
        try:
            ws = await request.accept()
            async for message in ws:
                await ws.send_message(message)
            counters["normal_end"] += 1
            codes[ws.closed.code if ws.closed else 0] += 1
        except trio_ws.ConnectionClosed as exc:
            counters["connection_closed"] += 1
            codes[exc.reason.code] += 1
        except BaseException as exc:
            counters["unexpected:" + type(exc).__name__] += 1
            raise
        finally:
            active -= 1

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(
                trio_ws.serve_websocket,
                handler,
                HOST,
                0,
                None,
                connect_timeout=args.connect_timeout,
                disconnect_timeout=args.disconnect_timeout,
                ping_interval=args.ping_interval,
                ping_timeout=args.ping_timeout,
            )
        )
        print(json.dumps({"port": server.port, "pid": os.getpid()}), flush=True)
        # Run until the parent closes our stdin (or kills us).
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        while await stdin.receive_some(1024):
            pass
        nursery.cancel_scope.cancel()


# ============================================================ raw client bits


class RawPeer:
    """Just enough of a WebSocket client to misbehave in specific ways."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def fill(self) -> bool:
        data = await self.stream.receive_some(65536)
        self.buffer += data
        return bool(data)

    async def handshake(self, path: str = "/") -> None:
        key = new_key()
        token = accept_token(key)
        await self.stream.send_all(upgrade_request(path, key=key))
        while b"\r\n\r\n" not in self.buffer:
            if not await self.fill():
                raise EOFError("server closed during the handshake")
        end = self.buffer.index(b"\r\n\r\n") + 4
        head = bytes(self.buffer[:end])
        del self.buffer[:end]
        if not head.startswith(b"HTTP/1.1 101 ") or token not in head:
            raise RuntimeError(f"bad handshake answer: {head[:100]!r}")

    async def frame(self) -> tuple[int, bytes]:
        """The next (unmasked) frame from the server."""
        while (wire := decode_frame(self.buffer)) is None:
            if not await self.fill():
                raise EOFError("server closed the connection")
        del self.buffer[: wire.size]
        return wire.opcode, wire.payload

    async def echo(self, payload: bytes) -> None:
        await self.stream.send_all(frame(BINARY, payload))
        while True:
            opcode, data = await self.frame()
            if opcode == 0x2:
                if data != payload:
                    raise RuntimeError("echo mismatch")
                return
            if opcode == 0x8:
                raise EOFError("server closed instead of echoing")

    async def wait_until_closed(self, *, until_close_frame: bool = False) -> int | None:
        """Read (never answering) until the server closes; return its close code.

        With *until_close_frame*, return as soon as the Close frame arrives.
        """
        code = None
        while True:
            try:
                opcode, payload = await self.frame()
            except (EOFError, trio.BrokenResourceError):
                return code
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                if until_close_frame:
                    return code

    def reset(self) -> None:
        """Make the close below send RST instead of FIN."""
        self.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# ====================================================================== driver


@dataclass
class Stats:
    started: collections.Counter[str] = field(default_factory=collections.Counter)
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: list[str] = field(default_factory=list)
    clean_seconds: list[float] = field(default_factory=list)
    reclaim_seconds: dict[str, list[float]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )
    in_flight: int = 0
    parked: int = 0

    def outcome(self, kind: str, what: str) -> None:
        self.outcomes[f"{kind}: {what}"] += 1

    def error(self, kind: str, exc: BaseException) -> None:
        self.outcome(kind, f"ERROR {type(exc).__name__}")
        if len(self.errors) < 20:
            self.errors.append(f"{kind}: {exc!r}")


@dataclass
class Slot:
    """A concurrency slot, given back once (silent clients give it back early)."""

    semaphore: trio.Semaphore
    scope: trio.CancelScope
    released: bool = False
    silent: bool = False  # parked: the drain, not a timeout, may end it

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.semaphore.release()


class Driver:
    def __init__(self, args: argparse.Namespace, port: int) -> None:
        self.args = args
        self.port = port
        self.stats = Stats()
        self.rng = random.Random(args.seed)
        self.slots = trio.Semaphore(args.concurrency)
        self.drain_by = math.inf  # silent clients give up at this time
        self.silent: set[trio.CancelScope] = set()

    async def connection(self, kind: str) -> None:
        slot = Slot(self.slots, trio.CancelScope())
        slot.scope.deadline = trio.current_time() + self.args.connection_timeout
        self.stats.in_flight += 1
        try:
            with slot.scope:
                await getattr(self, kind)(slot)
            if slot.scope.cancelled_caught and not slot.silent:
                self.stats.outcome(kind, f"TIMEOUT after {self.args.connection_timeout} s")
        except Exception as exc:
            self.stats.error(kind, exc)
        finally:
            self.stats.in_flight -= 1
            slot.release()

    def payload(self) -> bytes:
        return os.urandom(self.rng.choice([16, 200, 2000, 20000]))

    async def clean(self, slot: Slot) -> None:
        start = time.monotonic()
        async with trio_ws.open_websocket(
            HOST, self.port, "/", use_ssl=False, ping_interval=None
        ) as ws:
            for _ in range(self.rng.randint(1, 5)):
                message = self.payload()
                await ws.send_message(message)
                if await ws.get_message() != message:
                    raise RuntimeError("echo mismatch")
        self.stats.clean_seconds.append(time.monotonic() - start)
        self.stats.outcome("clean", "closed normally")

    async def reset(self, slot: Slot) -> None:
        stream = await trio.open_tcp_stream(HOST, self.port)
        peer = RawPeer(stream)
        try:
            await peer.handshake()
            for _ in range(self.rng.randint(1, 3)):
                await peer.echo(self.payload())
            peer.reset()
        finally:
            await trio.aclose_forcefully(stream)
        self.stats.outcome("reset", "reset sent")

    async def violation(self, slot: Slot) -> None:
        async with await trio.open_tcp_stream(HOST, self.port) as stream:
            peer = RawPeer(stream)
            await peer.handshake()
            await peer.echo(b"before")
            await stream.send_all(frame(0x3, b"reserved opcode"))
            code = await peer.wait_until_closed(until_close_frame=True)
        self.stats.outcome("violation", f"server closed with {code}")

    async def half_open(self, slot: Slot) -> None:
        stream = await trio.open_tcp_stream(HOST, self.port)
        try:
            peer = RawPeer(stream)
            await peer.handshake()
            await peer.echo(b"and now silence")
            await self.park("half_open", slot, peer)
        finally:
            await trio.aclose_forcefully(stream)

    async def slow_handshake(self, slot: Slot) -> None:
        stream = await trio.open_tcp_stream(HOST, self.port)
        try:
            request = upgrade_request()
            await stream.send_all(request[: len(request) // 2])
            await self.park("slow_handshake", slot, RawPeer(stream))
        finally:
            await trio.aclose_forcefully(stream)

    async def park(self, kind: str, slot: Slot, peer: RawPeer) -> None:
        """Go silent; wait (reading only) until the server closes or the drain ends."""
        slot.release()
        slot.silent = True
        slot.scope.deadline = self.drain_by  # no connection timeout while silent
        self.silent.add(slot.scope)
        self.stats.parked += 1
        start = time.monotonic()
        try:
            code = await peer.wait_until_closed()
            self.stats.reclaim_seconds[kind].append(time.monotonic() - start)
            self.stats.outcome(kind, f"closed by server ({code})")
        finally:
            self.stats.parked -= 1
            self.silent.discard(slot.scope)
            if slot.scope.cancel_called:
                self.stats.outcome(kind, "STILL OPEN at the end of the drain")

    def start_drain(self) -> None:
        self.drain_by = trio.current_time() + self.args.drain
        for scope in self.silent:
            scope.deadline = self.drain_by

    def pick(self) -> str:
        kinds, weights = zip(*self.args.mix.items(), strict=True)
        return self.rng.choices(kinds, weights)[0]


class Sampler:
    """Samples the server process: from /proc and from its /stats endpoint."""

    def __init__(self, pid: int, control: trio_ws.WebSocketConnection) -> None:
        self.pid = pid
        self.control = control
        self.peak = {"rss_kib": 0, "fds": 0, "tasks": 0}
        self.series: list[dict[str, Any]] = []

    async def sample(self) -> dict[str, Any]:
        await self.control.send_message("stats")
        own = json.loads(await self.control.get_message())
        sample = {
            "rss_kib": rss_kib(self.pid),
            "fds": fd_count(self.pid),
            "tasks": own["tasks"],
            "server": own,
        }
        for key in self.peak:
            self.peak[key] = max(self.peak[key], sample[key])
        self.series.append(sample)
        return sample


async def drive(args: argparse.Namespace) -> int:
    raise_fd_limit()
    command = [sys.executable, os.path.abspath(__file__), "--serve"]
    for option in ("connect_timeout", "disconnect_timeout", "ping_interval", "ping_timeout"):
        value = getattr(args, option)
        command += [f"--{option.replace('_', '-')}", "none" if value is None else str(value)]
    env = dict(os.environ)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    process = await trio.lowlevel.open_process(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    assert process.stdout is not None and process.stdin is not None
    line = b""
    with trio.fail_after(20):
        while not line.endswith(b"\n"):
            data = await process.stdout.receive_some(1)
            if not data:
                raise RuntimeError("the server process exited before listening")
            line += data
    info = json.loads(line)
    port, pid = info["port"], info["pid"]
    print(f"server pid {pid} listening on {HOST}:{port}; options {vars(args)}", flush=True)

    driver = Driver(args, port)
    stats = driver.stats
    try:
        async with trio_ws.open_websocket(
            HOST, port, "/stats", use_ssl=False, ping_interval=None
        ) as control:
            sampler = Sampler(pid, control)
            await trio.sleep(1)
            baseline = await sampler.sample()
            print(f"baseline: {fmt(baseline)}", flush=True)
            load_start = time.monotonic()

            async def monitor(stop: trio.Event) -> None:
                last_print = 0.0
                while not stop.is_set():
                    sample = await sampler.sample()
                    now = time.monotonic() - load_start
                    if now - last_print >= args.report_every:
                        last_print = now
                        total = sum(stats.started.values())
                        print(
                            f"t={now:6.1f}s opened={total:6d} in flight={stats.in_flight:4d} "
                            f"silent={stats.parked:4d} server: {fmt(sample)} "
                            f"handlers={sample['server']['active_handlers']}",
                            flush=True,
                        )
                    with trio.move_on_after(args.sample_every):
                        await stop.wait()

            finals = []
            load_seconds = 0.0
            for round_ in range(1, args.rounds + 1):
                if args.rounds > 1:
                    print(f"--- round {round_} of {args.rounds}", flush=True)
                load_start = time.monotonic()
                driver.drain_by = math.inf  # silent clients wait for the server again
                stop_monitor = trio.Event()
                async with trio.open_nursery() as outer:
                    outer.start_soon(monitor, stop_monitor)
                    async with trio.open_nursery() as load:
                        deadline = trio.current_time() + args.seconds
                        limit = round_ * args.max_connections
                        while (
                            sum(stats.started.values()) < limit and trio.current_time() < deadline
                        ):
                            with trio.move_on_at(deadline):
                                await driver.slots.acquire()
                            if trio.current_time() >= deadline:
                                break
                            kind = driver.pick()
                            stats.started[kind] += 1
                            load.start_soon(driver.connection, kind)
                        load_seconds += time.monotonic() - load_start
                        print(
                            f"load stopped after {time.monotonic() - load_start:.1f} s "
                            f"({sum(stats.started.values())} connections); draining",
                            flush=True,
                        )
                        driver.start_drain()
                    stop_monitor.set()
                print(f"drained; settling {args.settle:.0f} s", flush=True)
                await trio.sleep(args.settle)
                final = await sampler.sample()
                finals.append(final)
                print(f"after round {round_}: {fmt(final)}", flush=True)
            report(args, stats, baseline, sampler, finals, load_seconds)
    finally:
        await process.stdin.aclose()  # asks the server to exit
        with trio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
    code = process.returncode
    print(f"server process exited with {code}")
    server_ok = not final["server"]["logged_errors"] and not any(
        k.startswith("unexpected") for k in final["server"]["counters"]
    )
    return 0 if server_ok and code == 0 else 1


def fmt(sample: dict[str, Any]) -> str:
    return f"rss={sample['rss_kib'] / 1024:.1f} MiB fds={sample['fds']} tasks={sample['tasks']}"


def report(
    args: argparse.Namespace,
    stats: Stats,
    baseline: dict[str, Any],
    sampler: Sampler,
    finals: list[dict[str, Any]],
    load_seconds: float,
) -> None:
    final = finals[-1]
    total = sum(stats.started.values())
    print("\n=== soak report ===")
    print(f"{total} connections in {load_seconds:.1f} s ({total / load_seconds:.0f}/s), ", end="")
    print(f"concurrency {args.concurrency}")
    print("\nconnections by kind:")
    for kind in KINDS:
        print(f"  {kind:<15} {stats.started[kind]:6d}")
    print("\noutcomes:")
    for what, count in sorted(stats.outcomes.items()):
        print(f"  {what:<45} {count:6d}")
    if stats.clean_seconds:
        times = sorted(stats.clean_seconds)
        p50, p99 = times[len(times) // 2], times[int(len(times) * 0.99)]
        print(f"\nclean connection (handshake, echoes, close): p50 {p50 * 1000:.1f} ms, ", end="")
        print(f"p99 {p99 * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms")
    for kind, seconds in stats.reclaim_seconds.items():
        seconds = sorted(seconds)
        print(f"{kind} reclaimed by the server after {seconds[0]:.1f}..{seconds[-1]:.1f} s")
    print("\nserver process      baseline        peak       final")
    rows = [
        ("RSS (MiB)", "rss_kib", 1 / 1024),
        ("open fds", "fds", 1),
        ("Trio tasks", "tasks", 1),
    ]
    for label, key, scale in rows:
        b, p, f = baseline[key] * scale, sampler.peak[key] * scale, final[key] * scale
        print(f"  {label:<16} {b:>10.1f} {p:>11.1f} {f:>11.1f}")
    if len(finals) > 1:
        print("\nafter each round (RSS MiB / fds / tasks):")
        for i, sample in enumerate(finals, 1):
            rss = sample["rss_kib"] / 1024
            print(f"  round {i:<3} {rss:8.1f} {sample['fds']:6d} {sample['tasks']:6d}")
    server = final["server"]
    print(f"\nserver counters: {server['counters']}")
    print(f"server close codes seen by handlers: {server['close_codes']}")
    print(f"server ERROR log records: {server['logged_errors']}")
    print(f"active handlers at the end: {server['active_handlers']}")
    if stats.errors:
        print("\nclient-side errors (first 20):")
        for error in stats.errors:
            print(f"  {error}")


def parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        kind, _, weight = part.partition("=")
        if kind.strip() not in KINDS:
            raise argparse.ArgumentTypeError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
        mix[kind.strip()] = float(weight)
    return mix


def optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to open connections")
    parser.add_argument("--max-connections", type=int, default=5000, help="per round")
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat the load (a leak grows round after round)"
    )
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--mix", type=parse_mix, default=parse_mix(DEFAULT_MIX))
    parser.add_argument("--connect-timeout", type=float, default=5.0, help="server side")
    parser.add_argument("--disconnect-timeout", type=float, default=5.0, help="server side")
    parser.add_argument("--ping-interval", type=optional_float, default=5.0, help="server side")
    parser.add_argument("--ping-timeout", type=optional_float, default=5.0, help="server side")
    parser.add_argument(
        "--drain", type=float, default=30.0, help="seconds silent clients wait to be closed"
    )
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before the final sample")
    parser.add_argument("--connection-timeout", type=float, default=120.0)
    parser.add_argument("--sample-every", type=float, default=1.0)
    parser.add_argument("--report-every", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    if args.serve:
        trio.run(serve, args)
        return 0
    return trio.run(drive, args)


if __name__ == "__main__":
    sys.exit(main())
