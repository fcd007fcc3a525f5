"""The least work a WebSocket connection can be: shared by the two floor peers.

No validation, no options, no extensions: a request with a fixed key, a 101
with its accept value, frames of the three sizes the benchmarks send, and the
closing handshake. It is what a connection costs on the event loop itself;
no library can be cheaper on the same loop. Never use this for anything else.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEY = base64.b64encode(os.urandom(16))
REQUEST_TEMPLATE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
KEY_LINE = re.compile(rb"(?im)^sec-websocket-key:[ \t]*(\S+)")
CLOSE_1000 = b"\x03\xe8"


def response(request: bytes) -> bytes:
    match = KEY_LINE.search(request)
    if match is None:
        raise ValueError("no Sec-WebSocket-Key")
    accept = base64.b64encode(hashlib.sha1(match.group(1) + GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


def encode(opcode: int, payload: bytes, mask: bool) -> bytes:
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head = bytes((0x80 | opcode, bit | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, bit | 127)) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + unmask(payload, key)


def unmask(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    if not n:
        return payload
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def decode(buffer: bytearray) -> tuple[int, bytes] | None:
    """Take one whole frame off *buffer*: (opcode, payload), or None if short."""
    if len(buffer) < 2:
        return None
    opcode, n, masked = buffer[0] & 0x0F, buffer[1] & 0x7F, buffer[1] & 0x80
    at = 2
    if n == 126:
        if len(buffer) < 4:
            return None
        n, at = int.from_bytes(buffer[2:4], "big"), 4
    elif n == 127:
        if len(buffer) < 10:
            return None
        n, at = int.from_bytes(buffer[2:10], "big"), 10
    key = b""
    if masked:
        key, at = bytes(buffer[at : at + 4]), at + 4
    if len(buffer) < at + n:
        return None
    payload = bytes(buffer[at : at + n])
    del buffer[: at + n]
    return opcode, unmask(payload, key) if masked else payload
