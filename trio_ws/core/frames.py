"""Whole-message data frames, both ways, and frame boundaries (RFC 6455 5.2).

wsproto serialises a frame by copying its payload several times (once more
per registered extension) and spends several microseconds of Python on each
frame it parses. A complete, unfragmented, uncompressed data message is the
common case and the simplest frame there is, so trio_ws encodes it here,
and decodes it here when it arrives whole in one read and breaks no rule.
A whole compressed message is found here too, and inflated by
:meth:`trio_ws.core.deflate.PerMessageDeflate.inflate_message`.
Everything else (fragments, control frames, compressed frames split across
reads, and every frame that breaks a rule) goes to wsproto,
which keeps the protocol state and reports the violations. To hand wsproto
exactly the frames it should see, the reader finds frame boundaries with
:func:`frame_extent`.
"""

from __future__ import annotations

import os
import struct

try:  # the optional speedup: pip install 'trio_ws[speedups]'
    import numpy

    HAVE_NUMPY = True
except ImportError:  # pragma: no cover - the fallback is tested directly
    HAVE_NUMPY = False

CONTINUATION = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2

_FIN = 0x80
_RSV1 = 0x40
_MASKED = 0x80
_LENGTH = 0x7F

#: Added to the opcode :func:`simple_opcode` returns for a compressed (RSV1) frame.
COMPRESSED = _RSV1

#: First bytes of simple frames: final text or binary, no RSV bit...
SIMPLE = frozenset((_FIN | OPCODE_TEXT, _FIN | OPCODE_BINARY))
#: ...and, where permessage-deflate was negotiated, with RSV1 (compressed).
SIMPLE_OR_COMPRESSED = SIMPLE | {first | COMPRESSED for first in SIMPLE}

#: For every key byte, the table that XORs a byte with it.
_XOR_TABLES = [bytes(b ^ key for b in range(256)) for key in range(256)]

#: Below this many bytes one big-integer XOR is the quickest way to mask;
#: above it, four byte-translations (one per key byte) win.
_INT_MASK_LIMIT = 512


def encode_message(
    opcode: int, payload: bytes, *, rsv1: bool = False, mask: bool = False, fin: bool = True
) -> tuple[bytes, bytes | bytearray]:
    """The frame of a whole message: ``(header, payload)``, ready to write.

    With *mask* (a client's frames must be masked), a fresh random key from
    ``os.urandom`` goes into the header and the payload is masked with it.
    ``fin=False`` makes a fragment, not the last frame of its message.
    """
    length = len(payload)
    first = (_FIN if fin else 0) | (_RSV1 if rsv1 else 0) | opcode
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


