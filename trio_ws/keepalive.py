"""Keepalive: ping the peer regularly, measure latency, detect a vanished peer.

(The application's own pings waiting for their pongs, :class:`PingWaiters`,
are kept here too.)

A peer that disappears without closing TCP (a pulled cable, a crashed NAT)
leaves a half-open connection that would otherwise wait forever. Every
``ping_interval`` seconds a connection sends a ping; if its pong takes longer
than ``ping_timeout``, the connection is closed with 1011.

One timer task per Trio run does this for every connection, from a heap of
deadlines, rather than one sleeping task per connection: an idle connection
then costs a heap entry instead of a task, and opening one spawns nothing.
The timer never waits on a connection: it sees each one only through a
:class:`KeepaliveState` handle, whose ping is queued without waiting and
whose expiry closes the connection from a task in that connection's own
nursery.

One subtlety: the reader stops reading while the application's message queue
is full (that is backpressure), so a pong may sit unread behind messages the
application has not consumed. A late pong during such a stall is blamed on
the application, not the peer, and does not close the connection.
"""

from __future__ import annotations

import abc
import heapq
import itertools
import logging
import math
import os
import weakref
from collections import OrderedDict

import trio

from .run_services import run_service

logger = logging.getLogger("trio_ws.keepalive")


class KeepaliveState(abc.ABC):
    """One connection's keepalive: its settings, the ping in flight, latency.

    It is also the timer's whole view of the connection: the connection
    hands the timer a subclass that answers the few abstract methods below,
    so this module knows nothing else about connections. The timer holds
    these weakly, so a connection that is dropped is freed, not kept until due.
    """

    __slots__ = (
        "__weakref__",
        "due",
        "interval",
        "latency",
        "payload",
        "sent",
        "stalls",
        "timeout",
    )

    def __init__(self, interval: float, timeout: float | None) -> None:
        self.interval = interval
        self.timeout = timeout
        self.due = math.inf  # when the timer next looks at the connection
        self.payload: bytes | None = None  # of the ping awaiting its pong
        self.sent = 0.0  # when that ping went out
        self.stalls = 0  # the connection's queue stalls when it went out
        #: Round-trip time, in seconds, of the last keepalive ping, or None.
        self.latency: float | None = None

    def start(self) -> None:
        """The connection is open: its first ping is due in one interval."""
        timer().schedule(self, trio.current_time() + self.interval)

    def pong(self, payload: bytes) -> bool:
        """Note a pong; True if it answered the keepalive ping (latency measured)."""
        return timer().pong(self, payload)

    # -- what the connection supplies; none of these may wait

    @abc.abstractmethod
    def over(self) -> bool:
        """Whether the connection has closed (or started closing)."""

    @abc.abstractmethod
    def queue_full(self) -> bool:
        """Whether the reader waits on a full message queue right now."""

    @abc.abstractmethod
    def queue_stalls(self) -> int:
        """How many times the reader has waited on a full queue so far."""

    @abc.abstractmethod
    def send_ping(self, payload: bytes) -> None:
        """Queue a ping with *payload*, without waiting (dropped if closing)."""

    @abc.abstractmethod
    def expire(self, why: str) -> None:
        """Close the connection with 1011 and *why*, in the background."""


class KeepaliveTimer:
    """Pings the connections of one Trio run; see :func:`schedule`."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, weakref.ref[KeepaliveState]]] = []
        self._order = itertools.count()  # breaks ties without comparing connections
        self._scope: trio.CancelScope | None = None

    def schedule(self, state: KeepaliveState, when: float) -> None:
        """Have :meth:`_visit` look at *state* at *when* (replacing any earlier plan)."""
        state.due = when
        heapq.heappush(self._heap, (when, next(self._order), weakref.ref(state)))
        if self._scope is not None and when < self._scope.deadline:
            self._scope.deadline = when

    async def run(self) -> None:
        """Visit connections as they fall due, until the run ends."""
        while True:
            deadline = self._heap[0][0] if self._heap else math.inf
            with trio.CancelScope(deadline=deadline) as self._scope:
                await trio.sleep_forever()
            self._scope = None
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:
                due, _, ref = heapq.heappop(self._heap)
                state = ref()
                if state is not None and state.due == due:
                    try:
                        self._visit(state, now)
                    except Exception:  # a bug here must not crash the whole run
                        logger.exception("keepalive failed for a connection")

    def _visit(self, state: KeepaliveState, now: float) -> None:
        if state.over():
            return  # the connection is over: forget it
        if state.payload is None:
            state.payload = os.urandom(4)
            state.sent, state.stalls = now, state.queue_stalls()
            state.send_ping(state.payload)
            if state.timeout is not None:
                self.schedule(state, now + state.timeout)
            return  # without a timeout, the pong schedules the next ping
        # The pong is overdue.
        if not state.queue_full() and state.queue_stalls() == state.stalls:
            state.expire("keepalive ping timeout")
            return
        # The queue was full meanwhile, so the pong may be unread: try again.
        state.payload = None
        self.schedule(state, now + state.interval)

    def pong(self, state: KeepaliveState, payload: bytes) -> bool:
        """Note a pong; True if it answered the keepalive ping (latency measured)."""
        if payload != state.payload:
            return False
        now = trio.current_time()
        state.latency = now - state.sent
        state.payload = None
        self.schedule(state, now + state.interval)
        return True


class PingWaiters:
    """The application's own pings (``ping()``) still waiting for their pong.

    Kept next to keepalive because a pong may answer either. The table is
    made on the first ping: most connections never send one, and an empty
    ``OrderedDict`` costs about 140 bytes.
    """

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: OrderedDict[bytes, trio.Event] | None = None  # oldest first

    def add(self, payload: bytes | None) -> tuple[bytes, trio.Event]:
        """Register a ping with *payload* (``None``: a random one not in flight).

        Raises ``ValueError`` if a ping with *payload* is in flight already.
        """
        waiting = self._waiting
        if waiting is None:
            waiting = self._waiting = OrderedDict()
        if payload is None:
            payload = os.urandom(4)
            while payload in waiting:
                payload = os.urandom(4)
        elif payload in waiting:
            raise ValueError(f"a ping with payload {payload!r} is already in flight")
        waiter = waiting[payload] = trio.Event()
        return payload, waiter

    def remove(self, payload: bytes) -> bool:
        """Forget the ping; True if no pong had answered it (the connection closed)."""
        return self._waiting is not None and self._waiting.pop(payload, None) is not None

    def acknowledge(self, payload: bytes) -> None:
        """A pong: it answers the ping with *payload* and every ping sent before it."""
        waiting = self._waiting
        if not waiting or payload not in waiting:
            return  # an unsolicited pong
        while waiting:
            key, waiter = waiting.popitem(last=False)
            waiter.set()
            if key == payload:
                break

    def release_all(self) -> None:
        """The connection closed: wake every waiting ping (it stays unanswered)."""
        for waiter in (self._waiting or {}).values():
            waiter.set()


_TIMER: trio.lowlevel.RunVar[KeepaliveTimer] = trio.lowlevel.RunVar("trio_ws.keepalive")


def timer() -> KeepaliveTimer:
    """This Trio run's keepalive timer, started on first use."""
    return run_service(_TIMER, KeepaliveTimer, "trio_ws keepalive timer")
