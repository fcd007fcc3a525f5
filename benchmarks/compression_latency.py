"""Does one connection's bulk compressed traffic stall the others?

One client echoes large, compressible messages through a trio_ws server
while a second client measures small-message round trips on its own
connection. Run once with large payloads (de)compressed in worker threads
(the default) and once with everything inline on the Trio thread, both ends
in this process. Not a test: run it by hand,

    python benchmarks/compression_latency.py [--total-mib 64] [--message-mib 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import trio

import trio_ws
from trio_ws import DeflateOptions

MiB = 2**20


async def echo(request: trio_ws.WebSocketRequest) -> None:
    ws = await request.accept()
    async for message in ws:
        await ws.send_message(message)


async def measure(options: DeflateOptions, total: int, size: int) -> tuple[list[float], float]:
    rtts: list[float] = []
    limits = dict(max_message_size=2 * size, compression=options)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: trio_ws.serve_websocket(
                echo, "127.0.0.1", 0, None, task_status=task_status, **limits
            )
        )
        url = f"ws://127.0.0.1:{server.port}/"
        async with (
            trio_ws.open_websocket_url(url, **limits) as bulk,
            trio_ws.open_websocket_url(url, **limits) as probe,
        ):
            done = trio.Event()

            async def probe_loop() -> None:
                while not done.is_set():
                    start = time.perf_counter()
                    await probe.send_message("ping")
                    await probe.get_message()
                    rtts.append(time.perf_counter() - start)
                    await trio.sleep(0.001)

            payload = (b"log line: everything is fine, nothing to see here\n" * (size // 50))[:size]
            async with trio.open_nursery() as probing:
                probing.start_soon(probe_loop)
                start = time.perf_counter()
                for _ in range(total // size):
                    await bulk.send_message(payload)
                    await bulk.get_message()
                elapsed = time.perf_counter() - start
                done.set()
        nursery.cancel_scope.cancel()
    return rtts, total / MiB / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-mib", type=int, default=64)
    parser.add_argument("--message-mib", type=int, default=4)
    args = parser.parse_args()
    total, size = args.total_mib * MiB, args.message_mib * MiB
    print(f"{args.total_mib} MiB echoed in {args.message_mib} MiB compressible messages")
    runs = [
        ("worker threads (default)", DeflateOptions()),
        ("inline on the Trio thread", DeflateOptions(thread_threshold=2**62)),
    ]
    for label, options in runs:
        rtts, speed = trio.run(measure, options, total, size)
        rtts_ms = sorted(r * 1000 for r in rtts)
        p99 = rtts_ms[int(len(rtts_ms) * 0.99) - 1]
        print(
            f"{label:27} bulk {speed:6.1f} MiB/s; other connection's round trip: "
            f"median {statistics.median(rtts_ms):.2f} ms, p99 {p99:.2f} ms, "
            f"max {rtts_ms[-1]:.2f} ms ({len(rtts_ms)} samples)"
        )


if __name__ == "__main__":
    main()
