"""The floor on Trio: a hand-written WebSocket echo over bare Trio sockets.

See ``_floor.py``: no parsing worth the name, no checks, no options. What a
WebSocket connection costs on Trio itself, so that a library's setup rate
can be read against what the event loop allows. ``--compress`` is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import _floor
import trio
from _common import trio_main

READ = 64 * 1024


class Peer:
    def __init__(self, stream: trio.SocketStream, mask: bool) -> None:
        self.stream, self.mask, self.buffer = stream, mask, bytearray()

    async def head(self) -> bytes:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            data = await self.stream.receive_some(READ)
            if not data:
                raise EOFError("closed during the handshake")
            self.buffer += data
        head = bytes(self.buffer[: end + 4])
        del self.buffer[: end + 4]
        return head

    async def frame(self) -> tuple[int, bytes]:
        while (got := _floor.decode(self.buffer)) is None:
            data = await self.stream.receive_some(READ)
            if not data:
                raise EOFError("closed mid-frame")
            self.buffer += data
        return got

    async def send(self, message: Any) -> None:
        text = isinstance(message, str)
        payload = message.encode() if text else message
        await self.stream.send_all(_floor.encode(1 if text else 2, payload, self.mask))

    async def recv(self) -> Any:
        opcode, payload = await self.frame()
        return payload.decode() if opcode == 1 else payload


async def serve(port: int, compress: bool, max_size: int, *, task_status: Any) -> None:
    if compress:
        raise SystemExit("the floor has no compression")

    async def handle(stream: trio.SocketStream) -> None:
        peer = Peer(stream, mask=False)
        try:
            await stream.send_all(_floor.response(await peer.head()))
            while True:
                opcode, payload = await peer.frame()
                if opcode == 8:
                    await stream.send_all(_floor.encode(8, payload[:2], False))
                    break
                await stream.send_all(_floor.encode(opcode, payload, False))
        except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started(listeners[0].socket.getsockname()[1])


@asynccontextmanager
async def connect(port: int, compress: bool, max_size: int) -> AsyncIterator[Any]:
    if compress:
        raise SystemExit("the floor has no compression")
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        peer = Peer(stream, mask=True)
        await stream.send_all(_floor.REQUEST_TEMPLATE % port)
        await peer.head()
        yield peer.send, peer.recv
        await stream.send_all(_floor.encode(8, _floor.CLOSE_1000, True))
        while (await peer.frame())[0] != 8:
            pass


if __name__ == "__main__":
    trio_main(serve, connect)
