"""A chat server: every message goes to every connected client.

One slow client must not stall the others, so each client gets its own
outgoing queue of bounded size and its own sender task. If a client falls
more than QUEUE messages behind, it is disconnected (close code 1008) instead
of making everyone wait or letting its backlog grow without bound.

    python examples/chat_server.py --port 8766
"""

from __future__ import annotations

import argparse

import trio

import trio_ws

QUEUE = 32


class Room:
    def __init__(self) -> None:
        self.members: dict[trio_ws.WebSocketConnection, trio.MemorySendChannel[str]] = {}

    def broadcast(self, text: str) -> None:
        for ws, outbox in list(self.members.items()):
            try:
                outbox.send_nowait(text)  # never waits for a slow client
            except trio.WouldBlock:
                outbox.close()  # too far behind: its sender closes it with 1008
                del self.members[ws]


async def send_loop(ws: trio_ws.WebSocketConnection, inbox: trio.MemoryReceiveChannel[str]) -> None:
    async for text in inbox:
        await ws.send_message(text)
    await ws.aclose(1008, "too slow to keep up")


async def chat(request: trio_ws.WebSocketRequest, room: Room) -> None:
    ws = await request.accept()
    outbox, inbox = trio.open_memory_channel[str](QUEUE)
    room.members[ws] = outbox
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_loop, ws, inbox)
        try:
            async for message in ws:
                room.broadcast(str(message))
        finally:
            room.members.pop(ws, None)
            nursery.cancel_scope.cancel()


async def main(host: str, port: int) -> None:
    room = Room()

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        await chat(request, room)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_ws.serve_websocket, handler, host, port, None)
        print(f"chat server on ws://{host}:{server.port}/", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    trio.run(main, args.host, args.port)
