"""Compressed fragmented messages on the fast branch, without sockets.

A message whose first frame has RSV1 and no FIN is inflated piece by piece
(trio_ws.core.deflate.MessageInflater, driven through
trio_ws.core.fragments.FragmentedMessage): whatever the cut into pieces, the
chunks add up to the message, none is bigger than the chunk size, the size
limit holds after decompression, and the connection's decompressor context
carries on into the next message, whichever branch decodes it.
"""

from __future__ import annotations

import random

import pytest

from trio_ws.core import fragments
from trio_ws.core.deflate import PerMessageDeflate

from .support.codec import BINARY, CONTINUATION, TEXT, frame
from .test_deflate_fast import MiB, Sender, json_message, negotiated
from .test_fragments_fast import kind_of

CHUNK = 4096


def cut(data: bytes, rng: random.Random) -> list[bytes]:
    """*data* in random pieces, some of them empty."""
    pieces, pos = [], 0
    while pos < len(data):
        step = rng.choice([0, 1, 7, 100, 1000, 5000, 70000])
        pieces.append(data[pos : pos + step])
        pos += step
    return pieces or [b""]


def decode(
    deflate: PerMessageDeflate, payload: bytes, pieces: list[bytes], opcode: int, max_size: int
) -> tuple[list[str | bytes], fragments.Violation | None]:
    """Feed *pieces* of *payload* (one frame per piece) as the reader would:
    the chunks, and the violation if one ended the message."""
    assert b"".join(pieces) == payload
    message = fragments.FragmentedMessage(opcode, deflate.message_inflater(CHUNK))
    chunks: list[str | bytes] = []
    for i, piece in enumerate(pieces):
        assert message.frame(len(piece), max_size) is None
        final = i == len(pieces) - 1
        for chunk in message.chunks(piece, final):
            if isinstance(chunk, tuple):
                return chunks, chunk
            assert not chunks or not message.finished or final
            chunks.append(chunk)
    assert message.finished
    return chunks, None


@pytest.mark.parametrize("seed", range(20))
def test_any_cut_inflates_to_the_message_in_bounded_chunks(seed: int) -> None:
    rng = random.Random(seed)
    deflate, sender = negotiated(), Sender()
    for _ in range(6):
        text = rng.random() < 0.5
        if text:
            chars = "".join(json_message(rng.randrange(100)) for _ in range(80))
            chars += "é€𝄞" * rng.randrange(2000)  # multi-byte characters to split
            original: str | bytes = chars
            data = chars.encode()
        else:
            original = data = rng.randbytes(rng.randrange(30000)) * rng.randrange(1, 5)
        payload = sender.compress(data)
        if rng.random() < 0.4:  # whole messages in between, on the same context
            assert deflate.inflate_message(payload, text, MiB) == original
            continue
        chunks, violation = decode(
            deflate, payload, cut(payload, rng), TEXT if text else BINARY, MiB
        )
        assert violation is None
        assert "".join(chunks) == original if text else b"".join(chunks) == original  # type: ignore[arg-type]
        # A UTF-8 character split across chunks waits for the next one.
        assert all(len(c if isinstance(c, bytes) else c.encode()) <= CHUNK + 3 for c in chunks)


def test_a_small_piece_that_inflates_a_lot_comes_out_lazily() -> None:
    deflate = negotiated()
    payload = Sender().compress(bytes(8 * MiB))  # about 8 KiB
    message = fragments.FragmentedMessage(BINARY, deflate.message_inflater(CHUNK))
    assert message.frame(len(payload), 2**62) is None
    chunks = message.chunks(payload, True)
    assert next(chunks) == bytes(CHUNK)
    assert message.size == CHUNK  # nothing inflated beyond the chunk taken
    assert not message.finished
    total = CHUNK + sum(len(c) for c in chunks)
    assert total == 8 * MiB == message.size
    assert message.finished


@pytest.mark.parametrize("max_size", [0, 1, 1000, CHUNK, 3 * CHUNK + 5])
def test_a_bomb_stops_one_byte_past_the_limit(max_size: int) -> None:
    deflate = negotiated()
    payload = Sender().compress(bytes(64 * MiB))
    pieces = [payload[i : i + 1000] for i in range(0, len(payload), 1000)]
    inflater = deflate.message_inflater(CHUNK)
    message = fragments.FragmentedMessage(BINARY, inflater)
    chunks, violation = decode_until_violation(message, pieces, max_size)
    assert violation is not None and violation[0] == 1009
    assert sum(len(c) for c in chunks) <= max_size
    assert inflater.size == max_size + 1


def decode_until_violation(
    message: fragments.FragmentedMessage, pieces: list[bytes], max_size: int
) -> tuple[list[bytes], fragments.Violation | None]:
    chunks: list[bytes] = []
    for i, piece in enumerate(pieces):
        assert message.frame(len(piece), max_size) is None
        for chunk in message.chunks(piece, i == len(pieces) - 1):
            if isinstance(chunk, tuple):
                return chunks, chunk
            assert isinstance(chunk, bytes)
            chunks.append(chunk)
    return chunks, None


