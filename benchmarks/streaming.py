"""Stream one large message through loopback in each direction.

Reports, per direction, the throughput, the growth of this process's peak
resident memory while the message moves, and the CPU time it took (both
ends run in this process, so the figures cover sender and receiver
together). On a shared machine the CPU time per GiB is the steadier figure:
the rate depends on what else runs. Not a test: run it by hand,

    python benchmarks/streaming.py [--size-mib 1024] [--chunk-kib 64] [--no-compression]
                                   [--data pattern|json|random]

``--data`` picks what the chunks hold: a repeating 256-byte pattern (the
default: deflate shrinks it about 250 times, so the figure is mostly the
sender's compressor), JSON records (about 5.5 times, like API traffic: the
receiver inflates a sizeable compressed stream), or random bytes (which the
sending policy sends uncompressed).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from functools import partial
from pathlib import Path

import trio

import trio_ws

MiB = 2**20


def chunk_data(kind: str, size: int) -> bytes:
    """*size* bytes of the kind ``--data`` names."""
    if kind == "random":
        return random.Random(1).randbytes(size)
    if kind == "json":
        rng = random.Random(1)
        names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
        records = []
        text = b""
        while len(text) < size:
            records.extend(
                {
                    "id": rng.randrange(10**9),
                    "user": rng.choice(names),
                    "score": round(rng.random() * 100, 3),
                    "active": rng.random() < 0.5,
                    "created": 1_700_000_000 + rng.randrange(10**7),
                }
                for _ in range(64)
            )
            text = json.dumps(records).encode()
        return text[:size]
    return bytes(range(256)) * (size // 256) + bytes(size % 256)


def rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


async def run_direction(
    client_sends: bool,
    size: int,
    chunk: int,
    compression: bool = True,
    whole: bool = False,
    data: str = "pattern",
) -> tuple[float, int, float]:
    """Throughput, peak memory growth and CPU seconds per GiB (all threads)
    of one direction; *whole*: the same bytes as whole messages of *chunk*
    bytes instead, for comparison."""
    block = chunk_data(data, chunk)
    count = size // chunk
    received = 0

    async def send(ws: trio_ws.WebSocketConnection) -> None:
        if whole:
            for _ in range(count):
                await ws.send_message(block)
        else:
            await ws.send_message_stream(block for _ in range(count))

    async def receive(ws: trio_ws.WebSocketConnection) -> None:
        nonlocal received
        if whole:
            for _ in range(count):
                received += len(await ws.get_message())
            return
        async with ws.get_message_stream(max_size=None) as stream:
            async for part in stream:
                received += len(part)

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        await (receive(ws) if client_sends else send(ws))
        await ws.get_message()  # wait for the client's goodbye

    options = {} if compression else {"compression": None}
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            partial(trio_ws.serve_websocket, handler, "127.0.0.1", 0, None, **options)
        )
        async with trio_ws.open_websocket(
            "127.0.0.1", server.port, "/", use_ssl=False, **options
        ) as ws:
            baseline = rss("VmRSS")
            reset_peak()
            start, cpu = time.perf_counter(), time.process_time()
            await (send(ws) if client_sends else receive(ws))
            while received < count * chunk:
                await trio.sleep(0.001)
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu
            growth = rss("VmHWM") - baseline
            await ws.send_message("bye")
        nursery.cancel_scope.cancel()
    assert received == count * chunk
    return count * chunk / MiB / elapsed, growth, cpu / (count * chunk / MiB) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--chunk-kib", type=int, default=64)
    parser.add_argument(
        "--no-compression", action="store_true", help="compression=None (default: negotiated)"
    )
    parser.add_argument("--data", choices=["pattern", "json", "random"], default="pattern")
    args = parser.parse_args()
    size, chunk = args.size_mib * MiB, args.chunk_kib * 1024
    setting = "compression off" if args.no_compression else "defaults (deflate negotiated)"
    print(
        f"one {args.size_mib} MiB message in {args.chunk_kib} KiB chunks of {args.data} data, "
        f"{setting}"
    )
    compression = not args.no_compression
    for client_sends, label in [(True, "client -> server"), (False, "server -> client")]:
        speed, growth, cpu = trio.run(
            run_direction, client_sends, size, chunk, compression, False, args.data
        )
        print(
            f"{label}: {speed:8.1f} MiB/s, peak RSS growth {growth / MiB:6.2f} MiB, "
            f"CPU {cpu:6.2f} s/GiB"
        )
        # The same bytes as whole 1 MiB messages, for the ratio.
        whole, _, whole_cpu = trio.run(
            run_direction, client_sends, size, MiB, compression, True, args.data
        )
        print(
            f"  whole 1 MiB messages: {whole:8.1f} MiB/s, CPU {whole_cpu:6.2f} s/GiB "
            f"(streamed/whole: rate {speed / whole:.2f}, CPU cost {cpu / whole_cpu:.2f})"
        )


if __name__ == "__main__":
    main()
