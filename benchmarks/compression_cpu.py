"""CPU time per compressed 64 KiB JSON echo, server and client, next to websockets.

``peers.py`` reports wall-clock rates, which on a shared machine say as much
about the neighbours as about the library. This script counts what each
side spends instead: the peer workers of ``benchmarks/_peers`` run the same
pipelined JSON echo as ``peers.py --measures compressed``, and the server's
and the client's CPU time (user + system, from ``/proc``) are read around two
client runs of different lengths; the difference of the two, divided by the
difference in messages, is the cost of one echoed message with start-up,
handshake and warm-up cancelled out. Not a test: run it by hand::

    python benchmarks/compression_cpu.py [--libs trio_ws websockets_asyncio] [--rounds 3]
    python benchmarks/compression_cpu.py --no-compression   # the same echo, uncompressed

Each figure is the median over the rounds, with min-max.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

PEERS = Path(__file__).resolve().parent / "_peers"
KiB = 1024
#: Seconds of pipelined echo in the short and the long client run.
WINDOWS = (1.0, 3.0)
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU time of process *pid* so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS  # utime, stime


def read_tag(proc: subprocess.Popen[str], tag: str) -> object:
    assert proc.stdout is not None
    for line in proc.stdout:
        name, _, payload = line.partition(" ")
        if name == tag:
            return json.loads(payload)
    raise RuntimeError(f"worker exited before {tag} (code {proc.wait()})")


def client_run(
    script: Path, port: int, window: float, compress: bool
) -> tuple[int, tuple[float, float], float]:
    """Messages echoed, client (user, system) CPU seconds, and MiB/s, in one
    pipelined run of *window* seconds."""
    params = {"kind": "json", "size": 64 * KiB, "inflight": 4, "warmup": 0.5}
    params.update(window=window, timeout=window + 60)
    argv = [sys.executable, str(script), "client", "--port", str(port)]
    argv += ["--compress"] if compress else []
    argv += ["--measure", "stream", "--params", json.dumps(params)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        result = read_tag(proc, "RESULT")
        assert isinstance(result, dict) and "messages" in result, result
        _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0
    return int(result["messages"]), (usage.ru_utime, usage.ru_stime), result["mib_per_s"]


def one_round(lib: str, compress: bool) -> list[float]:
    """Server user and system, client user and system CPU µs per message,
    and the long run's MiB/s."""
    script = PEERS / f"{lib}_peer.py"
    argv = [sys.executable, str(script), "server", *(["--compress"] if compress else [])]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as server:
        try:
            port = read_tag(server, "PORT")
            assert isinstance(port, int)
            runs = []
            for window in WINDOWS:
                before = cpu_seconds(server.pid)
                messages, client_cpu, rate = client_run(script, port, window, compress)
                after = cpu_seconds(server.pid)
                server_cpu = (after[0] - before[0], after[1] - before[1])
                runs.append((messages, [*server_cpu, *client_cpu], rate))
        finally:
            server.terminate()
            server.wait(10)
    (short, short_cpu, _), (long, long_cpu, rate) = runs
    extra = max(1, long - short)
    return [(b - a) / extra * 1e6 for a, b in zip(short_cpu, long_cpu, strict=True)] + [rate]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.0f} ({min(values):.0f}-{max(values):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--libs", nargs="+", default=["trio_ws", "websockets_asyncio"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-compression",
        action="store_true",
        help="the same echo uncompressed: what the rest of each library costs",
    )
    args = parser.parse_args()
    columns = ["server user", "server sys", "client user", "client sys", "MiB/s"]
    results: dict[str, list[list[float]]] = {lib: [] for lib in args.libs}
    for _ in range(args.rounds):
        for lib in args.libs:  # interleaved, so drifting load hits each alike
            results[lib].append(one_round(lib, not args.no_compression))
    setting = "uncompressed" if args.no_compression else "permessage-deflate"
    print(
        f"CPU µs per 64 KiB JSON echo, {setting} (median of {args.rounds}, min-max); "
        "MiB/s of the long run"
    )
    print(f"{'library':20}" + "".join(f"{name:>20}" for name in columns))
    for lib, rows in results.items():
        print(
            f"{lib:20}"
            + "".join(f"{spread(list(column)):>20}" for column in zip(*rows, strict=True))
        )


if __name__ == "__main__":
    main()
