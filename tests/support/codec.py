"""The test side's one WebSocket frame codec (RFC 6455 section 5).

It is the oracle the tests hold trio_ws against, so it shares no code with
trio_ws: nothing here imports ``trio_ws`` (least of all ``trio_ws.core``).
It is written for clarity, not speed, and it can produce every wrong frame a
hostile peer might send: any opcode, FIN and RSV bits, masked or not with any
key, a length in a longer encoding than needed, a 64-bit length with its top
bit set, or an announced length that differs from the payload.

Decoding is deliberately lenient: :func:`decode_frame` reports what is on
the wire, right or wrong, and leaves judging it to the caller.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
#: The name some tests use for opcode 0.
CONTINUATION = CONT
DATA_OPCODES = (CONT, TEXT, BINARY)
KNOWN_OPCODES = (CONT, TEXT, BINARY, CLOSE, PING, PONG)

#: The masking key :class:`Frame` uses unless told otherwise.
DEFAULT_KEY = b"\x37\xfa\x21\x3d"


def mask(data: bytes, key: bytes) -> bytes:
    """XOR *data* with the 4-byte *key* (masking and unmasking are the same)."""
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


@dataclass(frozen=True)
class Frame:
    """A frame to put on the wire, including every way to get it wrong."""

    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv: int = 0
    masked: bool = True
    key: bytes = DEFAULT_KEY
    #: ``min`` (correct), ``7``/``16``/``64`` (that length encoding even if
    #: another is needed), ``64msb`` (64-bit length with its top bit set).
    encoding: str = "min"
    #: Announced payload length, when it should differ from the real one.
    declared: int | None = None

    def __bytes__(self) -> bytes:
        n = len(self.payload) if self.declared is None else self.declared
        head = bytes([(0x80 if self.fin else 0) | (self.rsv & 7) << 4 | self.opcode])
        mask_bit = 0x80 if self.masked else 0
        encoding = self.encoding
        if encoding == "min":
            encoding = "7" if n < 126 else "16" if n < 1 << 16 else "64"
        if encoding == "16" and n >= 1 << 16:
            encoding = "64"
        if encoding == "7":
            head += bytes([mask_bit | n])
        elif encoding == "16":
            head += bytes([mask_bit | 126]) + struct.pack("!H", n)
        else:
            value = n | (1 << 63) if encoding == "64msb" else n
            head += bytes([mask_bit | 127]) + struct.pack("!Q", value & (1 << 64) - 1)
        if not self.masked:
            return head + self.payload
        return head + self.key + mask(self.payload, self.key)


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    mask: bool = True,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """One frame's bytes, masked with a fresh random key unless *mask* is false;
    *length* overrides the announced payload length."""
    key = os.urandom(4) if mask else DEFAULT_KEY
    return bytes(Frame(opcode, payload, fin, rsv, mask, key, declared=length))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def close_frame(code: int | None = 1000, reason: bytes = b"", *, masked: bool = True) -> Frame:
    """A Close frame with *code* and *reason* (no payload at all when *code* is None)."""
    payload = b"" if code is None else close_payload(code, reason)
    return Frame(CLOSE, payload, masked=masked)


def close_code_of(payload: bytes | None) -> int | None:
    """The code in a Close frame's payload (None for an empty payload)."""
    return struct.unpack("!H", payload[:2])[0] if payload else None


@dataclass(frozen=True)
class WireFrame:
    """A frame as it was on the wire, its payload already unmasked."""

    fin: bool
    rsv: int
    opcode: int
    masked: bool
    #: The length field as sent, and how it was encoded (7, 16 or 64 bits).
    length: int
    length_bits: int
    payload: bytes
    #: Bytes the whole frame took on the wire.
    size: int


def decode_frame(data: bytes | bytearray, pos: int = 0) -> WireFrame | None:
    """The frame starting at *pos*, or None while it is incomplete."""
    if pos + 2 > len(data):
        return None
    b0, b1 = data[pos], data[pos + 1]
    n, at, bits = b1 & 0x7F, pos + 2, 7
    if n == 126:
        if at + 2 > len(data):
            return None
        ((n,), at, bits) = (struct.unpack("!H", data[at : at + 2]), at + 2, 16)
    elif n == 127:
        if at + 8 > len(data):
            return None
        ((n,), at, bits) = (struct.unpack("!Q", data[at : at + 8]), at + 8, 64)
    masked = bool(b1 & 0x80)
    key = b""
    if masked:
        if at + 4 > len(data):
            return None
        key, at = bytes(data[at : at + 4]), at + 4
    if at + n > len(data):
        return None
    payload = bytes(data[at : at + n])
    if masked:
        payload = mask(payload, key)
    return WireFrame(
        fin=bool(b0 & 0x80),
        rsv=(b0 >> 4) & 7,
        opcode=b0 & 0x0F,
        masked=masked,
        length=n,
        length_bits=bits,
        payload=payload,
        size=at + n - pos,
    )


def decode_frames(data: bytes | bytearray) -> tuple[list[WireFrame], int]:
    """Every complete frame in *data*, and the offset where the rest begins."""
    frames: list[WireFrame] = []
    pos = 0
    while (wire := decode_frame(data, pos)) is not None:
        frames.append(wire)
        pos += wire.size
    return frames, pos
