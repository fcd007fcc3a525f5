"""RoomsBridge, LocalBroker and WorkerStats over real loopback connections (no Redis)."""

from __future__ import annotations

import pytest
import trio

import trio_ws
from trio_ws.broker import EngineSession, Gap, LocalBroker
from trio_ws.room_bridge import RoomsBridge, decode_message, encode_message
from trio_ws.stats import WorkerStats

from .conftest import HOST


async def serve_rooms(nursery: trio.Nursery, bridge: RoomsBridge) -> int:
    """A server whose clients join the room named by their path and publish to it."""

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        bridge.stats.opened()
        try:
            await bridge.join(request.path.strip("/"), ws)
            async for message in ws:
                bridge.stats.received(message)
                await bridge.publish(request.path.strip("/"), message)
        finally:
            bridge.stats.closed()

    await nursery.start(bridge.run)
    server = await nursery.start(trio_ws.serve_websocket, handler, HOST, 0, None)
    return int(server.port)


async def test_publish_reaches_every_member_and_is_counted(nursery: trio.Nursery) -> None:
    bridge = RoomsBridge(LocalBroker())
    port = await serve_rooms(nursery, bridge)
    async with (
        trio_ws.open_websocket_url(f"ws://{HOST}:{port}/a") as one,
        trio_ws.open_websocket_url(f"ws://{HOST}:{port}/a") as two,
        trio_ws.open_websocket_url(f"ws://{HOST}:{port}/b") as other,
    ):
        for sender, message in ((one, "hi"), (two, b"\x00bin")):
            await sender.send_message(message)
            for ws in (one, two):  # the sender included
                with trio.fail_after(5):
                    assert await ws.get_message() == message
        with trio.move_on_after(0.1):
            pytest.fail(f"room b got {await other.get_message()!r}")
        stats = bridge.stats
        assert stats.connections_open == 3 and stats.connections_total == 3
        assert stats.messages_in == 2 and stats.bytes_in == 2 + 4
        assert stats.messages_out == 4 and stats.bytes_out == 2 * 2 + 2 * 4
        assert stats.broker_published == 2 and stats.broker_received == 2
        assert "a" in bridge.rooms and "b" in bridge.broker.rooms
    with trio.fail_after(5):
        while bridge.broker.rooms:  # the last members left: unsubscribed
            await trio.sleep(0.01)
    assert bridge.stats.connections_open == 0


class GappyBroker(LocalBroker):
    """An engine that reports one gap in room "a" as soon as it is up."""

    async def _session(self, session: EngineSession) -> None:
        session.up()
        session.gap("a", "for the test")
        await super()._session(session)


async def test_a_gap_reaches_on_gap_and_the_counters(nursery: trio.Nursery) -> None:
    gaps: list[Gap] = []
    bridge = RoomsBridge(GappyBroker(), on_gap=gaps.append)
    await nursery.start(bridge.run)
    with trio.fail_after(5):
        while not gaps:
            await trio.sleep(0.01)
    assert gaps == [Gap("a", "for the test")]
    assert bridge.stats.broker_gaps == 1


def test_message_encoding_round_trips_and_rejects_foreign_payloads() -> None:
    for message in ("héllo", b"\xff\x00", ""):
        assert decode_message(encode_message(message)) == message
    with pytest.raises(ValueError):
        decode_message(b"xwhat")
    with pytest.raises(ValueError):
        decode_message(b"t\xff")  # not UTF-8


def test_worker_stats_snapshot_names_every_counter() -> None:
    stats = WorkerStats()
    stats.opened()
    stats.sent("abc")
    assert stats.as_dict() == {
        name: (1 if name in ("connections_open", "connections_total", "messages_out") else 0)
        for name in WorkerStats.__slots__
    } | {"bytes_out": 3}


class BrokenBroker(LocalBroker):
    """An engine that fails with a bug, not a lost connection, once up."""

    async def _session(self, session: EngineSession) -> None:
        session.up()
        raise ValueError("engine bug")


async def test_an_engine_error_comes_out_of_run_as_itself() -> None:
    bridge = RoomsBridge(BrokenBroker())
    with trio.fail_after(5), pytest.raises(ValueError, match="engine bug"):
        await bridge.run()
