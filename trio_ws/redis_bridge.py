"""Rooms across processes and machines through Redis, with coredis.

``pip install 'trio_ws[redis]'``. coredis is built on AnyIO, so it runs on
Trio as it is. :class:`RedisBroker` is a :class:`~trio_ws.broker.Broker`
with two delivery modes:

``mode="pubsub"``
    ``PUBLISH`` / ``SUBSCRIBE``, one channel per room: lowest latency, but
    Redis keeps nothing. Whatever is published while this process is
    disconnected is lost; after every reconnection a :class:`Gap` is
    signalled for each room.

``mode="streams"``
    ``XADD ... MAXLEN ~ maxlen`` into one capped stream per room, read with
    ``XREAD`` from the last id this process delivered. A broker disconnect
    (or a worker falling behind) resumes without loss as long as the entries
    it has not read are still in the stream. When they may not be (the
    stream was trimmed past the last id read, or the server restarted and
    lost it), a :class:`Gap` is signalled.

coredis retries commands and re-subscribes by itself, silently; the broker
turns that off and reconnects itself, so that every loss is counted and
signalled. coredis's pub/sub buffer is unbounded, so it is drained promptly
into the broker's bounded buffer (see :class:`~trio_ws.broker.Broker`).
"""

from __future__ import annotations

from typing import Any, Literal

import anyio
import coredis
import coredis.exceptions
import trio
from coredis.retry import NoRetryPolicy
from coredis.tokens import PureToken

from .broker import Broker, BrokerUnavailable, Delivery, EngineSession, Gap
from .options import (
    REDIS_CONNECT_TIMEOUT,
    REDIS_STREAM_BATCH,
    REDIS_STREAM_BLOCK,
    REDIS_STREAM_MAXLEN,
)

__all__ = ["BrokerUnavailable", "Delivery", "Gap", "RedisBroker"]

#: The field of a stream entry that holds the payload.
FIELD = b"m"

#: The id before every entry: "from the start" for a stream that was empty.
START = b"0-0"


