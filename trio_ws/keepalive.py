"""Keepalive: ping the peer regularly, measure latency, detect a vanished peer.

A peer that disappears without closing TCP (a pulled cable, a crashed NAT)
leaves a half-open connection that would otherwise wait forever. One task per
connection pings every ``ping_interval`` seconds and closes the connection
with 1011 when a pong takes longer than ``ping_timeout``.

One subtlety: the reader stops reading while the application's message queue
is full (that is backpressure), so a pong may sit unread behind messages the
application has not consumed. A late pong during such a stall is blamed on
the application, not the peer, and does not close the connection.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

from .exceptions import ConnectionClosed

if TYPE_CHECKING:
    from .connection import WebSocketConnection


async def keep_alive(conn: WebSocketConnection, interval: float, timeout: float | None) -> None:
    """Run until the connection closes; never raises except Cancelled."""
    while True:
        with trio.move_on_after(interval):
            await conn._reader_done.wait()
            return  # the connection is closed
        stalls = conn._queue_stalls
        start = trio.current_time()
        with trio.move_on_after(math.inf if timeout is None else timeout) as wait:
            try:
                await conn.ping()
            except ConnectionClosed:
                return
        if not wait.cancelled_caught:
            conn._latency = trio.current_time() - start
        elif not conn._queue_full and conn._queue_stalls == stalls:
            await conn._expire("keepalive ping timeout")
            return
