"""Rooms: join, leave, publish, and leaving every room on close."""

from __future__ import annotations

import gc
import os
import weakref

import pytest
import trio

import trio_ws
from trio_ws import SlowConsumer

from .conftest import HOST
from .test_broadcast import Hub, clients


@pytest.fixture
async def hub(nursery: trio.Nursery) -> Hub:
    hub = Hub()
    hub.server = await nursery.start(trio_ws.serve_websocket, hub.handler, HOST, 0, None)
    return hub


async def test_join_leave_members_and_callbacks(hub: Hub) -> None:
    rooms = hub.rooms
    async with clients(hub.url + "/a,b", 1), clients(hub.url + "/b", 1):
        conns = hub.connections
        (in_both,) = [ws for ws in conns if rooms.rooms_of(ws) == {"a", "b"}]
        (only_b,) = conns - {in_both}
        assert rooms.rooms_of(only_b) == frozenset({"b"})
        assert rooms.members("a") == {in_both} and rooms.members("b") == conns
        assert rooms.members("nowhere") == frozenset()
        assert "a" in rooms and "nowhere" not in rooms and len(rooms) == 2
        assert sorted(rooms) == ["a", "b"]
        assert hub.opened == ["a", "b"]
        rooms.join("a", in_both)  # already there: nothing happens
        assert hub.opened == ["a", "b"]
        rooms.leave("a", in_both)
        rooms.leave("a", in_both)  # not there any more: nothing happens
        assert hub.closed == ["a"] and "a" not in rooms and len(rooms) == 1
        assert rooms.rooms_of(in_both) == {"b"}
        members = rooms.members("b")
        assert rooms.members("b") is members  # unchanged: not copied again


async def test_publish_reaches_the_room_only(hub: Hub) -> None:
    async with clients(hub.url + "/a", 2) as in_a, clients(hub.url + "/b", 1) as (in_b,):
        result = hub.rooms.publish("a", "to a")
        assert result == 2 and isinstance(result, trio_ws.BroadcastResult)
        assert hub.rooms.publish("empty", "to nobody") == 0
        assert hub.rooms.publish("b", b"to b", policy=SlowConsumer.SKIP) == 1
        for ws in in_a:
            assert await ws.get_message() == "to a"
        assert await in_b.get_message() == b"to b"


async def test_many_connections_leave_all_rooms_on_close_without_leaking(hub: Hub) -> None:
    refs: list[weakref.ref[trio_ws.WebSocketConnection]] = []
    for _ in range(5):
        async with clients(hub.url + "/lobby,x,y", 20):
            with trio.fail_after(10):
                while len(hub.rooms.members("lobby")) != 20:
                    await trio.sleep(0.01)
            refs.extend(weakref.ref(ws) for ws in hub.connections)
            assert len(hub.rooms) == 3
        # The clients closed: every server-side connection left every room.
        with trio.fail_after(10):
            while len(hub.rooms) or len(hub.connections):
                await trio.sleep(0.01)
        assert sorted(hub.closed[-3:]) == ["lobby", "x", "y"]
    assert len(hub.opened) == len(hub.closed) == 15
    assert hub.rooms.publish("lobby", "anyone?") == 0
    gc.collect()
    assert len(refs) == 100 and not [ref for ref in refs if ref() is not None]


async def test_a_closed_connection_is_not_added(hub: Hub) -> None:
    async with clients(hub.url + "/", 1):
        (ws,) = hub.connections
        await ws.aclose()
        hub.rooms.join("late", ws)
        assert "late" not in hub.rooms and hub.rooms.rooms_of(ws) == frozenset()


async def test_slow_consumer_policy_per_room(hub: Hub) -> None:
    hub.rooms.policy = SlowConsumer.SKIP
    noise = os.urandom(100_000)
    async with clients(hub.url + "/r", 1, compression=None):  # never reads
        with trio.fail_after(30):
            for _ in range(500):
                result = hub.rooms.publish("r", noise)
                if result.skipped:
                    break
                await trio.sleep(0)
        assert result.skipped == 1 and result.closed == 0
        (ws,) = hub.rooms.members("r")
        assert ws.closed is None and ws.skipped_messages == 1
        closing = hub.rooms.publish("r", noise, policy=SlowConsumer.CLOSE)
        assert closing.closed == 1 and "r" not in hub.rooms  # it left on close
