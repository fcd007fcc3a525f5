"""An open WebSocket connection: the public API, and the wiring of its parts.

One background reader task per connection (:mod:`trio_ws.reader`) reads the
transport, hands the bytes to the protocol core (:mod:`trio_ws.core`) and
pushes each complete message into the bounded inbox (:mod:`trio_ws.inbox`),
a Trio memory channel of capacity ``message_queue_size``. When the channel
is full the reader waits, so it stops reading the socket and TCP flow
control slows the peer down: nothing is dropped and nothing is buffered
without bound.

Senders queue whole frames in a bounded write buffer that one writer task
drains (see :mod:`trio_ws.socket_io`), so frames never interleave, back-to-back
messages share system calls, and a sender waits only when the buffer is full.
Whether and why the connection closed is kept by :mod:`trio_ws.lifecycle`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import trio

from . import keepalive
from .core.deflate import PerMessageDeflate
from .core.events import Pong
from .core.frames import control_payload
from .core.protocol import Protocol
from .core.size_limit import MessageSizeLimit
from .exceptions import MessageTypeError
from .handshake import Headers
from .inbox import Inbox, MessageStream
from .lifecycle import Lifecycle
from .logs import ConnectionLogger
from .options import DEFAULT, ConnectionOptions, DefaultType
from .outbox import Outbox
from .outgoing import PreparedMessage
from .reader import PendingViolation, Reader
from .socket_io import FrameWriter
from .values import CloseReason, Endpoint, socket_endpoints

logger = logging.getLogger("trio_ws.connection")

Message = str | bytes


class WebSocketConnection(trio.abc.AsyncResource):
    """A WebSocket connection after a successful opening handshake.

    Create one with the client functions or accept one on a server; the
    constructor is not public API. Messages arrive whole: ``get_message()``
    returns a complete ``str`` or ``bytes`` message of at most
    ``max_message_size`` bytes.
    """

    # No per-instance __dict__: with this many attributes it would cost more
    # than a kilobyte per connection. __weakref__: users may hold them weakly.
    __slots__ = (
        "__weakref__",
        "_handshake_headers",
        "_inbox",
        "_is_client",
        "_keepalive",
        "_life",
        "_local",
        "_log",
        "_outbox",
        "_path",
        "_reader",
        "_remote",
        "_subprotocol",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        options: ConnectionOptions,
        *,
        is_client: bool,
        path: str,
        subprotocol: str | None,
        handshake_headers: Headers,
        trailing_data: bytes = b"",
        size_limit: MessageSizeLimit | None = None,
        deflate: PerMessageDeflate | None = None,
        endpoints: tuple[Endpoint | str, Endpoint | str] | None = None,
    ) -> None:
        size_limit = size_limit or MessageSizeLimit(options.max_message_size)
        # The protocol, sans-I/O. Frames that came in the same read as the
        # handshake are split into frames like any other bytes.
        core = Protocol(
            client=is_client, size_limit=size_limit, deflate=deflate, trailing_data=trailing_data
        )
        self._is_client = is_client
        self._path = path
        self._subprotocol = subprotocol
        self._handshake_headers = handshake_headers
        # A server's request has asked the socket already: share its answer.
        self._local, self._remote = endpoints or socket_endpoints(stream)
        self._log = log = ConnectionLogger(logger, self._remote, path)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("open (%s)", "client" if is_client else "server")
        life: Lifecycle[WebSocketConnection] = Lifecycle(log)  # close state, callbacks, tasks
        self._life = life
        writer = FrameWriter(stream, life.transport_failed, options.receive_buffer_size)
        # Inbox(...), not Inbox[...](...) (the same for Lifecycle): calling a
        # generic alias costs 1-2 us (typing tries to set __orig_class__).
        inbox: Inbox[PendingViolation] = Inbox(
            life, options.message_queue_size, size_limit, options.max_message_size
        )
        self._inbox = inbox
        self._outbox = outbox = Outbox(core, writer, life, inbox, log, mask=is_client)
        ka = None if options.ping_interval is None else _Keepalive(options, life, inbox, outbox)
        self._keepalive = ka
        self._reader = reader = Reader(
            core, inbox, outbox, writer, life, log, ka, is_client, options
        )
        if ka is not None:
            ka.reader = reader

    def __str__(self) -> str:
        """``client-<n>`` or ``server-<n>``, a short id as in trio-websocket.

        *n* is the ``ws_id`` that this connection's log records carry.
        """
        return f"{'client' if self._is_client else 'server'}-{self._log.ws_id}"

    # ------------------------------------------------------------ properties

    @property
    def closed(self) -> CloseReason | None:
        """Why the connection closed, or ``None`` while it is open.

        Set as soon as either side starts the closing handshake (or the
        transport is lost), so a closing connection already reports it.
        """
        return self._life.reason

    @property
    def skipped_messages(self) -> int:
        """How many messages :meth:`try_send_message` refused for want of room.

        A broadcast with the ``SKIP`` slow-consumer policy leaves gaps in
        what this connection received; this counts them, so that an
        application can tell the client (or log) that it missed some.
        """
        return self._outbox.skipped

    def add_close_callback(self, callback: Callable[[WebSocketConnection], object]) -> None:
        """Call ``callback(connection)`` once, as soon as the connection closes.

        "Closes" means what :attr:`closed` means: the closing handshake has
        started, or the transport was lost. A connection already closed
        calls *callback* at once. Callbacks run synchronously in whichever
        task noticed the close, so they must be quick and must not block;
        an exception from one is logged and the others still run. Rooms use
        this to forget a connection without polling.
        """
        self._life.add_close_callback(self, callback)

    def remove_close_callback(self, callback: Callable[[WebSocketConnection], object]) -> None:
        """Forget *callback*, registered by :meth:`add_close_callback`, if it was."""
        self._life.remove_close_callback(callback)

    @property
    def latency(self) -> float | None:
        """Round-trip time, in seconds, of the last keepalive ping, or ``None``."""
        return None if self._keepalive is None else self._keepalive.latency

    @property
    def is_client(self) -> bool:
        """True if this side opened the connection."""
        return self._is_client

    @property
    def is_server(self) -> bool:
        """True if this side accepted the connection."""
        return not self._is_client

    @property
    def local(self) -> Endpoint | str:
        """This side's address, or the transport's ``repr()`` if it is not a socket."""
        return self._local

    @property
    def remote(self) -> Endpoint | str:
        """The peer's address, or the transport's ``repr()`` if it is not a socket."""
        return self._remote

    @property
    def path(self) -> str:
        """The request target of the opening handshake, such as ``/chat?room=1``."""
        return self._path

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose, or ``None``."""
        return self._subprotocol

    @property
    def handshake_headers(self) -> Headers:
        """The peer's handshake headers as ``(lowercase name, value)`` pairs.

        On a client, the headers of the server's 101 answer; on a server, the
        headers of the client's request.
        """
        return self._handshake_headers

    # ------------------------------------------------------------ receiving

    async def get_message(self) -> Message:
        """Wait for the next whole message and return it.

        Cancelling this call loses no message: a message is either returned or
        left at the head of the queue. Raises :class:`ConnectionClosed` once
        the connection is closed and every message that arrived before the
        close has been returned.
        """
        item = await self._inbox.get()
        if isinstance(item, PendingViolation):
            self._reader.met_violation(item)
        return item

    async def get_text(self) -> str:
        """Like :meth:`get_message`, for programs that expect only text: returns ``str``.

        A binary message raises :class:`~trio_ws.MessageTypeError`, which
        carries it; the connection stays open. Cancellation is as for
        :meth:`get_message`.
        """
        message = await self.get_message()
        if not isinstance(message, str):
            raise MessageTypeError(message, str)
        return message

    async def get_bytes(self) -> bytes:
        """Like :meth:`get_message`, for programs that expect only binary: returns ``bytes``.

        A text message raises :class:`~trio_ws.MessageTypeError`, as
        :meth:`get_text` does for binary.
        """
        message = await self.get_message()
        if not isinstance(message, bytes):
            raise MessageTypeError(message, bytes)
        return message

    @asynccontextmanager
    async def get_message_stream(
        self, max_size: int | DefaultType | None = DEFAULT
    ) -> AsyncIterator[MessageStream]:
        """Receive the next message as chunks, as they arrive, not whole.

        Use it as ``async with ws.get_message_stream() as chunks: async for
        chunk in chunks: ...``. The stream gets the next message in arrival
        order: if that message has already been queued whole, it comes as a
        single chunk; otherwise the reader hands its chunks over one at a
        time, so memory stays bounded by one chunk whatever the size.

        *max_size* limits this message, in bytes (``None``: no limit); it
        defaults to ``max_message_size``. Crossing it closes the connection
        with 1009. Meanwhile, ``get_message()`` waits for the message after
        the streamed one. Leaving the block early discards the rest of the
        message (it is still read, then dropped) unless no chunk of it had
        arrived yet, in which case the message stays for ``get_message()``.
        Only one stream may be open at a time.
        """
        stream = self._inbox.open_stream(max_size)
        if isinstance(stream, PendingViolation):
            self._reader.met_violation(stream)
        try:
            yield stream
        finally:
            self._inbox.close_stream(stream)

    def __aiter__(self) -> WebSocketConnection:
        return self

    def __anext__(self) -> Awaitable[Message]:
        """Iterate over messages; a normal close (1000, 1001, or a Close
        frame without a code, 1005) ends the loop.

        The inbox's own coroutine, not one of ours around it: a handler
        idling in ``async for`` keeps one suspended frame (about 230
        bytes) less.
        """
        return self._inbox.get(self._reader.met_violation, iterating=True)  # type: ignore[return-value]

    # ------------------------------------------------------------ sending

    async def send_message(self, message: str | bytes, *, compress: bool = True) -> None:
        """Send *message* as one text (``str``) or binary (``bytes``) message.

        The frame goes into the connection's write buffer and a writer task
        hands it to the transport; messages sent back to back share system
        calls. The call returns once the frame is queued, but waits first
        while the buffer holds 64 KiB or more, so a peer that reads slowly
        slows the sender down. Concurrent calls are queued in FIFO order.
        Cancelling the call while it waits for room sends nothing and leaves
        the connection usable. If the transport fails after the frame was
        queued, the next call raises :class:`ConnectionClosed`. The call is
        a schedule point only when it waits (and once every 32 frames), so
        sending costs no scheduler pass of its own.

        With permessage-deflate negotiated, messages shorter than
        ``DeflateOptions.min_size`` and binary data that does not compress
        (found by a cheap probe) go out uncompressed; ``compress=False``
        sends this one message uncompressed whatever it is. Large messages
        are compressed in a worker thread. See :doc:`/topics/compression`.
        """
        await self._outbox.send(message, compress)

    def try_send_message(
        self, message: str | bytes | PreparedMessage, *, compress: bool = True
    ) -> bool:
        """Queue *message* if the write buffer has room; never waits.

        This is :meth:`send_message` for a sender that must not wait on
        this peer, such as :func:`trio_ws.broadcast`. It returns ``True``
        if the message was queued, and ``False`` (counted in
        :attr:`skipped_messages`) if the buffer was full: the peer is not
        reading fast enough, and what to do about it is the caller's call.
        A :class:`~trio_ws.PreparedMessage` is encoded once for any number
        of connections. Right after a broadcast the frame may wait in the
        write buffer for a few scheduler passes, to share a system call
        with the next (see :doc:`/topics/broadcast`).

        Whole messages never interleave with a message being sent as a
        stream (or compressed in a worker thread): meanwhile the message
        waits its turn, in order, and counts as queued, as long as the
        messages waiting so are few and small (DEFERRED_MESSAGES, and
        WRITE_BUFFER_SIZE bytes unless it is the only one); beyond that it
        is refused. Raises :class:`ConnectionClosed` if the connection is
        closed. Not a schedule point, so there is nothing to cancel.
        """
        return self._outbox.try_send(message, compress)

    async def send_message_stream(
        self,
        chunks: Iterable[str | bytes] | AsyncIterable[str | bytes],
        *,
        text: bool | None = None,
        compress: bool = True,
    ) -> None:
        """Send one message made of *chunks*, each as one frame as soon as it comes.

        *chunks* is an iterable or async iterable of ``str`` (a text message)
        or ``bytes`` (a binary one); *text* fixes the type up front, else the
        first chunk does. Only one chunk is held at a time, whatever the
        message size. Pings, pongs and Close may be sent between the frames;
        other messages wait until this one is complete.

        A message cannot be left half-sent on a connection that goes on: if
        *chunks* raises or yields the wrong type, the connection is closed
        with 1011 and the error propagates; if the call is cancelled once
        frames are out, the message can never be finished, so the transport
        is dropped (1006).
        ``compress`` is as for :meth:`send_message`.
        """
        await self._outbox.send_stream(chunks, text, compress)

    async def ping(self, payload: bytes | None = None) -> None:
        """Send a ping and wait for the matching pong.

        *payload* (``bytes``, at most 125 of them: ``TypeError`` or
        ``ValueError`` otherwise, before anything is sent) must differ from
        every ping still in flight; by default a random one is used. A pong
        also acknowledges every ping sent before the one it answers. Raises
        :class:`ConnectionClosed` as soon as the connection closes.
        Cancelling the call stops the wait; the pong, when it comes, is ignored.
        """
        await self._reader.ping(None if payload is None else control_payload(payload))

    async def pong(self, payload: bytes | None = None) -> None:
        """Send an unsolicited pong, for example as a unidirectional heartbeat.

        *payload* is checked as for :meth:`ping`.
        """
        await self._outbox.send_control(Pong(b"" if payload is None else control_payload(payload)))

    # ------------------------------------------------------------ closing

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection with *code* and *reason*; idempotent.

        Messages still queued are dropped, the Close frame is sent, and the
        call waits for the peer's answer (and, on a client, for the server to
        close the TCP connection), at most ``disconnect_timeout`` seconds;
        after that the transport is dropped. If cancelled, the transport is
        dropped at once and the cancellation propagates.
        """
        await self._reader.close(code, reason)

    def close_nowait(self, code: int = 1000, reason: str | None = None) -> None:
        """Start closing with *code* and *reason*, without waiting; idempotent.

        :attr:`closed` is set at once and the Close frame is queued behind
        what the write buffer already holds, even when it is full. A task
        in the connection's nursery then does what :meth:`aclose` does:
        waits for the peer's answer at most ``disconnect_timeout`` seconds,
        then drops the transport. Messages not yet read are dropped, and
        ``get_message()`` raises :class:`ConnectionClosed`. For callers that
        must not wait, such as a broadcast closing a slow consumer.
        """
        self._reader.close_nowait(code, reason)


def start_connection(connection: WebSocketConnection, nursery: trio.Nursery) -> None:
    """Start *connection*'s reader in *nursery*, which also runs its writer when needed.

    For the modules that make connections (client, server); not public API.
    Neither task raises (except Cancelled), so the nursery is safe.
    Keepalive needs no task of its own: see :mod:`trio_ws.keepalive`.
    """
    connection._reader.start(nursery)
    if connection._keepalive is not None:
        connection._keepalive.start()


def connection_logger(connection: WebSocketConnection) -> ConnectionLogger:
    """The logger whose records carry *connection*'s identity (``ws_id``,
    remote address, path): for the server, to log a handler's failure with
    it; not public API."""
    return connection._log


async def close_connection(connection: WebSocketConnection, code: int) -> bool:
    """Close *connection* as ``aclose(code)`` does; return whether the closing
    handshake finished within ``disconnect_timeout``.

    For the client's context manager, which raises DisconnectionTimeout
    otherwise; not public API. Cancellation is as for ``aclose()``.
    """
    return await connection._reader.close(code, None)


class _Keepalive(keepalive.KeepaliveState):
    """The keepalive timer's handle on one connection (see :mod:`trio_ws.keepalive`).

    It holds the connection's parts, not the connection: no reference cycle
    (see :mod:`trio_ws.lifecycle`).
    """

    __slots__ = ("_inbox", "_life", "_outbox", "reader")

    def __init__(
        self, options: ConnectionOptions, life: Lifecycle[Any], inbox: Inbox[Any], outbox: Outbox
    ) -> None:
        assert options.ping_interval is not None
        super().__init__(options.ping_interval, options.ping_timeout)
        self._life = life
        self._inbox = inbox
        self._outbox = outbox
        self.reader: Reader | None = None  # set once the reader is made

    def over(self) -> bool:
        return self._life.reader_done or self._life.reason is not None

    def queue_full(self) -> bool:
        return self._inbox.full

    def queue_stalls(self) -> int:
        return self._inbox.stalls

    def send_ping(self, payload: bytes) -> None:
        self._outbox.ping_now(payload)

    def expire(self, why: str) -> None:
        if self.reader is not None:
            self.reader.expire(why)
