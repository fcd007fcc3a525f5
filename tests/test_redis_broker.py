"""The Redis broker against a real redis-server: delivery, faults, gaps, bounds."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_ws.broker import BrokerUnavailable, Delivery, Gap
from trio_ws.redis_bridge import RedisBroker

from . import redis_server as redis_server_module
from .redis_server import RedisServer, command

MODES = ["pubsub", "streams"]

#: coredis 6.9 leaks the AnyIO memory streams of a connection whose connect
#: fails (they are closed only after a successful connect), so reconnect
#: attempts while redis-server is down leave "Unclosed MemoryObject...Stream"
#: ResourceWarnings at garbage collection. Harmless (no socket or task is
#: left behind) and not ours; ignored only in the tests that stop the server.
coredis_connect_leak = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <function MemoryObject\w+Stream.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)


@asynccontextmanager
async def running(broker: RedisBroker, *rooms: str) -> AsyncIterator[RedisBroker]:
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            await nursery.start(broker.run)
            for room in rooms:
                broker.subscribe(room)
                await broker.wait_subscribed(room)
        yield broker
        nursery.cancel_scope.cancel()


class Collector:
    """Drains a broker's events into a list (what a bridge's consumer does)."""

    def __init__(self) -> None:
        self.deliveries: list[bytes] = []
        self.gaps: list[Gap] = []

    async def run(self, broker: RedisBroker) -> None:
        async for event in broker:
            if isinstance(event, Delivery):
                self.deliveries.append(event.payload)
            else:
                self.gaps.append(event)

    async def wait_for(self, count: int, seconds: float = 10) -> None:
        with trio.fail_after(seconds):
            while len(self.deliveries) < count:
                await trio.sleep(0.01)


@pytest.mark.parametrize("mode", MODES)
async def test_every_subscriber_gets_every_message_in_order(
    redis_server: RedisServer, mode: Any
) -> None:
    async with (
        running(RedisBroker(redis_server.url, mode=mode), "lobby") as one,
        running(RedisBroker(redis_server.url, mode=mode), "lobby", "other") as two,
        trio.open_nursery() as nursery,
    ):
        first, second = Collector(), Collector()
        nursery.start_soon(first.run, one)
        nursery.start_soon(second.run, two)
        sent = [f"message {i}".encode() for i in range(200)]
        for payload in sent:
            await one.publish("lobby", payload)
        await two.publish("other", b"only for two")
        await first.wait_for(200)
        await second.wait_for(201)
        assert first.deliveries == sent
        assert second.deliveries == [*sent, b"only for two"]
        assert not first.gaps and not second.gaps
        assert one.stats.broker_published == 200 and two.stats.broker_received == 201
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("mode", MODES)
async def test_unsubscribed_rooms_are_not_delivered(redis_server: RedisServer, mode: Any) -> None:
    async with running(RedisBroker(redis_server.url, mode=mode), "a", "b") as broker:
        broker.unsubscribe("b")
        with trio.fail_after(5):
            while "b" in broker.rooms:
                await trio.sleep(0.01)
        await trio.sleep(0.3)  # one streams read round, so that "b" is really dropped
        await broker.publish("b", b"not wanted")
        await broker.publish("a", b"wanted")
        with trio.fail_after(5):
            async for event in broker:
                assert event == Delivery("a", b"wanted")
                break


async def publish_steadily(broker: RedisBroker, room: str, count: int, accepted: list[int]) -> None:
    """Publish 0..count-1, retrying each while the broker is unreachable."""
    for i in range(count):
        while True:
            try:
                await broker.publish(room, str(i).encode())
            except BrokerUnavailable:
                await trio.sleep(0.02)
            else:
                accepted.append(i)
                break
        await trio.sleep(0.002)


async def traffic_through_a_restart(
    redis_server: RedisServer, mode: Any, *, save: bool
) -> tuple[list[int], Collector]:
    """600 messages from one broker to another; Redis restarts after 200."""
    async with (
        # Reconnection retries at most every 0.2 s, so that both ends are
        # back well before the last messages, however long the restart took.
        running(RedisBroker(redis_server.url, mode=mode, max_delay=0.2), "r") as publisher,
        running(RedisBroker(redis_server.url, mode=mode, max_delay=0.2), "r") as subscriber,
        trio.open_nursery() as nursery,
    ):
        received = Collector()
        nursery.start_soon(received.run, subscriber)
        accepted: list[int] = []
        nursery.start_soon(publish_steadily, publisher, "r", 600, accepted)
        await received.wait_for(200)
        await trio.to_thread.run_sync(lambda: redis_server.restart(save=save))
        with trio.fail_after(30):
            while len(accepted) < 600:
                await trio.sleep(0.05)
        await received.wait_for(1, 10)
        # Let the last messages arrive (all of them, or as many as survive).
        with trio.move_on_after(5):
            while not received.deliveries or received.deliveries[-1] != b"599":
                await trio.sleep(0.02)
        assert subscriber.stats.broker_reconnects == 1
        nursery.cancel_scope.cancel()
    # coredis leaves the memory streams of a failed connection unclosed:
    # finalise them here, where the test's filter expects their warning,
    # not at a random moment of a later test.
    gc.collect()
    return accepted, received


@coredis_connect_leak
async def test_pubsub_restart_signals_the_gap_and_delivery_continues(
    redis_server: RedisServer,
) -> None:
    accepted, received = await traffic_through_a_restart(redis_server, "pubsub", save=False)
    got = [int(payload) for payload in received.deliveries]
    assert got == sorted(got) and got[-1] == 599  # in order, and delivery went on
    assert [gap.room for gap in received.gaps] == ["r"]
    lost = len(accepted) - len(got)
    print(f"pubsub restart: sent {len(accepted)}, delivered {len(got)}, lost {lost}, gaps 1")


@coredis_connect_leak
async def test_streams_restart_with_data_loses_nothing(redis_server: RedisServer) -> None:
    accepted, received = await traffic_through_a_restart(redis_server, "streams", save=True)
    got = [int(payload) for payload in received.deliveries]
    assert got == accepted == list(range(600))
    assert not received.gaps
    print(f"streams restart (data kept): sent {len(accepted)}, delivered {len(got)}, lost 0")


@coredis_connect_leak
async def test_streams_restart_that_lost_the_data_signals_a_gap(
    redis_server: RedisServer,
) -> None:
    accepted, received = await traffic_through_a_restart(redis_server, "streams", save=False)
    got = [int(payload) for payload in received.deliveries]
    assert got == sorted(got) and got[-1] == 599
    assert [gap.room for gap in received.gaps] == ["r"]
    assert "restarted" in received.gaps[0].reason
    print(f"streams restart (data lost): sent {len(accepted)}, delivered {len(got)}, gaps 1")


async def test_streams_reconnect_resumes_without_loss_within_the_cap(
    redis_server: RedisServer,
) -> None:
    async with (
        running(RedisBroker(redis_server.url, mode="streams"), "r") as publisher,
        trio.open_nursery() as nursery,
    ):
        subscriber = RedisBroker(redis_server.url, mode="streams", maxlen=100)
        received = Collector()
        nursery.start_soon(received.run, subscriber)
        async with running(subscriber, "r"):
            await publisher.publish("r", b"before")
            await received.wait_for(1)
        # The subscriber is away while 50 more (fewer than its cap) arrive.
        for i in range(50):
            await publisher.publish("r", b"%d" % i)
        async with running(subscriber):
            await received.wait_for(51)
        assert received.deliveries == [b"before", *(b"%d" % i for i in range(50))]
        assert not received.gaps
        nursery.cancel_scope.cancel()


async def test_streams_trimmed_past_the_last_id_signals_a_gap(redis_server: RedisServer) -> None:
    async with trio.open_nursery() as nursery:
        publisher = RedisBroker(redis_server.url, mode="streams", maxlen=10)
        subscriber = RedisBroker(redis_server.url, mode="streams", maxlen=10)
        received = Collector()
        nursery.start_soon(received.run, subscriber)
        async with running(publisher), running(subscriber, "r"):
            await publisher.publish("r", b"seen")
            await received.wait_for(1)
        async with running(publisher):
            for i in range(500):  # far more than the cap while the subscriber is away
                await publisher.publish("r", b"%d" % i)
        async with running(subscriber):
            with trio.fail_after(10):
                while b"499" not in received.deliveries:
                    await trio.sleep(0.01)
        assert [gap.room for gap in received.gaps] == ["r"]  # signalled once
        assert "trimmed" in received.gaps[0].reason
        got = [int(payload) for payload in received.deliveries[1:]]
        assert got == list(range(got[0], 500)) and got[0] > 0  # the rest, in order
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("mode", MODES)
async def test_a_full_local_buffer_drops_and_signals_never_silently(
    redis_server: RedisServer, mode: Any
) -> None:
    async with (
        running(RedisBroker(redis_server.url, mode=mode)) as publisher,
        running(RedisBroker(redis_server.url, mode=mode, buffer_size=8), "r") as subscriber,
    ):
        for i in range(100):  # nobody consumes meanwhile
            await publisher.publish("r", b"%d" % i)
        with trio.fail_after(10):
            while subscriber.stats.broker_received < 100:
                await trio.sleep(0.01)
        events = []
        with trio.move_on_after(0.5):
            async for event in subscriber:
                events.append(event)
        deliveries = [e for e in events if isinstance(e, Delivery)]
        gaps = [e for e in events if isinstance(e, Gap)]
        assert len(deliveries) <= 8 and gaps and gaps[0].room == "r"
        assert len(deliveries) + subscriber.stats.broker_dropped == 100
        assert subscriber.stats.broker_gaps >= 1


@coredis_connect_leak
async def test_publish_while_disconnected_raises(redis_server: RedisServer) -> None:
    broker = RedisBroker(redis_server.url, mode="pubsub", initial_delay=0.05, max_delay=0.1)
    async with running(broker):
        redis_server.stop()
        with trio.fail_after(10):
            while broker.connected:
                await trio.sleep(0.01)
        with pytest.raises(BrokerUnavailable):
            await broker.publish("r", b"nowhere")
        redis_server.start()
        with trio.fail_after(10):
            while not broker.connected:
                await trio.sleep(0.01)
        await broker.publish("r", b"somewhere")


def test_redis_server_fixture_has_persistence_off(redis_server: RedisServer) -> None:
    reply = command(redis_server.port, "CONFIG", "GET", "save")
    assert reply.endswith(b"$4\r\nsave\r\n$0\r\n\r\n")
    assert b"$2\r\nno" in command(redis_server.port, "CONFIG", "GET", "appendonly")


def test_a_missing_redis_server_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(redis_server_module, "REDIS_SERVER", str(tmp_path / "none"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the Redis tests"):
        redis_server_module.require_redis_server()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="redis-server is not installed"):
        redis_server_module.require_redis_server()
