"""Rooms that span processes: local :class:`~trio_ws.Rooms` joined by a broker.

Every process (worker) keeps its own members in a :class:`~trio_ws.Rooms`.
The first local member of a room subscribes this process to the room on
the broker, the last one leaving unsubscribes it. :meth:`RoomsBridge.publish`
hands the message to the broker only; the broker brings it back to every
subscribed process, this one included, and each delivers it to its local
members with ``Rooms.publish`` (a broadcast: never waits, slow consumers get
the room's policy). So every member, wherever it is connected, sees a
room's messages in the one order the broker gave them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from .broadcast import DEFAULT_POLICY, SlowConsumer
from .broker import Broker, Delivery, Gap
from .connection import WebSocketConnection
from .groups import one_error
from .outgoing import PreparedMessage
from .rooms import Rooms
from .stats import WorkerStats

__all__ = ["RoomsBridge", "decode_message", "encode_message"]

logger = logging.getLogger("trio_ws.broker")

_TEXT, _BINARY = b"t", b"b"


def encode_message(message: str | bytes) -> bytes:
    """The broker payload of *message*: one type byte, then the data."""
    if isinstance(message, str):
        return _TEXT + message.encode()
    return _BINARY + bytes(message)


def decode_message(payload: bytes) -> str | bytes:
    """The message in a broker *payload*; ``ValueError`` if it is not one of ours."""
    kind, data = payload[:1], payload[1:]
    if kind == _TEXT:
        return data.decode()  # UnicodeDecodeError is a ValueError
    if kind == _BINARY:
        return data
    raise ValueError(f"not a trio_ws room message (type byte {kind!r})")


class RoomsBridge:
    """Rooms whose messages reach their members in every process.

    Create it with a started-or-not :class:`~trio_ws.broker.Broker` and run
    it with ``await nursery.start(bridge.run)`` (which starts the broker).
    *policy* is the rooms' slow-consumer policy. *on_gap(gap)* is called,
    on the Trio thread and without waiting, when messages to a room may
    have been lost (see :class:`~trio_ws.broker.Gap`): tell the members,
    or close them with 1013 so that they reconnect and resynchronise. The
    broker's counters and the fan-out counters go to ``bridge.stats``.
    """

    def __init__(
        self,
        broker: Broker,
        *,
        policy: SlowConsumer = DEFAULT_POLICY,
        on_gap: Callable[[Gap], object] | None = None,
    ) -> None:
        self.broker = broker
        self.stats: WorkerStats = broker.stats
        self.rooms = Rooms(
            on_room_opened=broker.subscribe, on_room_closed=broker.unsubscribe, policy=policy
        )
        self._on_gap = on_gap

    async def join(self, room: str, connection: WebSocketConnection) -> None:
        """Put *connection* in *room*, and return once the broker delivers it here.

        Returns at once while the broker is disconnected (the room's
        messages start on reconnection). Cancelling it leaves the
        connection in the room.
        """
        self.rooms.join(room, connection)
        await self.broker.wait_subscribed(room)

    def leave(self, room: str, connection: WebSocketConnection) -> None:
        """Take *connection* out of *room* (closing does this by itself)."""
        self.rooms.leave(room, connection)

    async def publish(self, room: str, message: str | bytes) -> None:
        """Send *message* to every member of *room*, in every process.

        Raises :class:`~trio_ws.broker.BrokerUnavailable` while the broker
        is disconnected. Cancelling it may or may not have published.
        """
        await self.broker.publish(room, encode_message(message))

    async def run(
        self, *, task_status: trio.TaskStatus[RoomsBridge] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the broker and deliver what it brings, until cancelled.

        ``nursery.start`` returns once the broker first connected. An error
        other than a lost connection ends it, raised as itself.
        """
        with one_error():
            await self._run(task_status)

    async def _run(self, task_status: trio.TaskStatus[RoomsBridge]) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.broker.run)
            task_status.started(self)
            async for event in self.broker:
                if isinstance(event, Delivery):
                    self._deliver(event)
                else:
                    self._gap(event)

    def _deliver(self, delivery: Delivery) -> None:
        try:
            message = decode_message(delivery.payload)
        except ValueError as exc:
            logger.warning("ignoring a message to room %r: %s", delivery.room, exc)
            return
        result = self.rooms.publish(delivery.room, PreparedMessage(message))
        self.stats.fanned_out(len(delivery.payload) - 1, result)

    def _gap(self, gap: Gap) -> None:
        if self._on_gap is None:
            return  # the broker logged it and counted it
        try:
            self._on_gap(gap)
        except Exception:
            logger.exception("on_gap failed for room %r", gap.room)
