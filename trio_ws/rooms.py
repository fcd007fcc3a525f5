"""Named groups of connections, for publishing to a room at a time.

A connection may be in any number of rooms. It leaves all of them when it
closes: :class:`Rooms` registers one close callback per connection (see
:meth:`WebSocketConnection.add_close_callback`), so nothing polls and
nothing is left behind. ``on_room_opened`` and ``on_room_closed`` tell the
application when a room gets its first member and loses its last, which is
where a cross-process bridge subscribes to and unsubscribes from a channel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .broadcast import DEFAULT_POLICY, BroadcastResult, SlowConsumer, broadcast_prepared
from .connection import WebSocketConnection
from .outgoing import PreparedMessage

__all__ = ["Rooms"]

RoomCallback = Callable[[str], object]


class Rooms:
    """Rooms of connections, in one process; publish with :meth:`publish`.

    *on_room_opened(name)* and *on_room_closed(name)* are called
    synchronously when room *name* gets its first member and when it loses
    its last; they must not block, and an exception from one propagates to
    the caller of :meth:`join` or :meth:`leave` (from a close, it is
    logged). *policy* is the slow-consumer policy of :meth:`publish` when
    the call gives none. Only the Trio thread may use a ``Rooms``.
    """

    def __init__(
        self,
        *,
        on_room_opened: RoomCallback | None = None,
        on_room_closed: RoomCallback | None = None,
        policy: SlowConsumer = DEFAULT_POLICY,
    ) -> None:
        self._on_opened = on_room_opened
        self._on_closed = on_room_closed
        self.policy = policy
        self._members: dict[str, set[WebSocketConnection]] = {}
        # Each room's members as handed out and broadcast to: made on first
        # use after a change, so that publishing to a stable room copies
        # nothing.
        self._frozen: dict[str, frozenset[WebSocketConnection]] = {}
        self._rooms_of: dict[WebSocketConnection, set[str]] = {}

    def join(self, room: str, connection: WebSocketConnection) -> None:
        """Add *connection* to *room*; nothing happens if it is already there.

        A connection that has already closed is not added (it would leave
        at once). Creating the room calls ``on_room_opened``.
        """
        if connection.closed is not None:
            return
        rooms = self._rooms_of.get(connection)
        if rooms is None:
            rooms = self._rooms_of[connection] = set()
            connection.add_close_callback(self._forget)
        elif room in rooms:
            return
        rooms.add(room)
        members = self._members.get(room)
        self._frozen.pop(room, None)
        if members is None:
            self._members[room] = {connection}
            if self._on_opened is not None:
                self._on_opened(room)
        else:
            members.add(connection)

    def leave(self, room: str, connection: WebSocketConnection) -> None:
        """Take *connection* out of *room*, if it is there.

        Removing the last member calls ``on_room_closed``.
        """
        rooms = self._rooms_of.get(connection)
        if rooms is None or room not in rooms:
            return
        rooms.discard(room)
        if not rooms:
            del self._rooms_of[connection]
            connection.remove_close_callback(self._forget)
        self._remove(room, connection)

    def _remove(self, room: str, connection: WebSocketConnection) -> None:
        members = self._members[room]
        members.discard(connection)
        self._frozen.pop(room, None)
        if not members:
            del self._members[room]
            if self._on_closed is not None:
                self._on_closed(room)

    def _forget(self, connection: WebSocketConnection) -> None:
        """The connection closed: it leaves every room it was in."""
        for room in self._rooms_of.pop(connection, ()):
            self._remove(room, connection)

    def members(self, room: str) -> frozenset[WebSocketConnection]:
        """The connections in *room* (empty if there is no such room)."""
        frozen = self._frozen.get(room)
        if frozen is None:
            members = self._members.get(room)
            if members is None:
                return frozenset()
            frozen = self._frozen[room] = frozenset(members)
        return frozen

    def rooms_of(self, connection: WebSocketConnection) -> frozenset[str]:
        """The rooms *connection* is in."""
        return frozenset(self._rooms_of.get(connection, ()))

    def publish(
        self,
        room: str,
        message: str | bytes | PreparedMessage,
        *,
        policy: SlowConsumer | None = None,
        compress: bool = True,
    ) -> BroadcastResult:
        """:func:`~trio_ws.broadcast` *message* to the members of *room*.

        Synchronous and never waits, as broadcast is. *policy* defaults to
        this object's. A room with no members gets nothing (the result is 0).
        """
        prepared = message if isinstance(message, PreparedMessage) else PreparedMessage(message)
        members = self.members(room)
        if not members:
            return BroadcastResult(0)
        return broadcast_prepared(members, prepared, policy or self.policy, compress)

    def __contains__(self, room: object) -> bool:
        return room in self._members

    def __len__(self) -> int:
        """The number of rooms with at least one member."""
        return len(self._members)

    def __iter__(self) -> Iterator[str]:
        """The names of the rooms with members (a snapshot)."""
        return iter(tuple(self._members))
