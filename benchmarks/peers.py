"""trio_ws next to its peers: throughput, latency, memory, connection rate.

Runs trio_ws, trio-websocket, websockets' Trio and asyncio layers and a raw
Trio TCP echo (4-byte length prefix) side by side. For every library and
measure a fresh echo server and a fresh client run as two separate processes
(``benchmarks/_peers/<lib>_peer.py``), talking over 127.0.0.1; each library's
client talks to its own server, so every figure covers both ends of the same
library. Libraries are interleaved (rotated each run) and each figure is the
median over the runs, with min-max. Not a test: run it by hand::

    python benchmarks/peers.py                      # full: 3 runs, ~6 minutes
    python benchmarks/peers.py --quick              # smoke test, under a minute
    python benchmarks/peers.py --markdown benchmarks/RESULTS.md
    python benchmarks/peers.py --profile            # cProfile of the trio_ws server
    python benchmarks/peers.py --profile --profile-side client

The "defaults" columns come first: trio_ws and websockets asyncio with
their defaults on both ends (permessage-deflate negotiated), every measure.
The other columns run measures 1-5 with compression off on both sides
(trio_ws ``compression=None``, websockets ``compression=None``); measure 6
turns each library's permessage-deflate on. Maximum message size is 4 MiB everywhere;
every other setting is the library's default. Every measure has a timeout
and reports ``timeout`` instead of hanging; every child is killed on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import pstats
import queue
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PEERS = HERE / "_peers"
KiB = 1024
MiB = 1024 * KiB
BASELINE = "trio-websocket"


@dataclass(frozen=True)
class Library:
    name: str
    script: str
    module: str  # must import for the library to run
    compression: bool
    #: Run every measure with the library's defaults (compression on),
    #: not only the deflate measure.
    defaults: bool = False


LIBRARIES = [
    # Each library's defaults on both ends first: what users run.
    Library("trio_ws defaults", "trio_ws_peer.py", "trio_ws", True, defaults=True),
    Library(
        "websockets.asyncio defaults",
        "websockets_asyncio_peer.py",
        "websockets.asyncio",
        True,
        defaults=True,
    ),
    Library("trio_ws", "trio_ws_peer.py", "trio_ws", True),
    Library("trio-websocket", "trio_websocket_peer.py", "trio_websocket", False),
    Library("websockets.trio", "websockets_trio_peer.py", "websockets.trio", True),
    Library("websockets.asyncio", "websockets_asyncio_peer.py", "websockets.asyncio", True),
    Library("raw trio TCP", "raw_trio_peer.py", "trio", False),
]


@dataclass(frozen=True)
class Metric:
    key: str  # key in the client's (or the parent's) result
    label: str
    unit: str
    higher_is_better: bool
    digits: int = 0


@dataclass
class Measure:
    name: str
    title: str
    client: str  # the worker's --measure
    params: dict[str, Any]
    quick: dict[str, Any]
    metrics: list[Metric]
    compress: bool = False
    timeout: float = 30.0
    results: dict[str, dict[str, list[Any]]] = field(default_factory=dict)


def build_measures() -> list[Measure]:
    return [
        Measure(
            "pipelined",
            "16 B echo, 100 in flight",
            "stream",
            {"kind": "small", "inflight": 100, "warmup": 0.5, "window": 2.5},
            {"window": 0.5, "warmup": 0.2},
            [Metric("msg_per_s", "16 B echo, 100 in flight", "msg/s", True)],
        ),
        Measure(
            "latency",
            "16 B round trip, 1 in flight",
            "latency",
            {"count": 3000, "warmup": 200, "max_seconds": 8},
            {"count": 300, "warmup": 50},
            [
                Metric("median_us", "round trip, median", "µs", False),
                Metric("p99_us", "round trip, p99", "µs", False),
            ],
        ),
        Measure(
            "bulk",
            "1 MiB echo, 4 in flight",
            "stream",
            {"kind": "big", "size": MiB, "inflight": 4, "warmup": 0.5, "window": 2.5},
            {"window": 0.5, "warmup": 0.2},
            [Metric("mib_per_s", "1 MiB echo, 4 in flight", "MiB/s", True, 1)],
            timeout=20.0,
        ),
        Measure(
            "memory",
            "1,000 idle connections",
            "memory",
            {"conns": 1000},
            {"conns": 200},
            [
                Metric("server_kib_per_conn", "idle conn, server RSS", "KiB/conn", False, 1),
                Metric("client_kib_per_conn", "idle conn, client RSS", "KiB/conn", False, 1),
            ],
            timeout=60.0,
        ),
        Measure(
            "setup",
            "sequential open+handshake+close",
            "setup",
            {"count": 500, "warmup": 10, "max_seconds": 10},
            {"count": 100, "warmup": 5},
            [Metric("conn_per_s", "connection setup (sequential)", "conn/s", True)],
        ),
        Measure(
            "compressed",
            "64 KiB JSON echo, 4 in flight, permessage-deflate",
            "stream",
            {"kind": "json", "size": 64 * KiB, "inflight": 4, "warmup": 0.5, "window": 2.5},
            {"window": 0.5, "warmup": 0.2},
            [Metric("mib_per_s", "64 KiB JSON echo, deflate", "MiB/s", True, 1)],
            compress=True,
            timeout=20.0,
        ),
    ]


# -- child processes ----------------------------------------------------------


class ChildError(Exception):
    pass


class ChildTimeout(ChildError):
    pass


class Child:
    """A worker process; its stdout lines arrive on a queue, stderr in a log."""

    live: list[Child] = []  # noqa: RUF012 - every child ever started, for cleanup

    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv = argv
        self.log_path = log
        self.log = log.open("w")
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
            cwd=PEERS,
        )
        Child.live.append(self)
        threading.Thread(target=self._pump, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def expect(self, tag: str, timeout: float) -> Any:
        """Wait for a ``TAG json`` line; raise on timeout or early exit."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChildTimeout(f"no {tag} within {timeout:.0f} s")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                raise ChildTimeout(f"no {tag} within {timeout:.0f} s") from None
            if line is None:
                self.proc.wait()
                raise ChildError(f"exited with {self.proc.returncode}: {self.log_tail()}")
            found, _, payload = line.partition(" ")
            if found == tag:
                return json.loads(payload)

    def tell(self, text: str) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.write(text + "\n")
            self.proc.stdin.flush()

    def log_tail(self, lines: int = 5) -> str:
        self.log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(no stderr)"

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM (lets a profiled server write its stats), then SIGKILL."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        self.log.close()

    @classmethod
    def kill_all(cls) -> None:
        for child in cls.live:
            if child.proc.poll() is None:
                child.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(5)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise LookupError("VmRSS")


