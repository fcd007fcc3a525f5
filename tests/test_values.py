"""CloseReason, Endpoint and the exceptions as values: one type per field,
and every public exception survives copy and pickle with its attributes."""

from __future__ import annotations

import pickle

import pytest
import trio

import trio_ws

from .conftest import HOST
from .raw import CLOSE, Reader, accept_answer, close_payload, frame, serve_raw


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
