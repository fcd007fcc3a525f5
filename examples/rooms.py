"""Chat rooms across worker processes (and machines) through Redis.

    REDIS_URL=redis://127.0.0.1:6379/0 python -m trio_ws serve examples.rooms:handler \\
        --workers 2 --port 8765

A client connects to ws://host:8765/<room>; every text message a member
sends reaches every member of that room, the sender included, whichever
worker each one is connected to. ``REDIS_MODE=streams`` uses capped Redis
Streams instead of pub/sub (see "Scaling out" in the docs for what each
mode can lose); ``REDIS_MODE=local`` uses no Redis at all, for one worker.
``GET /metrics`` answers with this worker's counters in Prometheus text
format (needs ``prometheus_client``).

The runner imports ``handler``; its ``lifespan`` connects each worker to
Redis before serving, and its ``request_hook`` answers ``/metrics``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

import trio_ws
from trio_ws.broker import Broker, BrokerUnavailable, Gap, LocalBroker
from trio_ws.redis_bridge import RedisBroker
from trio_ws.room_bridge import RoomsBridge
from trio_ws.stats import WorkerStats

logger = logging.getLogger("examples.rooms")

#: Counters exported as Prometheus counters; the rest are gauges.
GAUGES = {"connections_open"}


class StatsCollector(Collector):
    """Exposes a WorkerStats as ``trio_ws_<name>`` metrics, labelled by worker pid."""

    def __init__(self, stats: WorkerStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        pid = str(os.getpid())
        for name, value in self.stats.as_dict().items():
            family: GaugeMetricFamily | CounterMetricFamily
            if name in GAUGES:
                family = GaugeMetricFamily(f"trio_ws_{name}", name, labels=["worker"])
            else:
                family = CounterMetricFamily(f"trio_ws_{name}", name, labels=["worker"])
            family.add_metric([pid], value)
            yield family


class RoomsApp:
    """The handler the runner serves: one bridge to Redis per worker process."""

    def __init__(self) -> None:
        self.bridge: RoomsBridge | None = None
        self.registry = CollectorRegistry()

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        mode = os.environ.get("REDIS_MODE", "pubsub")
        broker: Broker
        if mode == "local":  # no Redis: rooms within this one worker only
            broker = LocalBroker()
        else:
            broker = RedisBroker(url, mode="streams" if mode == "streams" else "pubsub")
        bridge = RoomsBridge(broker, on_gap=self.on_gap)
        self.registry.register(StatsCollector(bridge.stats))
        async with trio.open_nursery() as nursery:
            with trio.fail_after(30):
                self.bridge = await nursery.start(bridge.run)
            yield
            nursery.cancel_scope.cancel()

    def on_gap(self, gap: Gap) -> None:
        """Tell the room's local members that they may have missed messages."""
        if self.bridge is not None:
            self.bridge.rooms.publish(gap.room, "[server] some messages may have been lost")

    async def request_hook(self, request: trio_ws.HTTPRequest) -> trio_ws.HTTPResponse | None:
        if urlsplit(request.path).path != "/metrics":
            return None
        body = generate_latest(self.registry)
        return trio_ws.HTTPResponse(200, [(b"content-type", CONTENT_TYPE_LATEST.encode())], body)

    async def __call__(self, request: trio_ws.WebSocketRequest) -> None:
        bridge = self.bridge
        assert bridge is not None, "serve this with python -m trio_ws serve (see the docstring)"
        room = urlsplit(request.path).path.strip("/") or "lobby"
        ws = await request.accept()
        bridge.stats.opened()
        try:
            await bridge.join(room, ws)
            async for message in ws:
                bridge.stats.received(message)
                if not isinstance(message, str):
                    continue
                try:
                    await bridge.publish(room, message)
                except BrokerUnavailable:
                    await ws.send_message("[server] not sent: the broker is unreachable")
        finally:
            bridge.stats.closed()


handler = RoomsApp()
