"""A hand-written WebSocket peer for tests, independent of trio_ws's code.

It can send any bytes at all, which is what tests of hostile or broken peers
need: frames with bad opcodes, wrong lengths, invalid UTF-8, and so on.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from collections.abc import Awaitable, Callable

import trio

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    mask: bool = True,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """One frame; *length* overrides the announced payload length."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


class Reader:
    """Reads HTTP heads and unmasked frames from a stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.last_first_byte = 0

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError("peer closed the connection")
        self.buffer += data

    async def head(self) -> bytes:
        while b"\r\n\r\n" not in self.buffer:
            await self._fill()
        end = self.buffer.index(b"\r\n\r\n") + 4
        head, self.buffer = bytes(self.buffer[:end]), self.buffer[end:]
        return head

    async def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            await self._fill()
        data, self.buffer = bytes(self.buffer[:n]), self.buffer[n:]
        return data

    async def frame(self) -> tuple[int, bytes]:
        """The next frame as ``(opcode, payload)``, unmasking if needed."""
        b0, b1 = await self.exactly(2)
        self.last_first_byte = b0  # FIN, RSV and opcode bits of the last frame
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.exactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.exactly(8))
        key = await self.exactly(4) if b1 & 0x80 else None
        payload = await self.exactly(n)
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return b0 & 0x0F, payload

    async def close_code(self) -> int | None:
        """Skip frames until a Close frame; return its code."""
        while True:
            opcode, payload = await self.frame()
            if opcode == CLOSE:
                return struct.unpack("!H", payload[:2])[0] if payload else None

    async def eof(self) -> bool:
        """Read until the peer closes; True if nothing else arrived."""
        extra = bytes(self.buffer)
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                return not extra
            extra += data


def upgrade_request(path: str = "/", host: str = "localhost", extra: bytes = b"") -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
        ).encode()
        + extra
        + b"\r\n"
    )


async def raw_client(
    port: int, path: str = "/", extra: bytes = b""
) -> tuple[trio.SocketStream, Reader, bytes]:
    """Connect and upgrade by hand; returns the stream, a reader and the answer head."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(upgrade_request(path, extra=extra))
    reader = Reader(stream)
    head = await reader.head()
    return stream, reader, head


async def http_exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes, return everything the server sends until it closes."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(request)
        answer = b""
        with trio.fail_after(10):
            while data := await stream.receive_some(65536):
                answer += data
        return answer


def accept_answer(request_head: bytes, extra: bytes = b"") -> bytes:
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request_head.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    token = base64.b64encode(hashlib.sha1(key + GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + token + b"\r\n" + extra + b"\r\n"
    )


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

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started(port)