def test_the_limit_counts_inflated_bytes_not_wire_bytes() -> None:
    # Random data grows a little when deflated: a message of exactly the
    # limit arrives as more bytes than the limit, and is still accepted.
    data = random.Random(3).randbytes(20000)
    payload = Sender().compress(data)
    assert len(payload) > len(data)
    chunks, violation = decode(
        negotiated(), payload, [payload[:9000], payload[9000:]], BINARY, 20000
    )
    assert violation is None
    assert b"".join(chunks) == data  # type: ignore[arg-type]
    _, violation = decode(negotiated(), payload, [payload], BINARY, 19999)
    assert violation is not None and violation[0] == 1009


def test_invalid_utf8_is_1007_before_the_message_ends() -> None:
    data = json_message(1).encode() * 200 + b"\xc3\x28" + json_message(2).encode() * 200
    payload = Sender().compress(data)
    message = fragments.FragmentedMessage(TEXT, negotiated().message_inflater(CHUNK))
    assert message.frame(len(payload), MiB) is None
    results = list(message.chunks(payload, False))  # not even the last frame
    assert results[-1][0] == 1007
    assert not message.finished


def test_a_truncated_character_at_the_end_is_1007() -> None:
    payload = Sender().compress("abcé".encode()[:-1])
    _, violation = decode(negotiated(), payload, [payload[:2], payload[2:]], TEXT, MiB)
    assert violation is not None and violation[0] == 1007


def test_corrupt_compressed_fragments_are_1007() -> None:
    _, violation = decode(negotiated(), b"\xff\xff\xff", [b"\xff", b"\xff\xff"], BINARY, MiB)
    assert violation is not None and violation[0] == 1007


def test_no_context_takeover_starts_each_message_afresh() -> None:
    deflate = negotiated(offer="permessage-deflate; client_no_context_takeover")
    for i in range(4):
        data = json_message(i).encode() * 50
        payload = Sender().compress(data)  # a fresh context each time
        chunks, violation = decode(deflate, payload, [payload[:50], payload[50:]], BINARY, MiB)
        assert violation is None and b"".join(chunks) == data  # type: ignore[arg-type]


def test_an_empty_compressed_message_in_empty_fragments() -> None:
    payload = Sender().compress(b"")
    chunks, violation = decode(negotiated(), payload, [b"", payload, b""], TEXT, MiB)
    assert violation is None and "".join(chunks) == ""  # type: ignore[arg-type]


def test_the_inflate_ratio_is_learnt_from_fragmented_messages() -> None:
    deflate = negotiated()
    payload = Sender().compress(bytes(100_000))
    decode(deflate, payload, [payload], BINARY, MiB)
    assert deflate.inflate_ratio > 100


@pytest.mark.parametrize(
    ("data", "compressed", "in_progress", "expected"),
    [
        (frame(TEXT, b"ab", fin=False, rsv=4), True, False, fragments.START),
        (frame(BINARY, b"ab", fin=False, rsv=4), True, False, fragments.START),
        (frame(BINARY, b"ab", fin=False, rsv=4), False, False, None),  # not negotiated
        (frame(BINARY, b"ab", rsv=4), True, False, None),  # a whole message
        (frame(CONTINUATION, b"ab", rsv=4), True, True, None),  # RSV1 here: wsproto, 1002
        (frame(BINARY, b"ab", fin=False, rsv=6), True, False, None),  # RSV2 too
        (frame(CONTINUATION, b"ab"), True, True, fragments.CONTINUE),
    ],
)
def test_fragment_kinds_with_compression(
    data: bytes, compressed: bool, in_progress: bool, expected: int | None
) -> None:
    assert kind_of(data, in_progress=in_progress, compressed=compressed) == expected
    if expected == fragments.START:
        assert fragments.is_compressed(data, 0)


def test_chunks_of_an_uncompressed_message_are_its_pieces() -> None:
    message = fragments.FragmentedMessage(TEXT)
    assert message.frame(3, 10) is None
    assert list(message.chunks(b"ab\xc3", False)) == ["ab"]
    assert not message.finished
    assert message.frame(1, 10) is None
    assert list(message.chunks(b"\xa9", True)) == ["é"]
    assert message.finished


@pytest.mark.parametrize("chunk_size", [1, 7, 100, CHUNK])
def test_output_zlib_holds_back_at_a_full_chunk_still_comes(chunk_size: int) -> None:
    # zlib may fill a chunk having taken all the input and still hold the
    # rest of a match (up to 258 bytes) inside: the inflater must ask again.
    data = bytes(CHUNK + 3)
    payload = Sender().compress(data)
    message = fragments.FragmentedMessage(BINARY, negotiated().message_inflater(chunk_size))
    assert message.frame(len(payload), MiB) is None
    chunks = list(message.chunks(payload, True))
    assert b"".join(chunks) == data  # type: ignore[arg-type]
    assert max(len(c) for c in chunks) == chunk_size
    assert message.finished
