"""Hypothesis generators of what a peer sends: frames, messages and streams.

Mostly valid conversations with one bad item somewhere (so that the bad item
meets the endpoint in every state), sometimes pure chaos; compressed
messages, deflate bombs and broken deflate data for RFC 7692.
"""

from __future__ import annotations

import functools
import itertools
import zlib
from dataclasses import dataclass

from hypothesis import strategies as st

from ..support.codec import BINARY, CLOSE, CONT, PING, PONG, TEXT, Frame, close_frame, close_payload
from .model import FRAGMENT_LIMIT, MAX_SIZE

INVALID_UTF8 = [
    b"\xff",
    b"\xfe",
    b"\x80",  # lone continuation byte
    b"\xc0\xaf",  # overlong
    b"\xc1\xbf",
    b"\xe0\x80\xaf",  # overlong 3-byte
    b"\xed\xa0\x80",  # surrogate
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xf5\x80\x80\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\xe2\x82",  # truncated 3-byte sequence followed by more text
    b"\xf0\x9f\x98",  # truncated 4-byte sequence
]
INTERESTING_LENGTHS = [
    0,
    1,
    2,
    124,
    125,
    126,
    127,
    255,
    256,
    257,
    65535,
    65536,
    2**31,
    2**63 - 1,
    2**63,
    2**64 - 1,
]
INTERESTING_CODES = [
    0,
    1,
    999,
    1000,
    1001,
    1002,
    1003,
    1004,
    1005,
    1006,
    1007,
    1008,
    1009,
    1010,
    1011,
    1012,
    1013,
    1014,
    1015,
    1016,
    1100,
    2000,
    2999,
    3000,
    3999,
    4000,
    4999,
    5000,
    65535,
]


def _keys() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.just(b"\x37\xfa\x21\x3d"), st.just(b"\0\0\0\0"), st.binary(min_size=4, max_size=4)
    )


@st.composite
def text_payloads(draw: st.DrawFn, max_size: int = 80) -> bytes:
    return draw(st.text(st.characters(codec="utf-8"), max_size=max_size)).encode("utf-8")


def _split(draw: st.DrawFn, data: bytes, max_parts: int = 4) -> list[bytes]:
    """Cut *data* into 1..max_parts pieces at arbitrary byte offsets."""
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=max_parts - 1))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def control_between(draw: st.DrawFn, masked: bool) -> list[Frame]:
    """Zero or more pings/pongs to put between the fragments of a message."""
    frames = []
    for opcode in draw(st.lists(st.sampled_from([PING, PONG]), max_size=2)):
        frames.append(Frame(opcode, draw(st.binary(max_size=20)), masked=masked))
    return frames


@st.composite
def messages(draw: st.DrawFn, masked: bool) -> list[Frame]:
    """A valid message (text or binary), maybe fragmented with pings between."""
    text = draw(st.booleans())
    if text:
        size = MAX_SIZE + 40 if draw(st.integers(0, 9)) == 0 else 80
        payload = draw(text_payloads(max_size=size))
    else:
        payload = draw(st.binary(max_size=MAX_SIZE + 20))
    pieces = _split(draw, payload)
    frames: list[Frame] = []
    for i, piece in enumerate(pieces):
        if i:
            frames += draw(control_between(masked))
        opcode = (TEXT if text else BINARY) if i == 0 else CONT
        frames.append(
            Frame(opcode, piece, fin=i == len(pieces) - 1, masked=masked, key=draw(_keys()))
        )
    return frames