def run_one(
    lib: Library,
    measure: Measure,
    params: dict[str, Any],
    logs: Path,
    tag: str,
    profile: str | None = None,
    profile_side: str = "server",
) -> dict[str, Any]:
    """One library, one measure: fresh server and client processes."""
    script = str(PEERS / lib.script)
    common = ["--compress"] if measure.compress or lib.defaults else []
    server_argv = [sys.executable, script, "server", *common]
    if profile and profile_side == "server":
        server_argv += ["--profile", profile]
    slug = f"{tag}-{measure.name}-{lib.script.removesuffix('_peer.py')}"
    server = Child(server_argv, logs / f"{slug}-server.log")
    client: Child | None = None
    try:
        port = server.expect("PORT", 20)
        client_params = dict(params, timeout=measure.timeout)
        client = Child(
            [
                sys.executable,
                script,
                "client",
                "--port",
                str(port),
                *common,
                "--measure",
                measure.client,
                "--params",
                json.dumps(client_params),
                *(["--profile", profile] if profile and profile_side == "client" else []),
            ],
            logs / f"{slug}-client.log",
        )
        budget = measure.timeout + 10  # the client's own timeout fires first
        if measure.client != "memory":
            return client.expect("RESULT", budget)
        client.expect("BASELINE", budget)
        time.sleep(0.3)
        before = rss_kib(server.pid)
        client.tell("go")
        client.expect("OPENED", budget)
        time.sleep(0.5)  # let the server settle
        after = rss_kib(server.pid)
        client.tell("done")
        result = client.expect("RESULT", budget)
        result["server_kib_per_conn"] = (after - before) / params["conns"]
        return result
    except ChildTimeout:
        return {"error": "timeout"}
    except ChildError as exc:
        return {"error": "error", "detail": str(exc)}
    finally:
        if client is not None:
            if profile and profile_side == "client":
                with contextlib.suppress(subprocess.TimeoutExpired):
                    client.proc.wait(10)  # it writes its stats as it exits
            client.stop()
        server.stop(grace=10 if profile else 3)


