"""Hand-written WebSocket peers over real loopback sockets, for tests.

They can send any bytes at all (built with :mod:`tests.support.codec`),
which is what tests of hostile or broken peers need, and they read what
trio_ws sends with the same independent codec.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from .codec import CLOSE, close_code_of, decode_frame
from .handshake import read_head, upgrade_request

HOST = "127.0.0.1"


class Reader:
    """Reads HTTP heads and frames from a stream."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.last_first_byte = 0

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError("peer closed the connection")
        self.buffer += data

    async def head(self) -> bytes:
        return await read_head(self.stream, self.buffer)

    async def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            await self._fill()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    async def frame(self) -> tuple[int, bytes]:
        """The next frame as ``(opcode, payload)``, unmasked if it was masked."""
        while (wire := decode_frame(self.buffer)) is None:
            await self._fill()
        del self.buffer[: wire.size]
        # FIN, RSV and opcode bits of the last frame
        self.last_first_byte = (0x80 if wire.fin else 0) | wire.rsv << 4 | wire.opcode
        return wire.opcode, wire.payload

    async def close_code(self) -> int | None:
        """Skip frames until a Close frame; return its code."""
        while True:
            opcode, payload = await self.frame()
            if opcode == CLOSE:
                return close_code_of(payload)

    async def eof(self) -> bool:
        """Read until the peer closes; True if nothing else arrived."""
        extra = bytes(self.buffer)
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                return not extra
            extra += data


async def raw_client(
    port: int, path: str = "/", extra: bytes = b""
) -> tuple[trio.SocketStream, Reader, bytes]:
    """Connect and upgrade by hand; returns the stream, a reader and the answer head."""
    stream = await trio.open_tcp_stream(HOST, port)
    await stream.send_all(upgrade_request(path, extra=extra))
    reader = Reader(stream)
    head = await reader.head()
    return stream, reader, head


async def http_exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes, return everything the server sends until it closes."""
    async with await trio.open_tcp_stream(HOST, port) as stream:
        await stream.send_all(request)
        answer = b""
        with trio.fail_after(10):
            while data := await stream.receive_some(65536):
                answer += data
        return answer


Script = Callable[[trio.SocketStream, Reader, bytes], Awaitable[None]]


async def serve_raw(
    script: Script, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """A server that runs *script(stream, reader, request_head)* per connection."""

    async def handle(stream: trio.SocketStream) -> None:
        reader = Reader(stream)
        try:
            head = await reader.head()
            await script(stream, reader, head)
        except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    listeners = await trio.open_tcp_listeners(0, host=HOST)
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started(port)


async def one_connection_server(
    script: Callable[[trio.SocketStream], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on 127.0.0.1, run *script* for the first connection, then stop."""
    listener = (await trio.open_tcp_listeners(0, host=HOST))[0]
    async with listener:
        task_status.started(listener.socket.getsockname()[1])
        stream = await listener.accept()
    async with stream:
        try:
            await script(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def converse(
    stream: trio.abc.HalfCloseableStream, writes: list[bytes], pause: bool
) -> tuple[bytes, str]:
    """Send *writes* then EOF while reading everything until the peer's EOF.

    Returns the bytes read and how the transport ended: ``eof``, or
    ``reset`` when the peer's kernel destroyed the connection.
    """
    received = bytearray()
    ending = "eof"

    async def send() -> None:
        try:
            for data in writes:
                await stream.send_all(data)
                if pause:
                    await trio.sleep(0.001)
            await stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer hung up; what it sent before says why

    async def receive() -> None:
        nonlocal ending
        try:
            while data := await stream.receive_some(65536):
                received.extend(data)
        except trio.BrokenResourceError:
            ending = "reset"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        nursery.start_soon(receive)
    return bytes(received), ending
