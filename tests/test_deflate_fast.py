"""permessage-deflate on the fast branch: inflating whole messages, and the sending policy.

The first half are protocol rules without sockets (payload in, message or
close code out); the differential test checks the fast branch against a bare
wsproto connection with wsproto's own deflate extension. The second half
checks the same rules end to end through a raw peer.
"""

from __future__ import annotations

import json
import os
import random
import tracemalloc
import zlib

import pytest
import trio
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, TextMessage
from wsproto.extensions import PerMessageDeflate as WsprotoDeflate

import trio_ws
from trio_ws import DeflateOptions
from trio_ws.core import frames
from trio_ws.core.deflate import PerMessageDeflate
from trio_ws.core.size_limit import MessageSizeLimit

from .conftest import HOST, echo_handler
from .support.codec import BINARY, CONTINUATION, TEXT, frame
from .support.handshake import accept_answer
from .support.peers import Reader, raw_client, serve_raw

MiB = 2**20
TAIL = b"\x00\x00\xff\xff"


def negotiated(
    max_size: int = MiB, offer: str = "permessage-deflate", **options: object
) -> PerMessageDeflate:
    """A server side deflate extension that accepted *offer*."""
    deflate = PerMessageDeflate(
        DeflateOptions(**options),  # type: ignore[arg-type]
        MessageSizeLimit(max_size),
        client=False,
    )
    assert deflate.accept(offer) is not None
    return deflate


class Sender:
    """The peer's compressor: one message at a time, RFC 7692's way."""

    def __init__(self, bits: int = 15) -> None:
        self.compressor = zlib.compressobj(6, zlib.DEFLATED, -bits)

    def compress(self, data: bytes) -> bytes:
        out = self.compressor.compress(data) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL)
        return out[:-4]


def json_message(i: int) -> str:
    return json.dumps({"id": i, "user": f"user{i % 7}", "items": list(range(i % 30))})


# -- inflating whole messages, without sockets --------------------------------------


def test_whole_messages_inflate_with_one_context() -> None:
    deflate, sender = negotiated(), Sender()
    messages = [json_message(i) for i in range(50)]
    for message in messages:
        payload = sender.compress(message.encode())
        assert deflate.inflate_message(payload, True, MiB) == message
    data = os.urandom(3000)
    assert deflate.inflate_message(sender.compress(data), False, MiB) == data


@pytest.mark.parametrize(
    ("payload", "text", "max_size", "expected"),
    [
        (b"hello", True, 100, "hello"),
        (b"hello", False, 100, b"hello"),
        (b"", True, 100, ""),
        (b"x" * 100, False, 100, b"x" * 100),  # exactly the limit
        (b"x" * 101, False, 100, 1009),  # one byte over
        (b"x" * 101, True, 100, 1009),
        (b"\xff\xfe", True, 100, 1007),  # not UTF-8
        (b"\xff\xfe", False, 100, b"\xff\xfe"),  # binary: anything goes
        ("é".encode()[:1], True, 100, 1007),  # a truncated character
    ],
)
def test_inflate_message_rules(payload: bytes, text: bool, max_size: int, expected: object) -> None:
    result = negotiated().inflate_message(Sender().compress(payload), text, max_size)
    if isinstance(expected, int):
        assert isinstance(result, tuple)
        assert result[0] == expected
        assert result[1]  # a reason that says what was wrong
    else:
        assert result == expected


def test_corrupt_deflate_data_is_1007() -> None:
    # 0xff starts a block of the reserved type 3.
    code, reason = negotiated().inflate_message(b"\xff\xff\xff", False, MiB)  # type: ignore[misc]
    assert code == 1007
    assert "compressed" in reason


def test_a_bomb_inflates_no_further_than_the_budget() -> None:
    payload = Sender().compress(bytes(256 * MiB))  # about 256 KiB
    tracemalloc.start()
    try:
        result = negotiated().inflate_message(payload, False, MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, tuple)
    assert result[0] == 1009
    assert peak < 4 * MiB, peak


def test_no_context_takeover_inflates_each_message_alone() -> None:
    deflate = negotiated(offer="permessage-deflate; client_no_context_takeover")
    for i in range(5):
        payload = Sender().compress(json_message(i).encode())  # a fresh context each time
        assert deflate.inflate_message(payload, True, MiB) == json_message(i)


def server_connection(deflate: PerMessageDeflate) -> Connection:
    return Connection(ConnectionType.SERVER, [deflate, MessageSizeLimit(MiB)])


def decode_frames(connection: Connection, data: bytes) -> list[str | bytes]:
    connection.receive_data(data)
    messages, parts = [], []
    for event in connection.events():
        assert isinstance(event, (TextMessage, BytesMessage)), event
        parts.append(event.data)
        if event.message_finished:
            messages.append(parts[0][:0].join(parts))
            parts = []
    return messages


