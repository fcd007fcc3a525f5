"""Logging: each record names its connection; frames are logged without payloads."""

from __future__ import annotations

import logging

import pytest
import trio

import trio_ws

from .conftest import HOST


async def test_connection_records_carry_identity_and_elide_payloads(
    echo_server: trio_ws.WebSocketServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="trio_ws"):
        async with trio_ws.open_websocket(
            HOST, echo_server.port, "/logged?x=1", use_ssl=False
        ) as ws:
            await ws.send_message("top secret payload")
            await ws.get_message()
    records = [r for r in caplog.records if r.name == "trio_ws.connection"]
    assert records
    for record in records:
        assert record.path == "/logged?x=1"  # type: ignore[attr-defined]
        assert isinstance(record.ws_id, int)  # type: ignore[attr-defined]
        assert record.remote.startswith(HOST)  # type: ignore[attr-defined]
        assert "top secret" not in record.getMessage()
    messages = [r.getMessage() for r in records]
    assert any("> text 18 chars" in m for m in messages)
    assert any("< text 18 chars" in m for m in messages)
    assert any("close 1000" in m for m in messages)
    ids = {r.ws_id for r in records}  # type: ignore[attr-defined]
    assert len(ids) == 2  # the client's connection and the server's


async def test_handler_error_is_logged_with_traceback_and_connection(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: trio_ws.WebSocketRequest) -> None:
        await request.accept()
        raise ValueError("handler bug")

    server = await nursery.start(trio_ws.serve_websocket, broken, HOST, 0, None)
    async with trio_ws.open_websocket(HOST, server.port, "/broken", use_ssl=False) as ws:
        with pytest.raises(trio_ws.ConnectionClosed):
            await ws.get_message()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is ValueError
    assert errors[0].path == "/broken"  # type: ignore[attr-defined]
    assert "[#" in errors[0].getMessage()
