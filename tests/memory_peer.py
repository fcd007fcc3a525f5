"""A peer in its own process whose memory the backpressure tests measure.

``python -m tests.memory_peer slow-server`` serves many connections whose
handlers read one message every 50 ms (``/echo`` echoes at once instead) and
prints its port.

``python -m tests.memory_peer server COUNT`` serves one connection and
``python -m tests.memory_peer client URL COUNT`` opens one; either way the
peer accepts the connection and reads nothing until a line arrives on its
standard input, then reads COUNT messages, checks that message *i* starts
with *i* as 4 big-endian bytes, and prints ``ok COUNT``.
"""

from __future__ import annotations

import sys

import trio

import trio_ws

MiB = 2**20


async def drain_after_go(ws: trio_ws.WebSocketConnection, count: int) -> None:
    stdin = trio.lowlevel.FdStream(0)
    print("connected", flush=True)
    await stdin.receive_some()  # "go"
    for i in range(count):
        message = await ws.get_message()
        assert isinstance(message, bytes) and message[:4] == i.to_bytes(4, "big"), i
        assert len(message) == MiB
    print(f"ok {count}", flush=True)


async def server(count: int) -> None:
    async with trio.open_nursery() as nursery:

        async def handler(request: trio_ws.WebSocketRequest) -> None:
            ws = await request.accept()
            await drain_after_go(ws, count)
            nursery.cancel_scope.cancel()

        server = await nursery.start(trio_ws.serve_websocket, handler, "127.0.0.1", 0, None)
        print(server.port, flush=True)


async def client(url: str, count: int) -> None:
    async with trio_ws.open_websocket_url(url) as ws:
        await drain_after_go(ws, count)


async def slow_server() -> None:
    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        async for message in ws:
            if request.path == "/echo":
                await ws.send_message(message)
            else:
                await trio.sleep(0.05)  # a slow application

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_ws.serve_websocket, handler, "127.0.0.1", 0, None)
        print(server.port, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "slow-server":
        trio.run(slow_server)
    elif sys.argv[1] == "server":
        trio.run(server, int(sys.argv[2]))
    else:
        trio.run(client, sys.argv[2], int(sys.argv[3]))