def random_message(rng: random.Random) -> str | bytes:
    size = rng.choice([0, 1, 10, 200, 3000, 40_000])
    kind = rng.randrange(3)
    if kind == 0:
        return "".join(rng.choice('abcé€ {}:,"0123') for _ in range(size))
    if kind == 1:
        return rng.randbytes(size)
    return bytes(rng.randrange(4) for _ in range(size))


@pytest.mark.parametrize("seed", range(6))
def test_fast_branch_matches_wsproto_on_random_compressed_messages(seed: int) -> None:
    """The same frames through (a) a bare wsproto connection with wsproto's
    own deflate extension and (b) trio_ws's deflate state, each message
    decoded at random by the fast branch or by wsproto with trio_ws's
    extension: the messages agree, so the shared context never drifts."""
    rng = random.Random(seed)
    sender = Sender()
    reference_offer = WsprotoDeflate()
    reference_offer.accept(reference_offer.offer())  # type: ignore[arg-type]
    reference = Connection(ConnectionType.SERVER, [reference_offer])
    deflate = negotiated()
    ours = server_connection(deflate)
    for _ in range(40):
        message = random_message(rng)
        opcode = TEXT if isinstance(message, str) else BINARY
        raw = message.encode() if isinstance(message, str) else message
        payload = sender.compress(raw)
        data = frame(opcode, payload, rsv=4)
        assert decode_frames(reference, data) == [message]
        header, size = frames.frame_extent(data, 0)  # type: ignore[misc]
        kind = frames.simple_opcode(
            data, 0, header, size, masked=True, limit=MiB, kinds=frames.SIMPLE_OR_COMPRESSED
        )
        assert kind == opcode | frames.COMPRESSED
        if rng.random() < 0.5:
            key = frames.masking_key(data, 0, header, True)
            unmasked = frames.payload_copy(memoryview(data)[header:size], key)
            assert deflate.inflate_message(unmasked, opcode == TEXT, MiB) == message
        else:
            assert decode_frames(ours, data) == [message]


def test_simple_opcode_takes_rsv1_only_when_asked() -> None:
    data = frame(TEXT, b"abc", rsv=4)
    header, size = frames.frame_extent(data, 0)  # type: ignore[misc]
    assert frames.simple_opcode(data, 0, header, size, masked=True, limit=MiB) is None
    both = frames.SIMPLE_OR_COMPRESSED
    got = frames.simple_opcode(data, 0, header, size, masked=True, limit=MiB, kinds=both)
    assert got == TEXT | frames.COMPRESSED
    for rsv in (2, 1, 6):  # RSV2 or RSV3: never simple
        other = frame(TEXT, b"abc", rsv=rsv)
        assert (
            frames.simple_opcode(other, 0, header, size, masked=True, limit=MiB, kinds=both) is None
        )
    fragment = frame(TEXT, b"abc", rsv=4, fin=False)
    assert (
        frames.simple_opcode(fragment, 0, header, size, masked=True, limit=MiB, kinds=both) is None
    )


# -- the sending policy, without sockets --------------------------------------------


def test_short_messages_are_not_compressed() -> None:
    deflate = negotiated()
    assert not deflate.should_compress(b"x" * 31, text=False)
    assert not deflate.should_compress(b"x" * 31, text=True)
    assert deflate.should_compress(b"x" * 32, text=True)
    assert negotiated(min_size=0).should_compress(b"x", text=True)


def test_text_is_compressed_whatever_its_ratio() -> None:
    deflate = negotiated()
    noise = os.urandom(3000).hex()
    assert deflate.should_compress(noise.encode(), text=True)


def test_incompressible_binary_is_sent_plain_and_probed_again_later() -> None:
    deflate = negotiated(reprobe_interval=3)
    noise = os.urandom(64 * 1024)
    assert not deflate.should_compress(noise, text=False)  # the probe says no
    json_bytes = "".join(json_message(i) for i in range(500)).encode()
    # Within the interval even compressible binary data goes out plain...
    assert [deflate.should_compress(json_bytes, text=False) for _ in range(3)] == [False] * 3
    # ...then a probe finds it compresses, and from then on it is compressed.
    assert deflate.should_compress(json_bytes, text=False)
    output = deflate.compress_binary(json_bytes)
    assert len(output) < len(json_bytes) / 4
    assert deflate.should_compress(json_bytes, text=False)
    # Data that stops compressing is noticed from the achieved ratio.
    deflate.compress_binary(noise)
    assert not deflate.should_compress(json_bytes, text=False)


