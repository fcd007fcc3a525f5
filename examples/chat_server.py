"""A chat server: every message goes to every connected client.

One slow client must not stall the others, so each client gets its own
outgoing queue of bounded size and its own sender task. If a client falls
more than QUEUE messages behind, it is disconnected (close code 1008) instead
of making everyone wait or letting its backlog grow without bound.

    python examples/chat_server.py --port 8766
"""

from __future__ import annotations

import argparse
import contextlib

import trio

import trio_ws

QUEUE = 32


class Member:
    """One client: its outgoing queue and the task that drains it."""

    def __init__(self, ws: trio_ws.WebSocketConnection) -> None:
        self.ws = ws
        self.outbox, self.inbox = trio.open_memory_channel[str](QUEUE)
        self.sending = trio.CancelScope()

    async def send_loop(self) -> None:
        with contextlib.suppress(trio_ws.ConnectionClosed):
            with self.sending:
                async for text in self.inbox:
                    await self.ws.send_message(text)
            if self.sending.cancelled_caught:
                # Cancelling a send that waits for room sends nothing, so
                # the Close frame still follows whole messages.
                await self.ws.aclose(1008, "too slow to keep up")


class Room:
    def __init__(self) -> None:
        self.members: dict[trio_ws.WebSocketConnection, Member] = {}

    def broadcast(self, text: str) -> None:
        for ws, member in list(self.members.items()):
            try:
                member.outbox.send_nowait(text)  # never waits for a slow client
            except trio.WouldBlock:
                del self.members[ws]  # too far behind: it is disconnected
                member.sending.cancel()


async def chat(request: trio_ws.WebSocketRequest, room: Room) -> None:
    ws = await request.accept()
    member = Member(ws)
    room.members[ws] = member
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(member.send_loop)
            with contextlib.suppress(trio_ws.ConnectionClosed):
                async for message in ws:
                    room.broadcast(str(message))
            member.outbox.close()  # the client has gone: its send loop ends
    finally:
        room.members.pop(ws, None)


async def main(host: str, port: int) -> None:
    room = Room()

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        await chat(request, room)

    server = trio_ws.WebSocketServer(handler, await trio.open_tcp_listeners(port, host=host))
    print(f"chat server on ws://{host}:{server.port}/", flush=True)
    await server.run()  # until Ctrl-C


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    # Ctrl-C: clients get 1001 (going away), KeyboardInterrupt comes out as itself.
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main, args.host, args.port)
