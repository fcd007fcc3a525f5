"""CloseReason, Endpoint and the exceptions as values: one type per field,
and every public exception survives copy and pickle with its attributes."""

from __future__ import annotations

import copy
import pickle

import pytest
import trio

import trio_ws

from .conftest import HOST
from .support.codec import CLOSE, close_payload, frame
from .support.handshake import accept_answer
from .support.peers import Reader, serve_raw


@pytest.mark.parametrize(
    "payload", [close_payload(1000), close_payload(4001), b""], ids=["1000", "4001", "empty"]
)
async def test_close_reason_from_the_peer_has_an_int_code_and_none_reason(
    nursery: trio.Nursery, payload: bytes
) -> None:
    async def close_at_once(stream: trio.SocketStream, reader: Reader, head: bytes) -> None:
        await stream.send_all(accept_answer(head) + frame(CLOSE, payload, mask=False))
        await reader.close_code()  # the client's echo

    port = await nursery.start(serve_raw, close_at_once)
    async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
        with pytest.raises(trio_ws.ConnectionClosed) as info:
            await ws.get_message()
    for reason in (ws.closed, info.value.reason):
        assert reason is not None
        assert type(reason.code) is int
        assert reason.reason is None
    assert ws.closed is not None and ws.closed.code == (
        int.from_bytes(payload[:2], "big") if payload else 1005
    )


async def test_close_reason_from_our_side_and_from_the_server(
    echo_server: trio_ws.WebSocketServer,
) -> None:
    async with trio_ws.open_websocket(HOST, echo_server.port, "/", use_ssl=False) as ws:
        await ws.aclose(1000, "")
    assert ws.closed == trio_ws.CloseReason(1000, None)
    assert ws.closed is not None and ws.closed.reason is None and type(ws.closed.code) is int


def test_close_reason_normalises_its_fields() -> None:
    from wsproto.frame_protocol import CloseReason as WsprotoCode

    reason = trio_ws.CloseReason(WsprotoCode.NORMAL_CLOSURE, "")
    assert type(reason.code) is int and reason.code == 1000
    assert reason.reason is None
    assert reason == trio_ws.CloseReason(1000)
    assert repr(pickle.loads(pickle.dumps(reason))) == repr(reason)


def exception_samples() -> list[BaseException]:
    closed = trio_ws.CloseReason(1011, "boom")
    return [
        trio_ws.ConnectionClosed(closed),
        trio_ws.ConnectionClosed(trio_ws.CloseReason(1000, None)),
        trio_ws.ConnectionClosedOK(trio_ws.CloseReason(1001, "bye")),
        trio_ws.ConnectionClosedError(closed),
        trio_ws.ConnectionRejected(403, [(b"server", b"x")], b"no"),
        trio_ws.ConnectionRejected(100, [], None),
        trio_ws.HandshakeError("server closed the connection before answering"),
        trio_ws.ConnectionTimeout("no WebSocket connection within 1 s"),
        trio_ws.DisconnectionTimeout("the closing handshake did not finish in time"),
        trio_ws.MessageTypeError(b"\x00", str),
        trio_ws.MessageTypeError("text", bytes),
    ]


def test_every_public_exception_has_a_sample() -> None:
    public = {
        obj
        for name in trio_ws.__all__
        if isinstance(obj := getattr(trio_ws, name), type) and issubclass(obj, BaseException)
    }
    # ConnectionClosed(...) always builds one of its two subclasses.
    sampled = {type(e) for e in exception_samples()} | {trio_ws.ConnectionClosed}
    assert public <= sampled, public - sampled


@pytest.mark.parametrize("exc", exception_samples(), ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
def test_exceptions_survive_copy_and_pickle(exc: BaseException, how: str) -> None:
    clone = {
        "copy": copy.copy,
        "deepcopy": copy.deepcopy,
        "pickle": lambda e: pickle.loads(pickle.dumps(e)),
    }[how](exc)
    assert type(clone) is type(exc)
    assert clone.args == exc.args
    assert str(clone) == str(exc) and repr(clone) == repr(exc)
    for name in ("reason", "status_code", "headers", "body", "message", "expected"):
        if hasattr(exc, name):
            assert getattr(clone, name) == getattr(exc, name), name


def test_rejection_text_names_the_status() -> None:
    exc = trio_ws.ConnectionRejected(404, [], b"")
    assert str(exc) == "server rejected WebSocket connection: HTTP 404"
    assert exc.args == (404, [], b"")  # as in trio-websocket
