"""The small interface between rooms and a message broker (Redis today).

A :class:`Broker` carries room messages between processes. It knows which
rooms this process wants (:meth:`~Broker.subscribe` and
:meth:`~Broker.unsubscribe`, synchronous, so that a room's first join and
last leave can call them directly), publishes payloads
(:meth:`~Broker.publish`), and yields what arrives, in order, as
:class:`Delivery` and :class:`Gap` events (``async for event in broker``).

What every engine shares lives here: the bounded local buffer, the
reconnect loop with backoff, and gap bookkeeping. An engine implements one
connected session (:meth:`Broker._session`, reporting through the
:class:`EngineSession` it is handed) and says which exceptions mean
"the connection was lost". Nothing is ever lost silently: when a message
cannot be delivered (the engine lost it, or the local buffer was full) a
:class:`Gap` for that room comes out instead.
"""

from __future__ import annotations

import abc
import logging
import random
from dataclasses import dataclass

import trio

from .groups import leaves, one_error, real_error
from .options import BROKER_BUFFER_SIZE, BROKER_INITIAL_DELAY, BROKER_MAX_DELAY
from .stats import WorkerStats

__all__ = ["Broker", "BrokerUnavailable", "Delivery", "EngineSession", "Gap", "LocalBroker"]

logger = logging.getLogger("trio_ws.broker")


