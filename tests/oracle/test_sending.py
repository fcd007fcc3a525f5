"""Differential test of the sending half: what trio_ws's core encodes, a bare
wsproto connection (and the test-side codec) must read back unchanged.

Random conversations (text and binary messages, whole or in fragments,
compressible or not, pings and pongs between, a Close at the end) are framed
by the core's ``send_*`` side as a server and as a client, with and without
permessage-deflate. The bytes go, cut at random read boundaries, to a bare
wsproto ``Connection`` of the other side, which must deliver the same
messages, pings, pongs and close code; :func:`tests.fuzz.verdict.parse_frames`
checks every frame for RFC conformance on the way.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Message, Ping, Pong
from wsproto.extensions import Extension, PerMessageDeflate

from trio_ws import DeflateOptions
from trio_ws.core.deflate import PerMessageDeflate as CoreDeflate
from trio_ws.core.protocol import Protocol
from trio_ws.core.size_limit import MessageSizeLimit

from ..fuzz.properties import settings_kwargs
from ..fuzz.verdict import parse_frames
from ..support.codec import BINARY, TEXT

EXAMPLES = int(os.environ.get("TRIO_WS_ORACLE_EXAMPLES", "100"))
CI = settings(**settings_kwargs(EXAMPLES, derandomize=True))


@dataclass(frozen=True)
class Send:
    """One thing the application sends."""

    kind: str  # "message", "ping" or "pong"
    text: bool = False
    payload: bytes = b""
    #: Sizes of the fragments (empty: one whole message).
    pieces: tuple[int, ...] = ()


@st.composite
def conversations(draw: st.DrawFn) -> tuple[list[Send], tuple[int, ...], int]:
    """What to send, where the reader's reads end, and the close code."""
    sends = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["message", "message", "message", "ping", "pong"]))
        if kind != "message":
            sends.append(Send(kind, payload=draw(st.binary(max_size=125))))
            continue
        text = draw(st.booleans())
        if text:
            payload = draw(st.text(max_size=300)).encode()
        else:
            payload = draw(st.one_of(st.binary(max_size=3000), st.just(b"abc" * 700)))
        pieces: tuple[int, ...] = ()
        if draw(st.integers(0, 2)) == 0:
            pieces = tuple(draw(st.lists(st.integers(0, 400), min_size=1, max_size=5)))
        sends.append(Send(kind, text, payload, pieces))
    cuts = tuple(draw(st.lists(st.integers(1, 20_000), max_size=10)))
    code = draw(st.sampled_from([1000, 1001, 3000, 4999]))
    return sends, cuts, code


def _full(params: str) -> str:
    """An extension header value: the name, then the parameters."""
    return "; ".join(["permessage-deflate", *([params] if params else [])])


def negotiated(client: bool, compress: bool) -> tuple[Protocol, list[Extension]]:
    """The sending core (client or server) and its wsproto peer's extensions,
    permessage-deflate agreed between them as a real handshake would."""
    limit = MessageSizeLimit(1 << 20)
    if not compress:
        return Protocol(client=client, size_limit=limit), []
    ours = CoreDeflate(DeflateOptions(), limit, client=client)
    theirs = PerMessageDeflate()
    if client:  # the core offers, wsproto (the server) answers
        answer = theirs.accept(ours.offer())
        assert isinstance(answer, str)
        ours.finalize(_full(answer))
    else:
        answer = ours.accept(_full(str(theirs.offer())))
        assert answer is not None
        theirs.finalize(_full(answer))
    return Protocol(client=client, size_limit=limit, deflate=ours), [theirs]


def encode(core: Protocol, sends: list[Send], code: int) -> bytes:
    """The bytes the core frames for *sends*, then its Close frame."""
    out: list[bytes] = []
    for send in sends:
        if send.kind == "ping":
            frame = core.ping_frame(send.payload)
        elif send.kind == "pong":
            frame = core.pong_frame(send.payload)
        elif not send.pieces:
            deflate = core.send_deflate(send.payload, send.text, True)
            body = send.payload if deflate is None else core.compress(send.payload, send.text)
            frame = core.message_frame(send.text, body, compressed=deflate is not None)
        else:
            compress = core.send_deflate(send.payload, send.text, True) is not None
            bounds = sorted(
                {0, len(send.payload), *(min(p, len(send.payload)) for p in send.pieces)}
            )
            spans = list(itertools.pairwise(bounds)) or [(0, 0)]
            for i, (a, b) in enumerate(spans):
                piece = core.fragment_frame(
                    send.text,
                    send.payload[a:b],
                    first=i == 0,
                    fin=i == len(spans) - 1,
                    deflate=compress,
                )
                out.append(bytes(piece[0]) + bytes(piece[1]))
            continue
        assert frame is not None
        out.append(bytes(frame[0]) + bytes(frame[1]))
    close = core.close_frame(code, "bye")
    assert close is not None
    out.append(bytes(close[0]) + bytes(close[1]))
    return b"".join(out)


def read_back(
    data: bytes, cuts: tuple[int, ...], *, client: bool, extensions: list[Extension]
) -> list[tuple[object, ...]]:
    """What a bare wsproto connection of the other side makes of *data*."""
    conn = Connection(ConnectionType.SERVER if client else ConnectionType.CLIENT, extensions)
    got: list[tuple[object, ...]] = []
    parts: list[str | bytes] = []
    bounds = [0, *sorted(c for c in set(cuts) if c < len(data)), len(data)]
    for a, b in itertools.pairwise(bounds):
        conn.receive_data(data[a:b])
        for event in conn.events():
            if isinstance(event, Message):
                parts.append(event.data)
                if event.message_finished:
                    text = isinstance(parts[0], str)
                    joined = "".join(parts) if text else b"".join(parts)  # type: ignore[arg-type]
                    got.append(("message", TEXT if text else BINARY, _raw(joined)))
                    parts = []
            elif isinstance(event, (Ping, Pong)):
                got.append((type(event).__name__.lower(), bytes(event.payload)))
            else:
                assert isinstance(event, CloseConnection), event
                got.append(("close", event.code, event.reason))
    return got


def _raw(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else bytes(data)


def expected(sends: list[Send], code: int) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for send in sends:
        if send.kind == "message":
            out.append(("message", TEXT if send.text else BINARY, send.payload))
        else:
            out.append((send.kind, send.payload))
    return [*out, ("close", code, "bye")]


def check(
    sends: list[Send], cuts: tuple[int, ...], code: int, *, client: bool, compress: bool
) -> None:
    core, extensions = negotiated(client, compress)
    data = encode(core, sends, code)
    # Every frame must be well formed, masked exactly when a client sent it.
    parse_frames(data, masked=client, who="trio_ws's core", inflate=compress)
    assert read_back(data, cuts, client=client, extensions=extensions) == expected(sends, code)


@pytest.mark.parametrize(
    "client, compress",
    [(False, False), (True, False), (False, True), (True, True)],
    ids=["server", "client", "compressing-server", "compressing-client"],
)
@CI
@given(conversation=conversations())
def test_frames_read_back_by_wsproto(
    client: bool, compress: bool, conversation: tuple[list[Send], tuple[int, ...], int]
) -> None:
    check(*conversation, client=client, compress=compress)
