"""Keepalive: ping the peer regularly, measure latency, detect a vanished peer.

A peer that disappears without closing TCP (a pulled cable, a crashed NAT)
leaves a half-open connection that would otherwise wait forever. Every
``ping_interval`` seconds a connection sends a ping; if its pong takes longer
than ``ping_timeout``, the connection is closed with 1011.

One timer task per Trio run does this for every connection, from a heap of
deadlines, rather than one sleeping task per connection: an idle connection
then costs a heap entry instead of a task, and opening one spawns nothing.
The timer never waits on a connection: pings go through the connection's
non-blocking ``put`` and a connection that must be closed is closed by a task
started in that connection's own nursery.

One subtlety: the reader stops reading while the application's message queue
is full (that is backpressure), so a pong may sit unread behind messages the
application has not consumed. A late pong during such a stall is blamed on
the application, not the peer, and does not close the connection.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import weakref
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from .connection import WebSocketConnection

logger = logging.getLogger("trio_ws.keepalive")


class KeepaliveState:
    """One connection's keepalive: its settings and the ping in flight."""

    __slots__ = ("due", "interval", "payload", "sent", "stalls", "timeout")

    def __init__(self, interval: float, timeout: float | None) -> None:
        self.interval = interval
        self.timeout = timeout
        self.due = math.inf  # when the timer next looks at the connection
        self.payload: bytes | None = None  # of the ping awaiting its pong
        self.sent = 0.0  # when that ping went out
        self.stalls = 0  # the connection's queue stalls when it went out


class KeepaliveTimer:
    """Pings the connections of one Trio run; see :func:`schedule`."""

    def __init__(self) -> None:
        # Weak references: a closed connection is freed, not kept until due.
        self._heap: list[tuple[float, int, weakref.ref[WebSocketConnection]]] = []
        self._order = itertools.count()  # breaks ties without comparing connections
        self._scope: trio.CancelScope | None = None

    def schedule(self, conn: WebSocketConnection, when: float) -> None:
        """Have :meth:`_visit` look at *conn* at *when* (replacing any earlier plan)."""
        state = conn._keepalive
        assert state is not None
        state.due = when
        heapq.heappush(self._heap, (when, next(self._order), weakref.ref(conn)))
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
                conn = ref()
                if conn is not None and conn._keepalive and conn._keepalive.due == due:
                    try:
                        self._visit(conn, now)
                    except Exception:  # a bug here must not crash the whole run
                        logger.exception("keepalive failed for a connection")

    def _visit(self, conn: WebSocketConnection, now: float) -> None:
        state = conn._keepalive
        assert state is not None
        if conn._reader_done.is_set() or conn.closed is not None:
            return  # the connection is over: forget it
        if state.payload is None:
            state.payload = os.urandom(4)
            state.sent, state.stalls = now, conn._inbox.stalls
            conn._send_keepalive_ping(state.payload)
            if state.timeout is not None:
                self.schedule(conn, now + state.timeout)
            return  # without a timeout, the pong schedules the next ping
        # The pong is overdue.
        if not conn._inbox.full and conn._inbox.stalls == state.stalls:
            conn._spawn(conn._expire, "keepalive ping timeout")
            return
        # The queue was full meanwhile, so the pong may be unread: try again.
        state.payload = None
        self.schedule(conn, now + state.interval)

    def pong(self, conn: WebSocketConnection, payload: bytes) -> bool:
        """Note a pong; True if it answered the keepalive ping (latency measured)."""
        state = conn._keepalive
        if state is None or payload != state.payload:
            return False
        now = trio.current_time()
        conn._latency = now - state.sent
        state.payload = None
        self.schedule(conn, now + state.interval)
        return True


_TIMER: trio.lowlevel.RunVar[KeepaliveTimer] = trio.lowlevel.RunVar("trio_ws.keepalive")


def timer() -> KeepaliveTimer:
    """This Trio run's keepalive timer, started on first use."""
    try:
        return _TIMER.get()
    except LookupError:
        keepalive = KeepaliveTimer()
        _TIMER.set(keepalive)
        trio.lowlevel.spawn_system_task(keepalive.run, name="trio_ws keepalive timer")
        return keepalive
