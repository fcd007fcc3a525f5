"""Encoding of outbound whole-message frames (RFC 6455 section 5.2).

wsproto serialises a frame by copying its payload several times (once more
per registered extension) and masks it byte-table by byte-table in Python. A
complete, unfragmented data message is the common case and the simplest
frame there is, so trio_ws encodes it here: the header is built on its own
and the payload is passed on as it is (servers) or masked once (clients).
Fragments and control frames still go through wsproto, which keeps the
connection's state.
"""

from __future__ import annotations

import os
import struct

OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2

_FIN = 0x80
_RSV1 = 0x40
_MASKED = 0x80

#: For every key byte, the table that XORs a byte with it.
_XOR_TABLES = [bytes(b ^ key for b in range(256)) for key in range(256)]

#: Below this many bytes one big-integer XOR is the quickest way to mask;
#: above it, four byte-translations (one per key byte) win.
_INT_MASK_LIMIT = 512


def encode_message(
    opcode: int, payload: bytes, *, rsv1: bool = False, mask: bool = False
) -> tuple[bytes, bytes | bytearray]:
    """The frame of a whole message: ``(header, payload)``, ready to write.

    With *mask* (a client's frames must be masked), a fresh random key from
    ``os.urandom`` goes into the header and the payload is masked with it.
    """
    length = len(payload)
    first = _FIN | (_RSV1 if rsv1 else 0) | opcode
    second = _MASKED if mask else 0
    if length < 126:
        header = bytes((first, second | length))
    elif length < 0x10000:
        header = struct.pack("!BBH", first, second | 126, length)
    else:
        header = struct.pack("!BBQ", first, second | 127, length)
    if not mask:
        return (header, payload)
    key = os.urandom(4)
    return (header + key, apply_mask(payload, key))


def apply_mask(data: bytes, key: bytes) -> bytes | bytearray:
    """*data* XORed with the 4-byte *key* repeated (masking and unmasking alike)."""
    size = len(data)
    if size <= _INT_MASK_LIMIT:
        repeated = (key * (size // 4 + 1))[:size]
        mixed = int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")
        return mixed.to_bytes(size, "little")
    out = bytearray(data)
    for i in range(4):
        out[i::4] = out[i::4].translate(_XOR_TABLES[key[i]])
    return out