@dataclass(frozen=True, slots=True)
class Delivery:
    """A payload published to *room* by some process (this one included)."""

    room: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages to *room* may have been lost here; *reason* says why."""

    room: str
    reason: str


class BrokerUnavailable(Exception):
    """Raised by :meth:`Broker.publish` while the broker cannot be reached."""


class Broker(abc.ABC):
    """Carries room messages between processes; see the module docstring.

    *buffer_size* bounds the events waiting for the consumer; when it is
    full, further messages are dropped and a :class:`Gap` is signalled.
    Reconnection waits a random delay up to *initial_delay*, doubling to
    *max_delay*. *stats* receives the broker counters.
    """

    #: Exceptions an engine raises when its connection is lost.
    connection_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(
        self,
        *,
        buffer_size: int = BROKER_BUFFER_SIZE,
        initial_delay: float = BROKER_INITIAL_DELAY,
        max_delay: float = BROKER_MAX_DELAY,
        stats: WorkerStats | None = None,
    ) -> None:
        if buffer_size < 1:
            raise ValueError("buffer_size must be >= 1")
        self.stats = stats if stats is not None else WorkerStats()
        self._initial_delay = initial_delay
        self._max_delay = max_delay
        self._wanted: set[str] = set()
        self._changed = trio.Event()
        self._active: set[str] = set()  # rooms the engine is listening to now
        self._synced = trio.Event()  # set after each change of _active
        self._send, self._receive = trio.open_memory_channel[Delivery | Gap](buffer_size)
        self._pending_gaps: dict[str, str] = {}  # gaps that found the buffer full
        self._connected = False

    # -- what the application calls ----------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the engine is connected right now."""
        return self._connected

    @property
    def rooms(self) -> frozenset[str]:
        """The rooms this process wants messages for."""
        return frozenset(self._wanted)

    def subscribe(self, room: str) -> None:
        """Start receiving *room*'s messages (soon: the engine subscribes in the background)."""
        if room not in self._wanted:
            self._wanted.add(room)
            self._changed.set()

    def unsubscribe(self, room: str) -> None:
        """Stop receiving *room*'s messages."""
        if room in self._wanted:
            self._wanted.discard(room)
            self._changed.set()

    async def wait_subscribed(self, room: str) -> None:
        """Return once the engine listens to *room* (call :meth:`subscribe` first).

        Returns at once while disconnected: there is nothing to wait for
        until the reconnection, which subscribes again by itself.
        """
        while self._connected and room in self._wanted and room not in self._active:
            await self._synced.wait()
        await trio.lowlevel.checkpoint()

    async def publish(self, room: str, payload: bytes) -> None:
        """Hand *payload* to the broker for every subscriber of *room*.

        Raises :class:`BrokerUnavailable` while disconnected: the caller
        decides whether to retry, tell its client, or drop the message.
        Cancelling it may or may not have published the message.
        """
        if not self._connected:
            raise BrokerUnavailable("the broker is not connected")
        try:
            await self._publish(room, payload)
        except BaseException as exc:
            if self._is_connection_error(exc):
                raise BrokerUnavailable(f"publishing to {room!r} failed: {exc}") from exc
            raise
        self.stats.broker_published += 1

    async def receive(self) -> Delivery | Gap:
        """The next event, in arrival order (a gap as soon as it is known).

        Cancelling it loses nothing: the event stays for the next call.
        """
        if self._pending_gaps:
            await trio.lowlevel.checkpoint()
            room, reason = self._pending_gaps.popitem()
            return Gap(room, reason)
        return await self._receive.receive()

    def __aiter__(self) -> Broker:
        return self

    async def __anext__(self) -> Delivery | Gap:
        return await self.receive()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Stay connected until cancelled, reconnecting with backoff.

        ``nursery.start(broker.run)`` returns once the first connection is
        up (wrap it in :func:`trio.fail_after` to bound that). Lost
        connections are logged and retried forever; other errors propagate,
        as themselves rather than in an exception group.
        """
        delay = self._initial_delay
        self._started = False
        while True:
            self._was_up = False
            try:
                with one_error():  # coredis nests groups: raise the real error
                    await self._session(EngineSession(self, task_status))
            except BaseException as exc:
                if not self._is_connection_error(exc):
                    raise
                # An engine cancelled mid-teardown may mix Cancelled into the
                # group: if the cancellation is ours, honour it here.
                await trio.lowlevel.checkpoint_if_cancelled()
                logger.warning("broker connection lost (%s); retrying", _describe(exc))
            finally:
                self._connected = False
                self._set_active(set())
            if self._was_up:
                delay = self._initial_delay
            await trio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, self._max_delay)

    # -- what an engine implements, and what its EngineSession uses --------

    _ever_connected = False
    _was_up = False
    _started = False

    @abc.abstractmethod
    async def _session(self, session: EngineSession) -> None:
        """Connect, call ``session.up()``, and serve until the connection is lost.

        The engine reports through *session* (another module's engine
        touches none of the broker's own state).
        """

    @abc.abstractmethod
    async def _publish(self, room: str, payload: bytes) -> None:
        """Send *payload* to *room* over the current connection."""

    def _up(self, task_status: trio.TaskStatus[None]) -> bool:
        """Mark the engine connected; return whether this was a reconnection."""
        self._connected = self._was_up = True
        again = self._ever_connected
        self._ever_connected = True
        if again:
            self.stats.broker_reconnects += 1
            logger.info("broker reconnected")
        if not self._started:
            self._started = True
            task_status.started()
        return again

    def _set_active(self, rooms: set[str]) -> None:
        self._active = rooms
        self._synced.set()
        self._synced = trio.Event()

    async def _wait_changed(self) -> None:
        """Return after the next :meth:`subscribe` or :meth:`unsubscribe`."""
        await self._changed.wait()

    def _take_changes(self) -> frozenset[str]:
        """The rooms wanted now; later changes will wake :meth:`_wait_changed`."""
        self._changed = trio.Event()
        return frozenset(self._wanted)

    def _deliver(self, room: str, payload: bytes) -> None:
        """Queue a message for the consumer, or drop it and signal a gap."""
        self.stats.broker_received += 1
        if room in self._pending_gaps:
            # Keep order: nothing after a gap goes out before the gap does.
            self.stats.broker_dropped += 1
            return
        try:
            self._send.send_nowait(Delivery(room, payload))
        except trio.WouldBlock:
            self.stats.broker_dropped += 1
            self._gap(room, "the local buffer was full; messages were dropped")

    def _gap(self, room: str, reason: str) -> None:
        """Signal that messages to *room* may have been lost."""
        self.stats.broker_gaps += 1
        logger.warning("gap in room %r: %s", room, reason)
        if room in self._pending_gaps:
            return
        try:
            self._send.send_nowait(Gap(room, reason))
        except trio.WouldBlock:
            self._pending_gaps[room] = reason

    def _is_connection_error(self, exc: BaseException) -> bool:
        """Whether *exc* (or every error in its groups) means the connection was lost.

        Cancelled mixed in is allowed: it follows from the loss.
        """
        found = [leaf for leaf in leaves(exc) if not isinstance(leaf, trio.Cancelled)]
        return bool(found) and all(isinstance(leaf, self.connection_errors) for leaf in found)


class EngineSession:
    """What an engine may do to its broker during one connected session.

    :meth:`Broker.run` hands one to the engine's ``_session``; the engine
    reports through it (connected, listening to these rooms, a message came,
    messages may be lost), and the broker's state stays the broker's own.
    """

    __slots__ = ("_broker", "_task_status")

    def __init__(self, broker: Broker, task_status: trio.TaskStatus[None]) -> None:
        self._broker = broker
        self._task_status = task_status

    def up(self) -> bool:
        """Mark the engine connected; return whether this was a reconnection."""
        return self._broker._up(self._task_status)

    def set_active(self, rooms: set[str]) -> None:
        """The engine listens to exactly *rooms* now."""
        self._broker._set_active(rooms)

    async def wait_changed(self) -> None:
        """Return after the next :meth:`~Broker.subscribe` or :meth:`~Broker.unsubscribe`."""
        await self._broker._wait_changed()

    def take_changes(self) -> frozenset[str]:
        """The rooms wanted now; later changes will wake :meth:`wait_changed`."""
        return self._broker._take_changes()

    def deliver(self, room: str, payload: bytes) -> None:
        """Queue a message for the consumer, or drop it and signal a gap."""
        self._broker._deliver(room, payload)

    def gap(self, room: str, reason: str) -> None:
        """Signal that messages to *room* may have been lost."""
        self._broker._gap(room, reason)


def _describe(exc: BaseException) -> str:
    error = real_error(exc)
    return f"{type(error).__name__}: {error}"


class LocalBroker(Broker):
    """An engine inside one process: what is published comes straight back.

    For a single worker, for tests, and as the reference point the Redis
    modes are measured against. Nothing crosses a process boundary.
    """

    async def _session(self, session: EngineSession) -> None:
        session.up()
        while True:
            session.set_active(set(session.take_changes()))
            await session.wait_changed()

    async def _publish(self, room: str, payload: bytes) -> None:
        await trio.lowlevel.checkpoint()
        if room in self._active:
            self._deliver(room, payload)
