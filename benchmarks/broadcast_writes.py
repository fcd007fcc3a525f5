"""System calls, CPU and latency of broadcast(), coalesced writes against inline ones.

One Trio process serves N raw loopback clients that never read during a
measurement (the kernel buffers what they are sent; they are drained in
between). A publisher broadcasts a 1 KiB message once per scheduler pass,
as benchmarks/broadcast.py's does. Two modes alternate in the same process:
"coalesced" is trio_ws as it is; "inline" makes ``FrameWriter.put_batched``
write at once, as every broadcast did before writes were coalesced.

Reported per round and mode: ``writev`` calls (counted by wrapping
``os.writev``), CPU time of the thread per delivery (steadier than wall
time on a shared machine), wall time per delivery, and the time from
publishing a message to the ``writev`` that hands it to the kernel
(p50/p99 over every delivery). Bounded: a fixed number of messages per
round and of rounds. Run it under the lock::

    flock /tmp/trio_ws-bench.lock python benchmarks/broadcast_writes.py --clients 1000
"""

from __future__ import annotations

import argparse
import os
import socket
import time
from collections.abc import Sequence

import trio

import trio_ws
from trio_ws.socket_io import FrameWriter, Piece

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
SEQ_DIGITS = 8


class Counter:
    """Wraps os.writev: counts calls and notes when each message left."""

    def __init__(self) -> None:
        self.calls = 0
        self.published: dict[int, float] = {}
        self.latencies: list[float] = []
        self.real = os.writev

    def writev(self, fd: int, buffers: Sequence[Piece]) -> int:
        self.calls += 1
        now = time.perf_counter()
        for buffer in buffers:
            if len(buffer) >= 1024:  # a payload: its first digits are its number
                self.latencies.append(now - self.published[int(bytes(buffer[:SEQ_DIGITS]))])
        return self.real(fd, buffers)


def connect(port: int, count: int) -> list[socket.socket]:
    clients = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(4096)
        client.setblocking(False)
        clients.append(client)
    return clients


def drain(clients: list[socket.socket]) -> None:
    for client in clients:
        try:
            while client.recv(1 << 20):
                pass
        except BlockingIOError:
            pass


async def handler(request: trio_ws.WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:
            await ws.get_message()
    except trio_ws.ConnectionClosed:
        pass


async def main(args: argparse.Namespace) -> None:
    counter = Counter()
    os.writev = counter.writev
    coalesced = FrameWriter.put_batched

    def inline(self: FrameWriter, frame: tuple[Piece, ...]) -> None:
        self.put(*frame)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_ws.serve_websocket, handler, "127.0.0.1", 0, None)
        clients = await trio.to_thread.run_sync(connect, server.port, args.clients)
        with trio.fail_after(60):
            while len(server.connections) < args.clients:
                await trio.sleep(0.01)
        for _ in range(args.rounds):
            for mode in ("inline", "coalesced"):
                FrameWriter.put_batched = inline if mode == "inline" else coalesced  # type: ignore[method-assign]
                drain(clients)
                await trio.sleep(0.01)
                counter.calls = 0
                counter.latencies.clear()
                cpu, wall = time.thread_time(), time.perf_counter()
                for seq in range(args.messages):
                    counter.published[seq] = time.perf_counter()
                    text = f"{seq:0{SEQ_DIGITS}d}" + "x" * (1024 - SEQ_DIGITS)
                    trio_ws.broadcast(server.connections, text)
                    await trio.sleep(0)
                for _ in range(5):  # the flusher writes what nothing joined
                    await trio.sleep(0)
                cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
                deliveries = args.messages * args.clients
                latencies = sorted(counter.latencies)
                p50 = latencies[len(latencies) // 2] * 1e3
                p99 = latencies[int(len(latencies) * 0.99)] * 1e3
                print(
                    f"{mode:9}  writev {counter.calls:6} for {deliveries} deliveries  "
                    f"CPU {cpu / deliveries * 1e6:5.2f} us  wall {wall / deliveries * 1e6:5.2f} us "
                    f"per delivery  publish-to-writev p50 {p50:.1f} ms p99 {p99:.1f} ms",
                    flush=True,
                )
        FrameWriter.put_batched = coalesced  # type: ignore[method-assign]
        os.writev = counter.real
        nursery.cancel_scope.cancel()
    for client in clients:
        client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=60, help="per round and mode")
    parser.add_argument("--rounds", type=int, default=3)
    trio.run(main, parser.parse_args())
