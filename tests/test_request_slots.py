"""A handler keeps its WebSocketRequest for the whole connection: it has slots."""

from __future__ import annotations

import sys

import pytest
import trio

import trio_ws
from trio_ws.http import HTTPRequest
from trio_ws.server_handshake import check_upgrade

from .conftest import HOST


async def test_a_request_kept_by_its_handler_is_small(nursery: trio.Nursery) -> None:
    kept: list[trio_ws.WebSocketRequest] = []

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        request.state["user"] = "alice"  # the place for the application's data
        ws = await request.accept()
        kept.append(request)
        await ws.get_message()

    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    async with trio_ws.open_websocket(HOST, server.port, "/", use_ssl=False):
        with trio.fail_after(5):
            while not kept:
                await trio.sleep(0.01)
        (request,) = kept
        assert not hasattr(request, "__dict__")
        with pytest.raises(AttributeError):
            request.user = "bob"  # type: ignore[attr-defined]
        assert request.state == {"user": "alice"}
        assert request.path == "/"
        assert sys.getsizeof(request) < 150  # with its __dict__: about 350 bytes


def test_the_parsed_upgrade_kept_by_a_request_has_slots() -> None:
    head = HTTPRequest(
        "GET",
        "/",
        "1.1",
        [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
            (b"sec-websocket-version", b"13"),
        ],
    )
    upgrade = check_upgrade(head)
    assert upgrade.key == b"dGhlIHNhbXBsZSBub25jZQ=="
    assert not hasattr(upgrade, "__dict__")