def test_small_binary_is_judged_by_its_achieved_ratio() -> None:
    deflate = negotiated(reprobe_interval=2)
    noise = os.urandom(500)  # under probe_size: compressed for real, then judged
    assert deflate.should_compress(noise, text=False)
    sender_side = deflate.compress_binary(noise)
    peer = negotiated()  # the same bytes inflate on the other side
    assert peer.inflate_message(sender_side, False, MiB) == noise
    assert not deflate.should_compress(noise, text=False)
    assert not deflate.should_compress(noise, text=False)
    assert deflate.should_compress(noise, text=False)  # probed again


def test_policy_options_are_validated() -> None:
    for bad in ({"min_size": -1}, {"probe_size": 0}, {"incompressible_ratio": 0.0}):
        with pytest.raises(ValueError):
            DeflateOptions(**bad)  # type: ignore[arg-type]


# -- end to end ---------------------------------------------------------------------


DEFLATE_OFFER = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"


async def start_echo(nursery: trio.Nursery, **kwargs: object) -> int:
    server = await nursery.start(
        lambda task_status: trio_ws.serve_websocket(
            echo_handler,
            HOST,
            0,
            None,
            task_status=task_status,
            **kwargs,  # type: ignore[arg-type]
        )
    )
    return server.port  # type: ignore[no-any-return]


async def read_message(reader: Reader, inflater: zlib._Decompress) -> tuple[int, bytes, bool]:
    opcode, payload = await reader.frame()
    compressed = bool(reader.last_first_byte & 0x40)
    if compressed:
        payload = inflater.decompress(payload + TAIL)
    return opcode, payload, compressed


async def test_whole_and_fragmented_compressed_messages_share_the_context(
    nursery: trio.Nursery,
) -> None:
    """Whole messages (the fast branch) and fragmented ones (wsproto) alternate
    on one context-takeover stream: every message arrives intact."""
    port = await start_echo(nursery)
    stream, reader, head = await raw_client(port, extra=DEFLATE_OFFER)
    sender, inflater = Sender(), zlib.decompressobj(-12)
    async with stream:
        assert b"permessage-deflate" in head
        for i in range(12):
            message = (json_message(i) * 20).encode()
            payload = sender.compress(message)
            if i % 3 == 2:  # fragmented: RSV1 on the first frame only
                half = len(payload) // 2
                data = frame(TEXT, payload[:half], rsv=4, fin=False)
                data += frame(CONTINUATION, payload[half:])
            else:
                data = frame(TEXT, payload, rsv=4)
            await stream.send_all(data)
            with trio.fail_after(5):
                opcode, echoed, _ = await read_message(reader, inflater)
            assert (opcode, echoed) == (TEXT, message)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\xc3\x28 not UTF-8", 1007),
        (bytes(8 * MiB), 1009),  # about 8 KiB on the wire, one read
    ],
)
async def test_violations_in_whole_compressed_messages(
    nursery: trio.Nursery, payload: bytes, code: int
) -> None:
    port = await start_echo(nursery)
    stream, reader, _ = await raw_client(port, extra=DEFLATE_OFFER)
    async with stream:
        await stream.send_all(frame(TEXT, Sender().compress(payload), rsv=4))
        with trio.fail_after(5):
            assert await reader.close_code() == code


async def test_corrupt_whole_compressed_message_is_1007(nursery: trio.Nursery) -> None:
    port = await start_echo(nursery)
    stream, reader, _ = await raw_client(port, extra=DEFLATE_OFFER)
    async with stream:
        await stream.send_all(frame(BINARY, b"\xff\xff\xff", rsv=4))
        with trio.fail_after(5):
            assert await reader.close_code() == 1007


async def test_what_goes_out_compressed_by_default(nursery: trio.Nursery) -> None:
    seen: list[tuple[bytes, bool]] = []

    async def inspect(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(
            accept_answer(head, b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
        )
        inflater = zlib.decompressobj(-15)
        while True:
            opcode, payload, compressed = await read_message(reader, inflater)
            if opcode in (TEXT, BINARY):  # not the Close the client sends at the end
                seen.append((payload, compressed))

    port = await nursery.start(serve_raw, inspect)
    noise = os.urandom(8000)
    document = json.dumps([json_message(i) for i in range(100)])
    messages: list[str | bytes] = [b"0123456789abcdef", "short text", noise, document, noise]
    async with trio.open_nursery() as inner:
        ws = await trio_ws.connect_websocket(inner, HOST, port, "/", use_ssl=False)
        for message in messages:
            await ws.send_message(message)
        with trio.fail_after(5):
            while len(seen) < len(messages):
                await trio.sleep(0.01)
        inner.cancel_scope.cancel()
    raw = [m.encode() if isinstance(m, str) else m for m in messages]
    assert [payload for payload, _ in seen] == raw
    assert [compressed for _, compressed in seen] == [False, False, False, True, False]