# -- reporting ----------------------------------------------------------------


def versions() -> list[tuple[str, str]]:
    found = [("python", platform.python_version())]
    # numpy: trio_ws's optional speedup for masking large payloads.
    for dist in ("trio", "wsproto", "trio-websocket", "websockets", "trio_ws", "numpy"):
        try:
            found.append((dist, importlib.metadata.version(dist)))
        except importlib.metadata.PackageNotFoundError:
            found.append((dist, "not installed"))
    return found


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        return (
            f"{os.cpu_count()} CPUs, {model}, {platform.system()} {platform.release()}, "
            f"load average at start {load}"
        )
    return f"{os.cpu_count()} CPUs, {model}, {platform.system()} {platform.release()}"


def fmt(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def summarize(values: list[Any], metric: Metric) -> tuple[str, str, float | None]:
    """(median cell, min-max cell, median) for one library's runs."""
    numbers = [v for v in values if isinstance(v, (int, float))]
    failures = [v for v in values if not isinstance(v, (int, float))]
    if not numbers:
        if not failures:
            return "n/a", "", None
        return failures[0], "", None
    median = statistics.median(numbers)
    cell = fmt(median, metric.digits)
    if failures:
        cell += f" ({len(failures)}/{len(values)} {failures[0]})"
    spread = f"{fmt(min(numbers), metric.digits)}-{fmt(max(numbers), metric.digits)}"
    return cell, spread, median


def tables(
    measures: list[Measure], libs: list[Library]
) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """Header, summary rows (median and ratio) and spread rows (min-max)."""
    header = ["measure", *[lib.name for lib in libs]]
    summary, spread = [], []
    for measure in measures:
        for metric in measure.metrics:
            cells = {
                lib.name: summarize(measure.results[metric.key][lib.name], metric) for lib in libs
            }
            base = cells.get(BASELINE, ("", "", None))[2]
            arrow = "↑" if metric.higher_is_better else "↓"
            label = f"{metric.label} ({metric.unit} {arrow})"
            row, spread_row = [label], [label]
            for lib in libs:
                cell, span, median = cells[lib.name]
                if median is not None and base and lib.name != BASELINE:
                    cell += f" ({median / base:.2f}x)"
                row.append(cell)
                spread_row.append(span or cell)
            summary.append(row)
            spread.append(spread_row)
    return header, summary, spread


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


METHOD = """\
* Every library/measure pair gets a fresh echo server process and a fresh
  client process (same library on both ends) over 127.0.0.1; the libraries
  are interleaved, their order rotated on each run.
* The two "defaults" columns run every measure with the library's defaults
  on both ends, permessage-deflate negotiated (their 64 KiB JSON figure is
  the deflate column's own measure, so it shows n/a there).
* Other columns: compression off for measures 1-5 (trio_ws and websockets:
  `compression=None` on both ends); max message size 4 MiB for every
  library; all other settings are each library's defaults (so trio_ws and
  trio-websocket run with `message_queue_size=1`, trio-websocket reads 4 KiB
  at a time, trio_ws 64 KiB, websockets queues 16 frames).
* **16 B echo, 100 in flight**: a sender task keeps 100 messages
  outstanding (a semaphore released by a receiver task) for {window} s after
  a {warmup} s warm-up, then waits for the last answers; messages per second.
* **round trip**: one 16-byte message at a time, {count} samples after
  {lwarmup} warm-up round trips.
* **1 MiB echo, 4 in flight**: like the first, 1 MiB random binary
  messages; MiB echoed (received back) per second.
* **idle conn**: after {mwarmup} warm-up connections, the client opens
  {conns} connections and echoes one message on each; growth of the server
  process's VmRSS (read by the parent from /proc) and of the client's own,
  divided by {conns}.
* **connection setup**: {scount} connections one after another, each opened,
  handshaken and closed (closing handshake included) before the next; raw
  TCP is just connect + close.
* **64 KiB JSON echo, deflate**: 4 in flight, 8 different ~64 KiB JSON
  documents as text messages, permessage-deflate with each library's default
  settings on both ends; MiB of uncompressed payload echoed per second.
  trio-websocket and raw TCP have no compression: n/a.
* Ratios are median ÷ trio-websocket's median, whatever the direction:
  for ↑ rows bigger is better, for ↓ rows smaller is better."""


def report(
    measures: list[Measure],
    libs: list[Library],
    args: argparse.Namespace,
    elapsed: float,
    machine_line: str,
) -> tuple[str, str]:
    header, summary, spread = tables(measures, libs)
    version_line = ", ".join(f"{name} {version}" for name, version in versions())
    runs = "1 run (--quick)" if args.quick else f"{args.runs} runs"
    text = "\n".join(
        [
            f"versions: {version_line}",
            f"machine:  {machine_line}",
            f"{runs}, {elapsed:.0f} s; median (ratio to {BASELINE})",
            "",
            text_table(header, summary),
            "",
            "min-max over the runs",
            "",
            text_table(header, spread),
        ]
    )
    params = {m.name: dict(m.params, **(m.quick if args.quick else {})) for m in measures}
    p = {
        "window": params.get("pipelined", {}).get("window", "?"),
        "warmup": params.get("pipelined", {}).get("warmup", "?"),
        "count": params.get("latency", {}).get("count", "?"),
        "lwarmup": params.get("latency", {}).get("warmup", "?"),
        "conns": params.get("memory", {}).get("conns", "?"),
        "mwarmup": 20,
        "scount": params.get("setup", {}).get("count", "?"),
    }
    notes = []
    with contextlib.suppress(ValueError, IndexError):
        start_load = float(machine_line.split("load average at start ")[1].split()[0])
        if start_load > 0.5 * (os.cpu_count() or 1):
            notes.append(
                f"**Warning: the machine was busy** (1-minute load {start_load} on "
                f"{os.cpu_count()} CPUs at start) so the server and client competed with other "
                "processes; treat throughput, latency and setup figures as rough, look at the "
                "spread table, and trust the memory rows most (they do not depend on CPU time)."
            )
    if any("timeout" in str(v) for m in measures for r in m.results.values() for v in r.values()):
        notes.append(
            "`timeout`: the client had no result within the measure's time limit "
            f"({', '.join(f'{m.name} {m.timeout:.0f} s' for m in measures)}) and was stopped."
        )
    md = "\n".join(
        [
            "# trio_ws and its peers",
            "",
            "Produced by `benchmarks/peers.py` (`python benchmarks/peers.py "
            + " ".join(shlex.quote(a) for a in sys.argv[1:])
            + "`).",
            "",
            *[line for note in notes for line in (note, "")],
            f"* Date: {datetime.date.today().isoformat()}",
            f"* Versions: {version_line}",
            f"* Machine: {machine_line}",
            f"* {runs}, {elapsed:.0f} s in all",
            "",
            f"## Results (median over the runs; ratio to {BASELINE})",
            "",
            markdown_table(header, summary),
            "",
            "## Spread (min-max over the runs)",
            "",
            markdown_table(header, spread),
            "",
            "## Method",
            "",
            METHOD.format(**p),
            "",
        ]
    )
    return text, md


# -- main ---------------------------------------------------------------------


def available(libs: list[Library]) -> list[Library]:
    found = []
    for lib in libs:
        try:
            ok = importlib.util.find_spec(lib.module) is not None
        except ModuleNotFoundError:
            ok = False
        if ok:
            found.append(lib)
        else:
            print(f"skipping {lib.name}: {lib.module} does not import", file=sys.stderr)
    return found


def run_benchmark(args: argparse.Namespace, libs: list[Library], logs: Path) -> list[Measure]:
    measures = [m for m in build_measures() if not args.measures or m.name in args.measures]
    for measure in measures:
        for metric in measure.metrics:
            measure.results[metric.key] = {lib.name: [] for lib in libs}
    runs = 1 if args.quick else args.runs
    for run in range(runs):
        order = libs[run % len(libs) :] + libs[: run % len(libs)]
        for measure in measures:
            params = dict(measure.params, **(measure.quick if args.quick else {}))
            for lib in order:
                if measure.compress and (lib.defaults or not lib.compression):
                    # The deflate measure is the defaults row's own measure.
                    result: dict[str, Any] = {"error": "n/a"}
                else:
                    result = run_one(lib, measure, params, logs, f"r{run}")
                shown = result.get("error") or ", ".join(
                    f"{m.key}={fmt(result[m.key], m.digits)}"
                    for m in measure.metrics
                    if m.key in result
                )
                if "detail" in result:
                    shown += f" [{result['detail']}]"
                print(
                    f"  run {run + 1}/{runs} {measure.name:<10} {lib.name:<18} {shown}", flush=True
                )
                for metric in measure.metrics:
                    value = result.get(metric.key, result.get("error", "error"))
                    measure.results[metric.key][lib.name].append(value)
    return measures


def run_profiles(args: argparse.Namespace, logs: Path) -> None:
    """cProfile the trio_ws server (or client) during the 16 B and 1 MiB echoes."""
    lib = LIBRARIES[0]
    wanted = args.measures or ["pipelined", "bulk"]
    for measure in build_measures():
        if measure.name not in wanted or measure.name == "memory":
            continue
        params = dict(measure.params, **(measure.quick if args.quick else {}))
        path = logs / f"profile-{measure.name}.prof"
        side = args.profile_side
        result = run_one(
            lib, measure, params, logs, "profile", profile=str(path), profile_side=side
        )
        print(
            f"\n=== trio_ws {side}, {measure.title} (profiled result: "
            f"{ {k: round(v, 1) for k, v in result.items() if isinstance(v, float)} })"
        )
        if not path.exists():
            print(f"no profile written: {result}")
            continue
        for order in ("cumulative", "tottime"):
            print(f"\n--- top {args.top} by {order} ---")
            stats = pstats.Stats(str(path))
            stats.strip_dirs().sort_stats(order).print_stats(args.top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="short smoke test, 1 run")
    parser.add_argument("--markdown", type=Path, help="also write the results as markdown here")
    parser.add_argument("--libs", nargs="+", help="only these libraries (names as printed)")
    parser.add_argument(
        "--measures",
        nargs="+",
        choices=[m.name for m in build_measures()],
        help="only these measures",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead: cProfile the trio_ws server with its defaults (default: pipelined and bulk)",
    )
    parser.add_argument(
        "--profile-side", choices=["server", "client"], default="server", help="which to profile"
    )
    parser.add_argument("--top", type=int, default=15, help="profile rows to print")
    parser.add_argument("--logs", type=Path, help="keep worker logs and profiles here")
    args = parser.parse_args()

    libs = available([lib for lib in LIBRARIES if not args.libs or lib.name in args.libs])
    # A SIGTERM to the parent still runs the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with contextlib.ExitStack() as stack:
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            logs = args.logs
        else:
            logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="peers-")))
        try:
            if args.profile:
                run_profiles(args, logs)
                return 0
            machine_line = machine()
            start = time.monotonic()
            measures = run_benchmark(args, libs, logs)
            with contextlib.suppress(OSError):
                end_load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
                machine_line += f", at end {end_load}"
            text, md = report(measures, libs, args, time.monotonic() - start, machine_line)
            print()
            print(text)
            if args.markdown:
                args.markdown.write_text(md)
                print(f"\nwrote {args.markdown}")
        finally:
            Child.kill_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
