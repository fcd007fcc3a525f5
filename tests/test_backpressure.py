"""Backpressure end to end, with the receiving process's memory measured.

A peer floods 1 MiB messages at a connection whose application does not
read. The flooder's sends must block (TCP backpressure), the receiving
process's resident memory must stay within the documented per-connection
bound, and once the application reads, every message arrives in order.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import trio_ws
from trio_ws.options import ConnectionOptions

from .conftest import HOST

MiB = 2**20
COUNT = 60  # 60 MiB offered; far more than the bound plus TCP buffers
ROOT = Path(__file__).resolve().parent.parent
# Interpreter and allocator noise on top of the message data (measured
# growth is reported in the assertion message when it fails).
SLACK = 3 * MiB

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")


def rss_field(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Peer:
    def __init__(self, process: trio.Process) -> None:
        self.process = process
        assert process.stdout is not None and process.stdin is not None
        self.stdout = process.stdout
        self.stdin = process.stdin
        self.buffer = b""

    async def line(self) -> str:
        with trio.fail_after(20):
            while b"\n" not in self.buffer:
                data = await self.stdout.receive_some()
                assert data, "peer exited"
                self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


async def spawn(nursery: trio.Nursery, *args: str) -> Peer:
    process = await nursery.start(
        lambda task_status: trio.run_process(
            [sys.executable, "-m", "tests.memory_peer", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            check=False,
            task_status=task_status,
        )
    )
    return Peer(process)


async def flood_until_stalled(ws: trio_ws.WebSocketConnection, peer: Peer) -> tuple[int, int]:
    """Flood *ws*; return (messages sent when stalled, peak RSS growth)."""
    baseline = rss_field(peer.process.pid, "VmRSS")
    peak_tracked = reset_peak(peer.process.pid)
    sent = 0
    peak = baseline

    noise = os.urandom(MiB - 4)  # incompressible, so compression cannot shrink the flood

    async def flood() -> None:
        nonlocal sent
        for i in range(COUNT):
            await ws.send_message(i.to_bytes(4, "big") + noise)
            sent += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flood)
        last = -1
        for _ in range(100):
            await trio.sleep(0.2)
            peak = max(peak, rss_field(peer.process.pid, "VmRSS"))
            if sent == last:
                break
            last = sent
        stalled_at = sent
        if peak_tracked:
            peak = max(peak, rss_field(peer.process.pid, "VmHWM"))
        await peer.stdin.send_all(b"go\n")
    return stalled_at, peak - baseline


def check(stalled_at: int, growth: int) -> None:
    print(f"stalled after {stalled_at} messages, peer RSS grew {growth / MiB:.2f} MiB")
    bound = ConnectionOptions().memory_bound
    assert stalled_at < COUNT, "the flooder was never blocked"
    assert growth <= bound + SLACK, f"RSS grew {growth / MiB:.1f} MiB, bound {bound / MiB:.1f}"


async def test_server_process_memory_is_bounded_under_flood(nursery: trio.Nursery) -> None:
    peer = await spawn(nursery, "server", str(COUNT))
    port = int(await peer.line())
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
        assert await peer.line() == "connected"
        stalled_at, growth = await flood_until_stalled(ws, peer)
        assert await peer.line() == f"ok {COUNT}"
    check(stalled_at, growth)


async def test_client_process_memory_is_bounded_under_flood(nursery: trio.Nursery) -> None:
    connections: trio.MemorySendChannel[trio_ws.WebSocketConnection]
    connections, accepted = trio.open_memory_channel[trio_ws.WebSocketConnection](1)
    done = trio.Event()

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        await connections.send(await request.accept())
        await done.wait()

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    peer = await spawn(nursery, "client", f"ws://{HOST}:{server.port}/", str(COUNT))
    assert await peer.line() == "connected"
    ws = await accepted.receive()
    stalled_at, growth = await flood_until_stalled(ws, peer)
    assert await peer.line() == f"ok {COUNT}"
    done.set()
    check(stalled_at, growth)


async def test_many_flooders_stay_within_the_bound_and_others_are_served(
    nursery: trio.Nursery,
) -> None:
    """Many peers flood a server whose handlers read slowly.

    The server's memory must stay within the per-connection bound times the
    number of connections, and a well-behaved client must still be answered
    (its round trips are printed, not asserted: this is not a benchmark).
    """
    flooders = 10
    peer = await spawn(nursery, "slow-server")
    port = int(await peer.line())
    url = f"ws://{HOST}:{port}"
    noise = os.urandom(MiB)
    baseline = rss_field(peer.process.pid, "VmRSS")
    peak = baseline
    sent = [0] * flooders
    round_trips: list[float] = []

    async def flood(i: int) -> None:
        with trio.move_on_after(4):
            async with trio_ws.open_websocket_url(f"{url}/flood") as ws:
                while True:
                    await ws.send_message(noise)
                    sent[i] += 1

    async with trio.open_nursery() as load:
        for i in range(flooders):
            load.start_soon(flood, i)
        async with trio_ws.open_websocket_url(f"{url}/echo") as probe:
            for _ in range(15):
                start = trio.current_time()
                await probe.send_message("ping")
                with trio.fail_after(10):  # liveness, not speed
                    assert await probe.get_message() == "ping"
                round_trips.append(trio.current_time() - start)
                peak = max(peak, rss_field(peer.process.pid, "VmRSS"))
                await trio.sleep(0.2)
    growth = peak - baseline
    # Each slow handler also holds the message it got while it sleeps: the
    # application's memory, not the connection's.
    options = ConnectionOptions()
    bound = flooders * (options.memory_bound + options.max_message_size)
    print(
        f"{flooders} flooders sent {sum(sent)} MiB; server RSS grew {growth / MiB:.1f} MiB "
        f"(bound {bound / MiB:.1f}); probe round trips max {max(round_trips) * 1000:.0f} ms"
    )
    assert growth <= bound + SLACK
    peer.process.terminate()