def apply_mask(data: bytes | bytearray | memoryview, key: bytes) -> bytes | bytearray:
    """*data* XORed with the 4-byte *key* repeated (masking and unmasking alike).

    Payloads up to 512 bytes take one big-integer XOR. Larger ones take four
    byte-translations in pure Python (about 1.2 GiB/s for 64 KiB on the
    development machine), or, when numpy is installed, one 32-bit XOR over
    the whole buffer (about 20 GiB/s).
    """
    size = len(data)
    if size <= _INT_MASK_LIMIT:
        repeated = (key * (size // 4 + 1))[:size]
        mixed = int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")
        return mixed.to_bytes(size, "little")
    if HAVE_NUMPY:
        return _mask_words(data, key)
    return _mask_bytes(data, key)


def _mask_bytes(data: bytes | bytearray | memoryview, key: bytes) -> bytearray:
    out = bytearray(data)
    for i in range(4):
        out[i::4] = out[i::4].translate(_XOR_TABLES[key[i]])
    return out


def _mask_words(data: bytes | bytearray | memoryview, key: bytes) -> bytearray:
    out = bytearray(data)
    words = len(out) // 4
    # Both sides are read in the machine's byte order, so bytes line up.
    view = numpy.frombuffer(out, dtype=numpy.uint32, count=words)
    numpy.bitwise_xor(view, numpy.frombuffer(key, dtype=numpy.uint32)[0], out=view)
    for i in range(words * 4, len(out)):
        out[i] ^= key[i % 4]
    return out


def frame_extent(data: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """``(header size, frame size)`` of the frame at *data[pos:]*, or ``None``.

    ``None`` means the header is not complete yet. The sizes are what the
    header announces; whether they are legal is for the decoder to say.
    """
    available = len(data) - pos
    if available < 2:
        return None
    second = data[pos + 1]
    length = second & _LENGTH
    header = 6 if second & _MASKED else 2
    if length == 126:
        header += 2
        if available < header:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
    elif length == 127:
        header += 8
        if available < header:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 10], "big")
    elif available < header:
        return None
    return header, header + length


def simple_opcode(
    data: bytes | bytearray,
    pos: int,
    header: int,
    end: int,
    *,
    masked: bool,
    limit: int,
    kinds: frozenset[int] = SIMPLE,
) -> int | None:
    """The opcode of the frame at *data[pos:end]* if it is a simple one, else ``None``.

    Simple: final, no RSV bits, text or binary, masked as *masked* says,
    its length encoded in the fewest bytes, and at most *limit* bytes of
    payload. With ``kinds=SIMPLE_OR_COMPRESSED`` (permessage-deflate
    negotiated), RSV1 may be set too, and the result then includes
    :data:`COMPRESSED`. Anything else is for wsproto to decode, and to
    report what is wrong with it.
    """
    first, second = data[pos], data[pos + 1]
    size = end - pos - header
    if (
        first not in kinds
        or bool(second & _MASKED) is not masked
        or size > limit
        or (size < 126) is not ((second & _LENGTH) < 126)
        or (size < 0x10000) is not ((second & _LENGTH) < 127)
    ):
        return None
    return first & 0x4F


def masking_key(data: bytes | bytearray, pos: int, header: int, masked: bool) -> bytes | None:
    """The masking key of the frame at *data[pos:]* (its header's last four
    bytes), or ``None`` for an unmasked frame."""
    return bytes(data[pos + header - 4 : pos + header]) if masked else None


def decode_message(
    data: bytes | bytearray, start: int, end: int, opcode: int, key: bytes | None
) -> str | bytes | None:
    """The message whose payload is *data[start:end]*, from a frame that
    :func:`simple_opcode` accepted as *opcode*.

    ``None`` for text that is not valid UTF-8: wsproto reports it.
    """
    payload = payload_copy(memoryview(data)[start:end], key)
    if opcode == OPCODE_BINARY:
        return bytes(payload)
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return None


def payload_copy(view: memoryview, key: bytes | None, offset: int = 0) -> bytes | bytearray:
    """A copy of *view*, unmasked with *key* (``None``: not masked).

    *offset* is how many bytes of the same payload came before *view*, for
    a payload that arrives in several reads.
    """
    if key is None:
        return bytes(view)
    shift = offset % 4
    if shift:
        key = key[shift:] + key[:shift]
    return apply_mask(view, key)


#: Largest payload of a control frame: a ping, a pong or a close (RFC 6455 5.5).
MAX_CONTROL_PAYLOAD = 125


def control_payload(payload: object) -> bytes:
    """A ping's or pong's *payload* as ``bytes``, checked before anything is sent.

    ``TypeError`` unless it is bytes-like (a ``str`` must be encoded by the
    caller: the payload is binary); ``ValueError`` if it is over 125 bytes.
    """
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError(f"a ping or pong payload must be bytes, not {type(payload).__name__}")
    data = bytes(payload)
    if len(data) > MAX_CONTROL_PAYLOAD:
        raise ValueError(
            f"a ping or pong payload is at most {MAX_CONTROL_PAYLOAD} bytes, not {len(data)}"
        )
    return data