@st.composite
def invalid_utf8_messages(draw: st.DrawFn, masked: bool) -> list[Frame]:
    """A text message with invalid UTF-8 somewhere, split anywhere (mid-character too)."""
    before = draw(text_payloads(max_size=20))
    bad = draw(st.sampled_from(INVALID_UTF8))
    after = draw(text_payloads(max_size=20))
    if draw(st.booleans()):  # or: a message that ends in the middle of a character
        bad, after = draw(st.sampled_from([b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98"])), b""
    pieces = _split(draw, before + bad + after, max_parts=5)
    frames: list[Frame] = []
    for i, piece in enumerate(pieces):
        if i:
            frames += draw(control_between(masked))
        opcode = TEXT if i == 0 else CONT
        frames.append(Frame(opcode, piece, fin=i == len(pieces) - 1, masked=masked))
    return frames


@st.composite
def close_frames(draw: st.DrawFn, masked: bool) -> list[Frame]:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        payload = b""
    elif kind == 1:
        payload = draw(st.binary(min_size=1, max_size=1))
    else:
        code = draw(st.one_of(st.sampled_from(INTERESTING_CODES), st.integers(0, 65535)))
        if kind == 2:
            reason = draw(text_payloads(max_size=30))
        elif kind == 3:
            reason = draw(text_payloads(max_size=10)) + draw(st.sampled_from(INVALID_UTF8))
        elif kind == 4:
            reason = b"r" * draw(st.integers(120, 130))  # 122..132 byte payloads
        else:
            reason = draw(st.binary(max_size=20))
        payload = close_payload(code, reason)
    return [Frame(CLOSE, payload, masked=masked, fin=draw(st.integers(0, 9)) > 0)]


@st.composite
def control_frames(draw: st.DrawFn, masked: bool) -> list[Frame]:
    opcode = draw(st.sampled_from([PING, PONG]))
    size = draw(st.one_of(st.integers(0, 20), st.integers(120, 130)))
    fin = draw(st.integers(0, 5)) > 0
    return [Frame(opcode, draw(st.binary(min_size=size, max_size=size)), fin=fin, masked=masked)]


@st.composite
def wild_frames(draw: st.DrawFn, masked: bool) -> list[Frame]:
    """A frame with every field drawn at random, biased towards a valid shape."""
    opcode = draw(st.integers(0, 15))
    payload = draw(st.binary(max_size=300))
    declared = None
    if draw(st.integers(0, 3)) == 0:
        declared = draw(st.one_of(st.sampled_from(INTERESTING_LENGTHS), st.integers(0, 2**64 - 1)))
    return [
        Frame(
            opcode,
            payload,
            fin=draw(st.booleans()),
            rsv=draw(st.integers(0, 7)) if draw(st.integers(0, 2)) == 0 else 0,
            masked=masked if draw(st.integers(0, 5)) else not masked,
            key=draw(_keys()),
            encoding=draw(st.sampled_from(["min", "min", "min", "16", "64", "64msb"])),
            declared=declared,
        )
    ]


@st.composite
def fragment_floods(draw: st.DrawFn, masked: bool) -> list[Frame]:
    """A message in very many tiny (or empty) fragments, around any fragment limit."""
    limit = FRAGMENT_LIMIT
    count = draw(st.sampled_from([limit - 1, limit, limit + 1, limit + 50]))
    opcode = draw(st.sampled_from([TEXT, BINARY]))
    piece = draw(st.sampled_from([b"", b"a"])) if count < MAX_SIZE else b""
    frames = [Frame(opcode, piece, fin=False, masked=masked)]
    frames += [Frame(CONT, piece, fin=False, masked=masked) for _ in range(count - 2)]
    frames.append(Frame(CONT, b"", fin=True, masked=masked))
    return frames


@st.composite
def raw_bytes(draw: st.DrawFn, masked: bool) -> list[bytes]:
    return [draw(st.binary(min_size=1, max_size=64))]


@dataclass(frozen=True)
class FrameCase:
    """A byte stream for one side to send after the handshake."""

    items: tuple[Frame | bytes, ...]
    chunks: tuple[int, ...]  # sizes of the writes, the rest goes in one
    pipelined: bool  # send the first bytes together with the handshake
    pause: bool  # sleep a little between writes so that reads split

    @property
    def data(self) -> bytes:
        return b"".join(bytes(item) for item in self.items)

    def writes(self) -> list[bytes]:
        data, out = self.data, []
        for size in self.chunks:
            if not data:
                break
            out.append(data[:size])
            data = data[size:]
        if data:
            out.append(data)
        return out


@st.composite
def frame_cases(draw: st.DrawFn, *, masked: bool) -> FrameCase:
    """A sequence of frames (valid and not) and raw bytes, as one peer sends it.

    Mostly a valid conversation with at most one bad item somewhere, so that
    the bad item meets the endpoint in every state; sometimes pure chaos.
    """
    valid = [messages, messages, messages, control_between]
    bad = [
        invalid_utf8_messages,
        close_frames,
        control_frames,
        wild_frames,
        raw_bytes,
        oversized,
        fragment_floods,
    ]
    items: list[Frame | bytes] = []
    if draw(st.integers(0, 4)):
        groups = [draw(kind(masked)) for kind in draw(st.lists(st.sampled_from(valid), max_size=5))]
        if draw(st.integers(0, 3)):
            groups.insert(
                draw(st.integers(0, len(groups))), draw(draw(st.sampled_from(bad))(masked))
            )
    else:
        groups = [
            draw(kind(masked))
            for kind in draw(st.lists(st.sampled_from(valid + bad), min_size=1, max_size=6))
        ]
    for group in groups:
        items += group
    if draw(st.booleans()):
        items.append(close_frame(1000, masked=masked))
    if not items:
        items.append(close_frame(1000, masked=masked))
    chunks = tuple(draw(st.lists(st.integers(1, 40), max_size=4)))
    return FrameCase(tuple(items), chunks, draw(st.booleans()), draw(st.booleans()))


@st.composite
def oversized(draw: st.DrawFn, masked: bool) -> list[Frame]:
    """A message that crosses ``MAX_SIZE`` in one frame or across fragments."""
    size = draw(st.integers(MAX_SIZE - 2, MAX_SIZE + 200))
    pieces = _split(draw, b"z" * size)
    opcode = draw(st.sampled_from([TEXT, BINARY]))
    frames = []
    for i, piece in enumerate(pieces):
        if i:
            frames += draw(control_between(masked))
        frames.append(
            Frame(opcode if i == 0 else CONT, piece, fin=i == len(pieces) - 1, masked=masked)
        )
    return frames


# ========================================================= deflate strategies

#: Offers a raw client may make; the model follows whatever the server answers.
DEFLATE_OFFERS = [
    b"permessage-deflate",
    b"permessage-deflate; client_max_window_bits",
    b"permessage-deflate; client_no_context_takeover",
    b"permessage-deflate; client_max_window_bits=10; server_no_context_takeover",
]


def deflate(data: bytes, level: int = 6, strip: bool = True) -> bytes:
    """*data* as one RFC 7692 message body (9-bit window: fits any negotiation)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -9)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4] if strip and out.endswith(b"\x00\x00\xff\xff") else out


def _fragments(
    draw: st.DrawFn, opcode: int, body: bytes, masked: bool, rsv_on_all: bool = False
) -> list[Frame]:
    frames: list[Frame] = []
    pieces = _split(draw, body)
    for i, piece in enumerate(pieces):
        if i:
            frames += draw(control_between(masked))
        frames.append(
            Frame(
                opcode if i == 0 else CONT,
                piece,
                fin=i == len(pieces) - 1,
                rsv=4 if i == 0 or rsv_on_all else 0,
                masked=masked,
            )
        )
    return frames


@st.composite
def compressed_messages(draw: st.DrawFn, masked: bool) -> list[Frame]:
    """A compressed message, maybe fragmented (RSV1 on the first frame only)."""
    text = draw(st.booleans())
    if text:
        payload = draw(text_payloads(max_size=120))
        if draw(st.integers(0, 5)) == 0:
            payload += draw(st.sampled_from(INVALID_UTF8))
    else:
        payload = draw(st.binary(max_size=MAX_SIZE + 40))
    if draw(st.booleans()):
        payload = payload * draw(st.integers(1, 8))  # compresses well; may cross MAX_SIZE
    body = deflate(payload, draw(st.integers(0, 9)), draw(st.booleans()))
    return _fragments(draw, TEXT if text else BINARY, body, masked)


@st.composite
def bombs(draw: st.DrawFn, masked: bool) -> list[Frame]:
    """A small frame that inflates to far more than MAX_SIZE (or just past it)."""
    size = draw(st.sampled_from([MAX_SIZE, MAX_SIZE + 1, 64 * 1024, 1 << 20, 16 << 20]))
    return _fragments(draw, BINARY, _zeros_deflated(size), masked)


@functools.cache
def _zeros_deflated(size: int) -> bytes:
    """*size* zero bytes deflated (16 MiB take seconds, so once per run)."""
    return deflate(b"\0" * size, 9)


@st.composite
def bad_deflate(draw: st.DrawFn, masked: bool) -> list[Frame]:
    """RSV1 misused, or a compressed body that is not deflate data."""
    kind = draw(st.integers(0, 3))
    if kind == 0:  # garbage body
        return _fragments(
            draw,
            draw(st.sampled_from([TEXT, BINARY])),
            draw(st.binary(min_size=1, max_size=40)),
            masked,
        )
    if kind == 1:  # RSV1 on a continuation frame too
        body = deflate(draw(st.binary(min_size=2, max_size=60)))
        return _fragments(draw, BINARY, body, masked, rsv_on_all=True)
    if kind == 2:  # RSV1 on a control frame
        return [Frame(draw(st.sampled_from([PING, PONG, CLOSE])), b"", rsv=4, masked=masked)]
    good = deflate(draw(text_payloads(max_size=40)))  # valid body, truncated or extended
    return _fragments(
        draw, TEXT, good[: draw(st.integers(0, len(good)))] + draw(st.binary(max_size=4)), masked
    )


@dataclass(frozen=True)
class DeflateCase:
    offer: bytes
    frames: FrameCase


@st.composite
def deflate_cases(draw: st.DrawFn) -> DeflateCase:
    """Compressed and plain messages, with at most one bad item, for a compressing server."""
    valid = [compressed_messages, compressed_messages, messages, control_between]
    bad = [bad_deflate, bombs, invalid_utf8_messages, wild_frames, oversized, close_frames]
    groups = [draw(kind(True)) for kind in draw(st.lists(st.sampled_from(valid), max_size=5))]
    if draw(st.integers(0, 2)):
        groups.insert(draw(st.integers(0, len(groups))), draw(draw(st.sampled_from(bad))(True)))
    items: list[Frame | bytes] = [frame for group in groups for frame in group]
    if draw(st.booleans()) or not items:
        items.append(close_frame(1000))
    chunks = tuple(draw(st.lists(st.integers(1, 40), max_size=4)))
    case = FrameCase(tuple(items), chunks, draw(st.booleans()), draw(st.booleans()))
    return DeflateCase(draw(st.sampled_from(DEFLATE_OFFERS)), case)