class RedisBroker(Broker):
    """A :class:`~trio_ws.broker.Broker` on one Redis server.

    *url* is a ``redis://`` (or ``rediss://``, ``unix://``) URL; *prefix*
    namespaces the keys (``prefix + room``), so that several applications
    can share a server. *maxlen* caps each room's stream in streams mode.
    Other keyword arguments are those of :class:`~trio_ws.broker.Broker`.
    Start it with ``await nursery.start(broker.run)``.
    """

    #: coredis reports a lost connection as its ConnectionError, or (when
    #: cancelled while its connection is closing) as AnyIO's closed-resource
    #: errors; TimeoutError (an OSError) is an unanswered subscription.
    connection_errors = (
        coredis.exceptions.ConnectionError,
        anyio.ClosedResourceError,
        anyio.BrokenResourceError,
        OSError,
    )

    def __init__(
        self,
        url: str,
        *,
        mode: Literal["pubsub", "streams"] = "pubsub",
        prefix: str = "trio_ws:room:",
        maxlen: int = REDIS_STREAM_MAXLEN,
        **options: Any,
    ) -> None:
        if mode not in ("pubsub", "streams"):
            raise ValueError(f"mode must be 'pubsub' or 'streams', not {mode!r}")
        if maxlen < 1:
            raise ValueError("maxlen must be >= 1")
        super().__init__(**options)
        self.url = url
        self.mode = mode
        self.prefix = prefix
        self.maxlen = maxlen
        self._batch = min(REDIS_STREAM_BATCH, maxlen)
        self._client: coredis.Redis[bytes] | None = None
        self._last: dict[str, bytes] = {}  # streams: last id delivered, per room
        self._run_id: str | None = None
        self._reported: set[str] = set()  # rooms whose last id is already known gapped

    def key(self, room: str) -> bytes:
        """The Redis channel or stream key of *room*."""
        return (self.prefix + room).encode()

    def _room(self, key: bytes | str) -> str:
        name = key.decode() if isinstance(key, bytes) else key
        return name[len(self.prefix) :]

    async def _publish(self, room: str, payload: bytes) -> None:
        client = self._client
        if client is None:
            raise BrokerUnavailable("the broker is not connected")
        try:
            if self.mode == "pubsub":
                await client.publish(self.key(room), payload)
            else:
                await client.xadd(
                    self.key(room),
                    {FIELD: payload},
                    trim_strategy=PureToken.MAXLEN,
                    threshold=self.maxlen,
                    trim_operator=PureToken.APPROXIMATELY,
                )
        except RuntimeError as exc:
            # coredis refuses a client whose pool has exited: the session
            # ended (the connection was lost) while this command waited for
            # a connection of that pool. That is the broker being away.
            if self._client is not client:
                raise BrokerUnavailable("the broker connection closed while publishing") from exc
            raise

    async def _session(self, session: EngineSession) -> None:
        client: coredis.Redis[bytes] = coredis.Redis.from_url(
            self.url,
            retry_policy=NoRetryPolicy(),
            connect_timeout=REDIS_CONNECT_TIMEOUT,
            stream_timeout=REDIS_CONNECT_TIMEOUT + REDIS_STREAM_BLOCK,
        )
        async with client:
            await client.ping()  # the pool connects lazily: fail here, not later
            self._client = client
            try:
                if self.mode == "pubsub":
                    await self._pubsub_session(client, session)
                else:
                    await self._streams_session(client, session)
            finally:
                self._client = None

    # -- pub/sub -------------------------------------------------------------

    async def _pubsub_session(self, client: coredis.Redis[bytes], session: EngineSession) -> None:
        async with client.pubsub(
            retry_policy=NoRetryPolicy(), ignore_subscribe_messages=True
        ) as pubsub:
            again = session.up()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._drain, pubsub, session)
                active: set[str] = set()
                while True:
                    wanted = session.take_changes()
                    if added := wanted - active:
                        await pubsub.subscribe(*(self.key(room) for room in added))
                    if dropped := active - wanted:
                        await pubsub.unsubscribe(*(self.key(room) for room in dropped))
                    if again:
                        why = "pub/sub reconnected: messages sent meanwhile are lost"
                        for room in added:
                            session.gap(room, why)
                        again = False
                    active = set(wanted)
                    session.set_active(active)
                    await session.wait_changed()

    async def _drain(self, pubsub: Any, session: EngineSession) -> None:
        """Move coredis's (unbounded) pub/sub buffer into our bounded one at once."""
        while True:
            message = await pubsub.get_message()
            if message is not None and message["type"] == "message":
                session.deliver(self._room(message["channel"]), _bytes(message["data"]))

    # -- streams -------------------------------------------------------------

    async def _streams_session(self, client: coredis.Redis[bytes], session: EngineSession) -> None:
        run_id = str((await client.info("server")).get("run_id"))
        restarted = self._run_id is not None and run_id != self._run_id
        self._run_id = run_id
        if session.up():
            await self._check_resume(client, restarted, session)
        while True:
            wanted = session.take_changes()
            for room in list(self._last):
                if room not in wanted:
                    del self._last[room]
            for room in wanted:
                if room not in self._last:
                    self._last[room] = await self._tail(client, room)
            session.set_active(set(self._last))
            if not self._last:
                await session.wait_changed()
                continue
            await self._read(client, session)

    async def _tail(self, client: coredis.Redis[bytes], room: str) -> bytes:
        """The id of *room*'s newest entry: a new subscriber reads what follows."""
        newest = await client.xrevrange(self.key(room), count=1)
        return _bytes(newest[0].identifier) if newest else START

    async def _read(self, client: coredis.Redis[bytes], session: EngineSession) -> None:
        streams = {self.key(room): last for room, last in self._last.items()}
        result = await client.xread(
            streams, count=self._batch, block=int(REDIS_STREAM_BLOCK * 1000)
        )
        for key, entries in (result or {}).items():
            room = self._room(key)
            if room not in self._last:
                continue
            before = self._last[room]
            for entry in entries:
                session.deliver(room, _bytes(entry.field_values.get(FIELD, b"")))
                self._last[room] = _bytes(entry.identifier)
            # Trimming removes the oldest entries and (approximately) keeps
            # at least maxlen, so entries after `before` can have been
            # trimmed only if at least maxlen >= batch followed it: only a
            # full batch needs checking. If `before` still exists, nothing
            # after it was trimmed.
            full = len(entries) >= self._batch and room not in self._reported
            self._reported.discard(room)
            if full and not await self._exists(client, room, before):
                session.gap(room, "the stream was trimmed past the last entry read")

    async def _exists(self, client: coredis.Redis[bytes], room: str, entry: bytes) -> bool:
        if entry == START:
            return False
        return bool(await client.xrange(self.key(room), entry, entry, count=1))

    async def _check_resume(
        self, client: coredis.Redis[bytes], restarted: bool, session: EngineSession
    ) -> None:
        """After a reconnection: signal rooms whose unread entries may be gone."""
        wanted = self.rooms
        for room, last in list(self._last.items()):
            if room not in wanted:
                continue  # left meanwhile: dropped by the next read round
            if last == START and not restarted:
                continue  # nothing read yet and the stream is still there
            if not await self._exists(client, room, last):
                why = "the server restarted" if restarted else "the stream was trimmed"
                session.gap(room, f"{why}: entries after the last one read may be lost")
                self._reported.add(room)


def _bytes(value: str | bytes) -> bytes:
    """coredis types replies as ``str | bytes``; without decode_responses they are bytes."""
    return value if isinstance(value, bytes) else value.encode()
