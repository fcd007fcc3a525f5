"""Masking and whole-message framing, against the test-side codec in tests/support."""

from __future__ import annotations

import os

import pytest

from trio_ws.core import frames

from .support.codec import frame as reference_frame
from .support.codec import mask as naive_mask

SIZES = [0, 1, 3, 4, 5, 125, 126, 511, 512, 513, 4097, 65535, 65536, 70001]


@pytest.mark.parametrize("size", SIZES)
def test_every_masking_path_agrees_with_the_naive_one(size: int) -> None:
    data, key = os.urandom(size), os.urandom(4)
    expected = naive_mask(data, key)
    assert bytes(frames.apply_mask(data, key)) == expected
    assert bytes(frames.apply_mask(memoryview(data), key)) == expected
    assert bytes(frames._mask_bytes(data, key)) == expected  # without numpy
    if frames.HAVE_NUMPY:
        assert bytes(frames._mask_words(data, key)) == expected


def test_a_payload_unmasked_in_pieces_equals_the_whole() -> None:
    data, key = os.urandom(10_001), os.urandom(4)
    masked = naive_mask(data, key)
    pieces, offset = [], 0
    for size in (1, 2, 3, 4000, 5, 5990):
        view = memoryview(masked)[offset : offset + size]
        pieces.append(bytes(frames.payload_copy(view, key, offset)))
        offset += size
    assert b"".join(pieces) == data


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
@pytest.mark.parametrize("opcode", [frames.OPCODE_TEXT, frames.OPCODE_BINARY])
def test_encoded_frames_decode_to_the_message(size: int, opcode: int) -> None:
    payload = b"a" * size
    server_frame = b"".join(frames.encode_message(opcode, payload))
    assert server_frame == reference_frame(opcode, payload, mask=False)
    client_frame = b"".join(frames.encode_message(opcode, payload, mask=True))
    extent = frames.frame_extent(client_frame, 0)
    assert extent is not None and extent[1] == len(client_frame)
    header, end = extent
    found = frames.simple_opcode(client_frame, 0, header, end, masked=True, limit=size)
    assert found == opcode
    key = frames.masking_key(client_frame, 0, header, masked=True)
    message = frames.decode_message(client_frame, header, end, found, key)
    assert message == (payload.decode() if opcode == frames.OPCODE_TEXT else payload)
    # One byte over the limit, or the wrong masking, is left to wsproto.
    if size:
        assert (
            frames.simple_opcode(client_frame, 0, header, end, masked=True, limit=size - 1) is None
        )
    assert frames.simple_opcode(client_frame, 0, header, end, masked=False, limit=size) is None


def test_invalid_utf8_is_left_to_wsproto() -> None:
    text_frame = b"".join(frames.encode_message(frames.OPCODE_TEXT, b"ok\xff", mask=True))
    extent = frames.frame_extent(text_frame, 0)
    assert extent is not None
    header, end = extent
    found = frames.simple_opcode(text_frame, 0, header, end, masked=True, limit=100)
    assert found == frames.OPCODE_TEXT
    key = frames.masking_key(text_frame, 0, header, masked=True)
    assert frames.decode_message(text_frame, header, end, found, key) is None


def test_incomplete_headers_have_no_extent() -> None:
    whole = reference_frame(frames.OPCODE_BINARY, b"x" * 70000)
    header = 2 + 8 + 4
    for cut in range(header):
        assert frames.frame_extent(whole[:cut], 0) is None
    assert frames.frame_extent(whole[:header], 0) == (header, len(whole))
