"""The test side's one opening-handshake helper (RFC 6455 section 4), by hand.

Upgrade requests, the accept token, reading and picking apart an HTTP head,
and the answer a correct server gives. Like the frame codec, it shares no
code with trio_ws, so the tests can check trio_ws's handshake against it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re

import trio

#: RFC 6455 4.2.2: appended to the client's key before hashing.
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def new_key() -> bytes:
    """A fresh ``Sec-WebSocket-Key``: 16 random bytes, base64."""
    return base64.b64encode(os.urandom(16))


def upgrade_request(
    path: str = "/", host: str = "127.0.0.1", extra: bytes = b"", key: bytes | None = None
) -> bytes:
    """A valid upgrade request head; *extra* holds further ``Name: value\\r\\n`` lines."""
    key = new_key() if key is None else key
    return (
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
        ).encode()
        + extra
        + b"\r\n"
    )


def accept_token(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value that answers *key*."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def header_values(head: bytes, name: bytes) -> list[bytes]:
    """Every value of header *name* (lower case) in an HTTP head, in order."""
    values = []
    for line in head.split(b"\n")[1:]:
        line = line.rstrip(b"\r")
        if b":" in line:
            n, v = line.split(b":", 1)
            if n.strip().lower() == name:
                values.append(v.strip())
    return values


def request_key(request: bytes) -> bytes:
    """The ``Sec-WebSocket-Key`` of an upgrade request."""
    return header_values(request, b"sec-websocket-key")[0]


def accept_answer(request: bytes, extra: bytes = b"") -> bytes:
    """The 101 answer a correct server gives *request*; *extra*: more header lines."""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
        + accept_token(request_key(request))
        + b"\r\n"
        + extra
        + b"\r\n"
    )


def parse_response(data: bytes) -> tuple[int, bytes, bytes]:
    """Status, head and body of a complete HTTP/1.1 response; asserts it is one."""
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"incomplete HTTP answer: {data[:200]!r}"
    match = re.match(rb"HTTP/1\.1 (\d{3}) [^\r\n]*$", head.split(b"\r\n")[0])
    assert match, f"malformed status line: {head[:100]!r}"
    return int(match.group(1)), head, body


async def read_head(stream: trio.abc.ReceiveStream, buffer: bytearray) -> bytes:
    """Read up to the end of an HTTP head; what follows it stays in *buffer*."""
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError(f"peer closed during the head: {bytes(buffer)[:100]!r}")
        buffer += data
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    del buffer[:end]
    return head
