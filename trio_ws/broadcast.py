"""One message to many connections, never waiting on any of them.

:func:`broadcast` queues a message on every open connection it is given,
through :meth:`WebSocketConnection.try_send_message`: the frame is encoded
once (see :mod:`trio_ws.outgoing`) and each connection's write buffer keeps
its own bound. A connection whose buffer is full is a slow consumer, and the
:class:`SlowConsumer` policy says what happens to it: by default it is
closed with 1013 so that its client reconnects and resynchronises, because
a gap the client cannot see is the unsafe outcome.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable

from .close_codes import TRY_AGAIN_LATER
from .connection import WebSocketConnection
from .exceptions import ConnectionClosed
from .flusher import current_flusher
from .outgoing import PreparedMessage

__all__ = ["DEFAULT_POLICY", "BroadcastResult", "SlowConsumer", "broadcast"]

#: The reason sent with 1013 to a connection closed for being too slow.
SLOW_CONSUMER_REASON = "too slow to keep up; reconnect and resync"


class SlowConsumer(enum.Enum):
    """What a broadcast does to a connection whose write buffer is full."""

    #: Close it with 1013 (try again later). Its client knows it missed
    #: messages and reconnects, so it never shows a silent gap. The default.
    CLOSE = "close"
    #: Leave it open and skip the message there, counting it in
    #: :attr:`WebSocketConnection.skipped_messages`. For streams where the
    #: next message supersedes the last (prices, positions, cursors).
    SKIP = "skip"


#: The policy used when none is given.
DEFAULT_POLICY = SlowConsumer.CLOSE


class BroadcastResult(int):
    """The number of connections a broadcast queued the message on.

    It is an ``int``, so ``if broadcast(...)`` and ``n += broadcast(...)``
    work. It also says what happened to the other connections given.
    """

    skipped: int
    """Slow consumers that were left open without the message (``SKIP``)."""
    closed: int
    """Slow consumers closed with 1013 (``CLOSE``)."""
    not_open: int
    """Connections that had already closed, or started closing."""

    def __new__(
        cls, queued: int, skipped: int = 0, closed: int = 0, not_open: int = 0
    ) -> BroadcastResult:
        self = super().__new__(cls, queued)
        self.skipped, self.closed, self.not_open = skipped, closed, not_open
        return self

    @property
    def queued(self) -> int:
        """The connections the message was queued on (the int value)."""
        return int(self)

    def __repr__(self) -> str:
        return (
            f"BroadcastResult(queued={int(self)}, skipped={self.skipped}, "
            f"closed={self.closed}, not_open={self.not_open})"
        )


def broadcast(
    connections: Iterable[WebSocketConnection],
    message: str | bytes | PreparedMessage,
    *,
    policy: SlowConsumer = DEFAULT_POLICY,
    compress: bool = True,
) -> BroadcastResult:
    """Queue *message* on every open connection of *connections*; never waits.

    ``str`` is sent as a text message, ``bytes`` as binary. The frame is
    encoded once and shared by every connection that does not compress;
    compressing connections each get it compressed for their own context
    (once per set of parameters where the output does not depend on the
    context). ``compress=False`` sends it uncompressed everywhere, which
    is cheaper for data that does not compress. Compression runs here, on
    the Trio thread: broadcast large messages with ``compress=False`` or
    sparingly.

    A connection whose write buffer is full gets the *policy*'s outcome
    (see :class:`SlowConsumer`); closed or closing connections are counted
    and passed over. The call is synchronous: nothing in it waits on a
    peer, so no client can delay the caller or the other clients, and it is
    not a schedule point. A broadcast that follows another closely leaves
    its frames in the write buffers for a few scheduler passes, so that
    each connection gets several messages in one system call (see
    :doc:`/topics/broadcast`); a lone one is written before this returns.
    It iterates over a snapshot of *connections*
    unless that is already a frozenset or tuple, so a connection closing
    (and leaving a room) meanwhile does not disturb it.
    """
    prepared = message if isinstance(message, PreparedMessage) else PreparedMessage(message)
    if not isinstance(connections, (frozenset, tuple)):
        connections = tuple(connections)
    return broadcast_prepared(connections, prepared, policy, compress)


def broadcast_prepared(
    connections: Collection[WebSocketConnection],
    prepared: PreparedMessage,
    policy: SlowConsumer,
    compress: bool,
) -> BroadcastResult:
    """:func:`broadcast` for callers that already hold a snapshot and a
    :class:`PreparedMessage` (such as :class:`~trio_ws.Rooms`)."""
    queued = skipped = closed = not_open = 0
    for connection in connections:
        if connection.closed is not None:
            not_open += 1
            continue
        try:
            if connection.try_send_message(prepared, compress=compress):
                queued += 1
                continue
        except ConnectionClosed:  # the transport failed before anyone noticed
            not_open += 1
            continue
        if policy is SlowConsumer.SKIP:
            skipped += 1
        else:
            connection.close_nowait(TRY_AGAIN_LATER, SLOW_CONSUMER_REASON)
            closed += 1
    if queued:
        current_flusher().broadcast_ended()  # the next ones share writes with this
    return BroadcastResult(queued, skipped, closed, not_open)
