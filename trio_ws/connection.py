"""An open WebSocket connection: its reader task, message queue and sends.

One background reader task per connection reads the transport, feeds wsproto
and pushes each complete message into a Trio memory channel of capacity
``message_queue_size``. When the channel is full the reader waits, so it stops
reading the socket and TCP flow control slows the peer down: nothing is
dropped and nothing is buffered without bound.

Senders queue whole frames in a bounded write buffer that one writer task
drains (see :mod:`trio_ws.writer`), so frames never interleave, back-to-back
messages share system calls, and a sender waits only when the buffer is full.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from typing import Any, cast

import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension

from . import keepalive
from .close_codes import (
    ABNORMAL_CLOSURE,
    GOING_AWAY,
    INTERNAL_ERROR,
    MESSAGE_TOO_BIG,
    NORMAL_CODES,
    POLICY_VIOLATION,
    check_sendable,
)
from .core.deflate import PerMessageDeflate
from .core.fragments import (
    NEW_DATA,
    START,
    FragmentedMessage,
    fragment_kind,
    new_data_violation,
)
from .core.frames import (
    COMPRESSED,
    CONTINUATION,
    OPCODE_BINARY,
    OPCODE_TEXT,
    SIMPLE,
    SIMPLE_OR_COMPRESSED,
    control_payload,
    decode_message,
    encode_message,
    frame_extent,
    masking_key,
    payload_copy,
    simple_opcode,
)
from .core.size_limit import MessageSizeLimit
from .exceptions import ConnectionClosed, MessageTypeError
from .handshake import Headers
from .logs import ConnectionLogger
from .options import (
    CANCELLED_CLOSE_GRACE,
    DEFAULT,
    DEFERRED_MESSAGES,
    FRAMES_PER_YIELD,
    READS_PER_YIELD,
    WRITE_BUFFER_SIZE,
    WRITE_NOW_AFTER_COMPRESSING,
    ConnectionOptions,
    _Default,
)
from .outgoing import PreparedMessage
from .streaming import MessageStream
from .values import CloseReason, Endpoint, socket_endpoints
from .writer import FrameWriter, plain_socket

logger = logging.getLogger("trio_ws.connection")

Message = str | bytes

#: Seconds the application has, after the peer violated the protocol, to
#: read (and answer) the messages that arrived before the violation.
VIOLATION_GRACE = 1.0


class _Violation:
    """Queued after the last valid message when the peer broke the protocol."""

    def __init__(self, code: int, reason: str | None) -> None:
        self.code = code
        self.reason = reason
        self.handled = trio.Event()


#: Compressed bytes decoded at a time while a message stream is open, which
#: bounds one chunk to about 1 MiB however well the data compresses.
STREAM_INFLATE_SLICE = 1024


class WebSocketConnection(trio.abc.AsyncResource):
    """A WebSocket connection after a successful opening handshake.

    Create one with the client functions or accept one on a server; the
    constructor is not public API. Messages arrive whole: ``get_message()``
    returns a complete ``str`` or ``bytes`` message of at most
    ``max_message_size`` bytes.
    """

    # No per-instance __dict__: with this many attributes it would cost more
    # than a kilobyte per connection. __weakref__: keepalive holds them weakly.
    __slots__ = (
        "__weakref__",
        "_backlog",
        "_close_callbacks",
        "_close_reason",
        "_deferred",
        "_deferred_size",
        "_deflate",
        "_early_data",
        "_failed",
        "_handshake_headers",
        "_is_client",
        "_keepalive",
        "_latency",
        "_local",
        "_log",
        "_message_lock",
        "_nursery",
        "_options",
        "_parts",
        "_path",
        "_pings",
        "_queue_full",
        "_queue_in",
        "_queue_out",
        "_queue_stalls",
        "_reader_done",
        "_reads_unyielded",
        "_remote",
        "_size_limit",
        "_skipped",
        "_socket",
        "_stream",
        "_streamed",
        "_subprotocol",
        "_writer",
        "_ws",
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
        self._stream = stream
        self._options = options
        self._size_limit = size_limit or MessageSizeLimit(options.max_message_size)
        self._deflate = deflate if deflate is not None and deflate.enabled() else None
        # The limit goes last, so that it counts payload after decompression.
        extensions: list[Extension] = [self._deflate] if self._deflate else []
        self._ws = Connection(
            ConnectionType.CLIENT if is_client else ConnectionType.SERVER,
            [*extensions, self._size_limit],
        )
        # Frames that came in the same read as the handshake: the reader
        # splits them into frames like any other bytes.
        self._early_data: bytes | bytearray = trailing_data
        self._socket = plain_socket(stream)  # read directly when there is one
        self._reads_unyielded = 0
        self._is_client = is_client
        self._path = path
        self._subprotocol = subprotocol
        self._handshake_headers = handshake_headers
        # A server's request has asked the socket already: share its answer.
        self._local, self._remote = endpoints or socket_endpoints(stream)
        self._log = ConnectionLogger(logger, self._remote, path)
        self._log.debug("open (%s)", "client" if is_client else "server")

        # trio.Lock is fair: messages are queued in the order they were sent.
        # Only messages take it, so pongs and Close may go between fragments.
        self._message_lock = trio.Lock()
        self._writer = FrameWriter(stream, self._write_failed)
        self._streamed: MessageStream | None = None  # receives the current message
        self._parts: list[Any] = []  # fragments of the message being assembled
        self._queue_in, self._queue_out = trio.open_memory_channel[Message | _Violation](
            options.message_queue_size
        )
        self._pings: OrderedDict[bytes, trio.Event] = OrderedDict()
        self._close_reason: CloseReason | None = None
        self._reader_done = trio.Event()
        self._failed = False  # we failed the connection for a protocol violation
        self._latency: float | None = None  # set by keepalive
        self._keepalive = (
            None
            if options.ping_interval is None
            else keepalive.KeepaliveState(options.ping_interval, options.ping_timeout)
        )
        self._nursery: trio.Nursery | None = None  # where the reader runs
        # The reader waits on a full queue: pongs cannot be read meanwhile.
        self._queue_full = False
        self._queue_stalls = 0
        # Roughly how many messages wait in the queue: a hint for the writer.
        self._backlog = 0
        # try_send_message: messages waiting for a stream to finish, their
        # payload bytes, and the messages refused for want of room.
        self._deferred: list[tuple[PreparedMessage, bool]] | None = None  # made when needed
        self._deferred_size = 0
        self._skipped = 0
        self._close_callbacks: dict[Callable[[WebSocketConnection], object], None] | None = None

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
        return self._close_reason

    @property
    def skipped_messages(self) -> int:
        """How many messages :meth:`try_send_message` refused for want of room.

        A broadcast with the ``SKIP`` slow-consumer policy leaves gaps in
        what this connection received; this counts them, so that an
        application can tell the client (or log) that it missed some.
        """
        return self._skipped

    def add_close_callback(self, callback: Callable[[WebSocketConnection], object]) -> None:
        """Call ``callback(connection)`` once, as soon as the connection closes.

        "Closes" means what :attr:`closed` means: the closing handshake has
        started, or the transport was lost. A connection already closed
        calls *callback* at once. Callbacks run synchronously in whichever
        task noticed the close, so they must be quick and must not block;
        an exception from one is logged and the others still run. Rooms use
        this to forget a connection without polling.
        """
        if self._close_reason is not None:
            self._call_close_callback(callback)
        else:
            if self._close_callbacks is None:
                self._close_callbacks = {}
            self._close_callbacks[callback] = None

    def remove_close_callback(self, callback: Callable[[WebSocketConnection], object]) -> None:
        """Forget *callback*, registered by :meth:`add_close_callback`, if it was."""
        if self._close_callbacks is not None:
            self._close_callbacks.pop(callback, None)

    def _call_close_callback(self, callback: Callable[[WebSocketConnection], object]) -> None:
        try:
            callback(self)
        except Exception:
            self._log.exception("close callback %r failed", callback)

    @property
    def latency(self) -> float | None:
        """Round-trip time, in seconds, of the last keepalive ping, or ``None``."""
        return self._latency

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
        try:
            # No scheduler pass when a message is waiting: the queue is
            # bounded, so a consumer still parks within a few messages.
            item = None
            if self._backlog > 0:  # only a hint, so the slow way stays behind it
                await trio.lowlevel.checkpoint_if_cancelled()
                with contextlib.suppress(trio.WouldBlock):
                    item = self._queue_out.receive_nowait()
            if item is None:
                item = await self._queue_out.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ConnectionClosed(self._reason()) from None
        self._backlog -= 1
        if isinstance(item, _Violation):
            self._fail(item)
            raise ConnectionClosed(self._reason())
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
        self, max_size: int | _Default | None = DEFAULT
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
        if self._streamed is not None:
            raise RuntimeError("another task is already receiving a message stream")
        try:
            whole = self._queue_out.receive_nowait()
            self._backlog -= 1
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ConnectionClosed(self._reason()) from None
        except trio.WouldBlock:
            if self._reader_done.is_set():  # nothing more will arrive
                raise ConnectionClosed(self._reason()) from None
            # Part of the next message may be assembled already: it goes first.
            stream = MessageStream(self._reason, _join(self._parts) if self._parts else None)
            self._parts = []
            limit = self._options.max_message_size if isinstance(max_size, _Default) else max_size
            self._size_limit.max_size = sys.maxsize if limit is None else limit
            self._streamed = stream
        else:
            if isinstance(whole, _Violation):
                self._fail(whole)
                raise ConnectionClosed(self._reason())
            stream = MessageStream(self._reason, whole, whole=True)
        try:
            yield stream
        finally:
            # Nothing of the message taken (it stays for get_message), or all
            # of it: either way this stream is over, whatever the reader's pace.
            if self._streamed is stream and (not stream.started or stream.finished):
                self._end_stream()
            stream.abandon()

    def _end_stream(self) -> None:
        self._streamed = None
        self._size_limit.max_size = self._options.max_message_size

    def __aiter__(self) -> WebSocketConnection:
        return self

    async def __anext__(self) -> Message:
        """Iterate over messages; a normal close (1000, 1001, or a Close
        frame without a code, 1005) ends the loop."""
        try:
            return await self.get_message()
        except ConnectionClosed as exc:
            if exc.reason.code in NORMAL_CODES:
                raise StopAsyncIteration from None
            raise

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
        if isinstance(message, str):
            opcode, payload = OPCODE_TEXT, message.encode()
        elif isinstance(message, (bytes, bytearray, memoryview)):
            opcode, payload = OPCODE_BINARY, bytes(message)
        else:
            raise TypeError(f"message must be str or bytes, not {type(message).__name__}")
        deflate = self._deflate if compress else None
        if deflate is not None and not deflate.should_compress(payload, opcode == OPCODE_TEXT):
            deflate = None  # too short to gain, or binary data that does not compress
        threaded = deflate is not None and len(payload) >= deflate.options.thread_threshold
        # If nobody holds the lock and nothing below will wait, the frame is
        # queued before any other sender runs: the lock would order nothing,
        # and taking it costs about a tenth of the small-message rate.
        waits = self._message_lock.locked() or self._writer.full or threaded
        async with _fast(self._message_lock) if waits else _UNCONTENDED:
            await self._wait_for_room()
            if deflate is not None:
                binary = opcode == OPCODE_BINARY
                compress_fn = deflate.compress_binary if binary else deflate.compress_message
                if threaded:
                    # Not cancellable: the compressor moves on with this message,
                    # so it must be sent.
                    payload = await trio.to_thread.run_sync(compress_fn, payload)
                    try:
                        self._check_open()
                    except ConnectionClosed:
                        # Closed because our scope was cancelled meanwhile (the
                        # reader went with it): that is the error to raise.
                        await trio.lowlevel.checkpoint_if_cancelled()
                        raise
                else:
                    payload = compress_fn(payload)
            await self._queue_message(opcode, payload, deflate is not None, len(message))

    async def _queue_message(
        self, opcode: int, payload: bytes, compressed: bool, size: int
    ) -> None:
        """Frame a whole message and hand it to the writer (see FrameWriter.send)."""
        self._log.message(">", opcode == OPCODE_TEXT, size)
        frame = encode_message(opcode, payload, rsv1=compressed, mask=self._is_client)
        if compressed and size >= WRITE_NOW_AFTER_COMPRESSING:
            # Compressing took far longer than a write: holding the frame for
            # company would leave the peer idle while we compress the next one.
            self._writer.put(*frame)
            return
        # A reply to a message still queued (or waiting for room in the
        # queue: the reader is blocked on it) is likely to follow this one.
        await self._writer.send(*frame, more_coming=self._backlog > 0 or self._queue_full)

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
        prepared = message if isinstance(message, PreparedMessage) else PreparedMessage(message)
        self._check_open()
        if self._writer.full:
            self._skipped += 1
            return False
        if self._message_lock.locked() or self._deferred:
            # Another message is going out piece by piece: wait behind it.
            if self._deferred and (
                len(self._deferred) >= DEFERRED_MESSAGES
                or self._deferred_size + len(prepared) > WRITE_BUFFER_SIZE
            ):
                self._skipped += 1
                return False
            if not self._deferred:
                self._deferred = []
                self._spawn(self._send_deferred)
            self._deferred.append((prepared, compress))
            self._deferred_size += len(prepared)
            return True
        self._queue_prepared(prepared, compress)
        return True

    def _queue_prepared(self, prepared: PreparedMessage, compress: bool) -> None:
        self._log.message(">", prepared.is_text, len(prepared))
        deflate = self._deflate if compress else None
        if deflate is not None and not deflate.should_compress(prepared.payload, prepared.is_text):
            deflate = None  # the sending policy of send_message applies here too
        self._writer.put_batched(prepared.frame(deflate, mask=self._is_client))

    async def _send_deferred(self) -> None:
        """Queue the messages try_send_message held back, once the lock is free."""
        async with _fast(self._message_lock):
            deferred, self._deferred, self._deferred_size = self._deferred or [], None, 0
            with contextlib.suppress(ConnectionClosed):
                self._check_open()
                for prepared, compress in deferred:
                    self._queue_prepared(prepared, compress)

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
        async with _fast(self._message_lock):
            is_text = text
            started = False  # frames are out: only a final frame or a close ends them
            deflate: PerMessageDeflate | None = None  # set by the first chunk
            sent = 0  # bytes of payload, before compression

            async def send_frame(payload: bytes, fin: bool) -> None:
                if deflate is not None:
                    payload = deflate.compress_fragment(payload, fin)
                opcode = CONTINUATION if started else OPCODE_TEXT if is_text else OPCODE_BINARY
                rsv1 = deflate is not None and not started
                frame = encode_message(opcode, payload, rsv1=rsv1, mask=self._is_client, fin=fin)
                await self._wait_for_room()
                self._writer.put(*frame)

            async def send_chunk(chunk: object) -> None:
                nonlocal is_text, started, deflate, sent
                if is_text is None:
                    is_text = isinstance(chunk, str)
                if not isinstance(chunk, str if is_text else (bytes, bytearray, memoryview)):
                    kind = "str" if is_text else "bytes"
                    raise TypeError(f"chunks of a message must all be {kind}")
                data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
                if not started and compress and self._deflate is not None:
                    # The first chunk decides for the whole message.
                    if self._deflate.should_compress(data, is_text):
                        deflate = self._deflate
                await send_frame(data, False)
                started = True
                sent += len(data)

            try:
                if isinstance(chunks, AsyncIterable):
                    async for chunk in chunks:
                        await send_chunk(chunk)
                else:
                    for chunk in chunks:
                        await send_chunk(chunk)
                # An empty final frame: each chunk left as soon as it came.
                if is_text is None:
                    is_text = False  # no chunk at all: an empty binary message
                await send_frame(b"", True)
                self._log.message(">", is_text, sent)
            except ConnectionClosed:
                raise
            except Exception:
                if started:
                    self._send_if(
                        ConnectionState.OPEN,
                        CloseConnection(INTERNAL_ERROR, "message stream failed"),
                        reason=True,
                    )
                raise
            except BaseException:
                if started:
                    await self._abort("message stream interrupted")
                raise

    async def ping(self, payload: bytes | None = None) -> None:
        """Send a ping and wait for the matching pong.

        *payload* (``bytes``, at most 125 of them: ``TypeError`` or
        ``ValueError`` otherwise, before anything is sent) must differ from
        every ping still in flight; by default a random one is used. A pong
        also acknowledges every ping sent before the one it answers. Raises
        :class:`ConnectionClosed` as soon as the connection closes.
        Cancelling the call stops the wait; the pong, when it comes, is ignored.
        """
        if payload is not None:
            payload = control_payload(payload)
        if payload is None:
            payload = os.urandom(4)
            while payload in self._pings:
                payload = os.urandom(4)
        elif payload in self._pings:
            raise ValueError(f"a ping with payload {payload!r} is already in flight")
        waiter = trio.Event()
        self._pings[payload] = waiter
        try:
            await self._send(Ping(payload=payload))
            await waiter.wait()
        finally:
            unanswered = self._pings.pop(payload, None) is not None
        if unanswered:
            raise ConnectionClosed(self._reason())

    async def pong(self, payload: bytes | None = None) -> None:
        """Send an unsolicited pong, for example as a unidirectional heartbeat.

        *payload* is checked as for :meth:`ping`.
        """
        await self._send(Pong(payload=b"" if payload is None else control_payload(payload)))

    def _check_open(self) -> None:
        state, failed = self._ws.state, self._writer.failed
        if state is not ConnectionState.OPEN or self._close_reason is not None or failed:
            raise ConnectionClosed(self._reason())

    async def _wait_for_room(self) -> None:
        """Wait for room in the write buffer; raise if the connection is closed.

        A sender that is itself cancelled gets ``Cancelled``, never the
        ConnectionClosed (1001) that the same cancellation may already have
        caused by reaching the reader first: its cancel scope catches the one
        and not the other.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_open()
        if self._writer.full:
            await self._writer.wait_for_room()
            await trio.lowlevel.checkpoint_if_cancelled()
            self._check_open()

    async def _send(self, event: Event) -> None:
        """Queue a frame through wsproto (fragments, pings, pongs)."""
        await self._wait_for_room()
        self._log.frame(">", event)
        self._writer.put(self._ws.send(event))

    def _write_failed(self, why: str) -> None:
        self._set_reason(ABNORMAL_CLOSURE, why)
        self._log.debug("writing failed: %s", why)

    def _answer_ping(self, ping: Ping) -> None:
        """Answer *ping* without ever making the reader wait.

        If the write buffer is full (perhaps because the peer is not
        reading), the reader must go on reading, or two peers that both send
        and ping could wait on each other forever; the pong then replaces any
        earlier one still waiting for room, as RFC 6455 allows.
        """
        if self._ws.state is ConnectionState.OPEN:
            pong = ping.response()
            self._log.frame(">", pong)
            self._writer.queue_late(self._ws.send(pong))

    async def _abort(self, why: str) -> None:
        """Drop the transport: the byte stream can no longer be trusted (1006)."""
        self._set_reason(ABNORMAL_CLOSURE, why)
        await trio.aclose_forcefully(self._stream)

    def _send_if(self, state: ConnectionState, event: Event, reason: bool = False) -> None:
        """Queue a frame for the protocol (Close) if still in *state*.

        With *reason*, a Close frame also sets :attr:`closed`.
        """
        if self._ws.state is state and not self._writer.failed:
            if reason and isinstance(event, CloseConnection):
                self._set_reason(event.code, event.reason)
            self._log.frame(">", event)
            self._writer.put(self._ws.send(event))

    # ------------------------------------------------------------ closing

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection with *code* and *reason*; idempotent.

        Messages still queued are dropped, the Close frame is sent, and the
        call waits for the peer's answer (and, on a client, for the server to
        close the TCP connection), at most ``disconnect_timeout`` seconds;
        after that the transport is dropped. If cancelled, the transport is
        dropped at once and the cancellation propagates.
        """
        await self._close(code, reason)

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
        check_sendable(code)
        if self._close_reason is None:
            self._set_reason(code, reason)
            self._send_if(ConnectionState.OPEN, CloseConnection(code, reason))
            self._spawn(self._close, code, reason)

    async def _close(self, code: int, reason: str | None) -> bool:
        """Close as :meth:`aclose` does; return whether it finished in time."""
        check_sendable(code, reason)
        self._queue_out.close()  # drop queued messages; wake blocked readers
        try:
            with trio.move_on_after(self._options.disconnect_timeout):
                if self._close_reason is None:
                    self._set_reason(code, reason)
                    self._send_if(ConnectionState.OPEN, CloseConnection(code, reason))
                await self._reader_done.wait()
                return True
            self._log.debug("closing handshake timed out; dropping transport")
            await trio.aclose_forcefully(self._stream)
            # A connection we failed has no handshake to finish: not a timeout.
            return self._failed
        except ConnectionClosed:
            return True  # the transport broke while sending Close: nothing to wait for
        except BaseException:
            # Cancelled (the caller's scope, or a server going away): the
            # Close frame still goes out if the transport takes it at once.
            with trio.CancelScope(shield=True), trio.move_on_after(CANCELLED_CLOSE_GRACE):
                await self._writer.finish()
            await trio.aclose_forcefully(self._stream)
            raise

    def _set_reason(self, code: int, reason: str | None) -> None:
        if self._close_reason is None:
            self._close_reason = CloseReason(code, reason)
            callbacks, self._close_callbacks = self._close_callbacks, None
            for callback in callbacks or ():
                self._call_close_callback(callback)

    def _reason(self) -> CloseReason:
        return self._close_reason or CloseReason(ABNORMAL_CLOSURE, None)

    # ------------------------------------------------------------ reader task

    def _start(self, nursery: trio.Nursery) -> None:
        """Start the reader in *nursery*, which also runs the writer when needed.

        Neither raises (except Cancelled), so the nursery is safe. Keepalive
        needs no task of its own: see :mod:`trio_ws.keepalive`.
        """
        self._nursery = nursery
        nursery.start_soon(self._reader_task)
        self._writer.start(nursery)  # it starts a task whenever there is work
        if self._keepalive is not None:
            when = trio.current_time() + self._keepalive.interval
            keepalive.timer().schedule(self, when)

    def _spawn(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run *fn* in the connection's nursery, unless the connection is over."""
        if self._nursery is not None:
            with contextlib.suppress(RuntimeError):  # the nursery has closed
                self._nursery.start_soon(fn, *args)

    def _send_keepalive_ping(self, payload: bytes) -> None:
        if self._ws.state is ConnectionState.OPEN and not self._writer.failed:
            ping = Ping(payload=payload)
            self._log.frame(">", ping)
            self._writer.put(self._ws.send(ping))

    async def _expire(self, why: str) -> None:
        """Close a connection whose peer stopped answering (1011), not waiting on it."""
        self._log.debug("closing connection: %s", why)
        self._set_reason(INTERNAL_ERROR, why)
        self._send_if(ConnectionState.OPEN, CloseConnection(INTERNAL_ERROR, why))
        with trio.move_on_after(self._options.disconnect_timeout):
            await self._writer.drain()
        await trio.aclose_forcefully(self._stream)

    # Ctrl-C reaches the main task at a checkpoint, never mid-frame here.
    @trio.lowlevel.enable_ki_protection
    async def _reader_task(self) -> None:
        """Read until the connection closes; never raises except Cancelled."""
        try:
            await self._read_frames()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionClosed):
            pass
        except trio.Cancelled:
            # The nursery running this connection is being torn down (its
            # server or client is going away): say so, whichever of its
            # tasks saw the cancellation first, before the transport goes.
            self._send_if(ConnectionState.OPEN, CloseConnection(GOING_AWAY, None), reason=True)
            raise
        except Exception:  # a bug here must not crash the user's nursery
            self._log.exception("unexpected error in WebSocket reader task")
        finally:
            self._set_reason(ABNORMAL_CLOSURE, None)
            self._queue_in.close()
            if self._streamed is not None:
                self._streamed.end()
            for waiter in self._pings.values():
                waiter.set()
            try:
                with (
                    trio.CancelScope(shield=True),
                    trio.move_on_after(self._options.disconnect_timeout),
                ):
                    await self._writer.finish()  # our Close, or the echo of the peer's
                    self._writer.stop()
                    await self._stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # A cancelled aclose() dropped the transport while this
                # closed it gracefully (TLS sends close_notify): closed anyway.
                pass
            finally:
                self._reader_done.set()
            self._log.debug("closed: %s", self._reason())

    async def _read_frames(self) -> None:
        """Split what arrives into frames: simple ones are decoded here, the rest by wsproto.

        Decoded here: whole text and binary messages, compressed ones that
        arrived in one read (inflated by the deflate extension's own
        decompressor), and uncompressed fragmented messages, piece by piece
        (:mod:`trio_ws.core.fragments`). wsproto is handed whole frames only (or,
        for a frame bigger than one read, all of it in pieces), so that it
        always resumes at a frame boundary after the frames decoded here.
        See :mod:`trio_ws.core.frames`.
        """
        data: bytes | bytearray = self._early_data  # came with the handshake
        self._early_data = b""
        kinds = SIMPLE_OR_COMPRESSED if self._deflate is not None else SIMPLE
        pos = 0
        frames = 0
        left = 0  # bytes of the current frame still to give wsproto
        # A simple binary frame longer than one read is unmasked and
        # gathered here, piece by piece.
        pieces: list[bytes | bytearray] = []
        piece_left = gathered = 0  # bytes of its payload still to come, and so far
        key: bytes | None = None
        # An uncompressed fragmented message decoded here (trio_ws.core.fragments),
        # and the payload of its current frame still to come.
        fragmented: FragmentedMessage | None = None
        frag_left = frag_offset = 0
        frag_fin = False
        while True:
            if pos == len(data):
                data = b""  # an idle connection need not keep its last read
                data = await self._receive()
                if not data:
                    return  # transport lost without a closing handshake: 1006
                pos = 0
            if piece_left:
                step = min(piece_left, len(data) - pos)
                pieces.append(payload_copy(memoryview(data)[pos : pos + step], key, gathered))
                pos += step
                gathered += step
                piece_left -= step
                if not piece_left:
                    whole, pieces = b"".join(pieces), []
                    self._log.message("<", False, len(whole))
                    await self._deliver_whole(whole)
                continue
            if frag_left:
                assert fragmented is not None
                step = min(frag_left, len(data) - pos)
                piece = payload_copy(memoryview(data)[pos : pos + step], key, frag_offset)
                pos += step
                frag_offset += step
                frag_left -= step
                done = frag_fin and not frag_left
                if not await self._fragment_piece(fragmented, piece, done):
                    return  # a violation: the connection is failed
                if done:
                    fragmented = None
                continue
            if left:
                step = min(left, len(data) - pos, self._feed_size())
                # wsproto takes a bytearray too; a whole-bytes slice is not a copy.
                self._ws.receive_data(cast(bytes, data[pos : pos + step]))
                pos += step
                left -= step
                if await self._handle_events(step):
                    return
                continue
            extent = frame_extent(data, pos)
            if extent is None:  # the header is split across reads
                more = await self._receive()
                if not more:
                    return
                data, pos = data[pos:] + more, 0
                continue
            header, size = extent
            end = pos + size
            masked = not self._is_client
            if fragmented is not None or (data[pos] & 0x8F < 0x81 and self._own_fragments()):
                # Possibly part of a fragmented message (no FIN, or a continuation).
                kind = fragment_kind(
                    data, pos, header, size, masked=masked, in_progress=fragmented is not None
                )
                if kind == NEW_DATA:
                    await self._closing_frame(CloseConnection(*new_data_violation()))
                    return
                if kind is not None:
                    if kind == START:
                        fragmented = FragmentedMessage(data[pos] & 0x0F)
                    assert fragmented is not None
                    violation = fragmented.frame(size - header, self._size_limit.max_size)
                    if violation is not None:
                        await self._closing_frame(CloseConnection(*violation))
                        return
                    key = masking_key(data, pos, header, masked)
                    frag_fin = bool(data[pos] & 0x80)
                    frag_left, frag_offset = size - header, 0
                    pos += header
                    frames += 1
                    if frames % FRAMES_PER_YIELD == 0:
                        await trio.lowlevel.checkpoint()  # fairness to other connections
                    if not frag_left and frag_fin:  # an empty last frame
                        if not await self._fragment_piece(fragmented, b"", True):
                            return
                        fragmented = None
                    continue
            opcode = None
            if fragmented is None and self._fast_path_open():
                limit = self._size_limit.max_size
                opcode = simple_opcode(
                    data, pos, header, end, masked=masked, limit=limit, kinds=kinds
                )
            message = None
            if opcode is not None and end <= len(data):
                key = masking_key(data, pos, header, masked)
                if opcode & COMPRESSED:
                    message = await self._inflate(data, pos + header, end, opcode, key)
                    if message is None:
                        return  # a violation: the connection is failed
                else:
                    message = decode_message(data, pos + header, end, opcode, key)
            elif opcode == OPCODE_BINARY:
                # Text is left to wsproto, which rejects bad UTF-8 as soon as
                # it arrives; a binary payload has nothing to check.
                key = masking_key(data, pos, header, masked)
                pos += header
                piece_left, gathered = size - header, 0
                continue
            if message is None:
                left = size
                continue
            pos += size
            frames += 1
            if frames % FRAMES_PER_YIELD == 0:
                await trio.lowlevel.checkpoint()  # fairness to other connections
            self._log.message("<", isinstance(message, str), len(message))
            await self._deliver(message)

    def _own_fragments(self) -> bool:
        """Whether fragmented messages may be decoded here: wsproto is not
        in the middle of one, and the connection is open."""
        return not self._size_limit.in_message and self._ws.state is ConnectionState.OPEN

    async def _fragment_piece(
        self, message: FragmentedMessage, piece: bytes | bytearray, done: bool
    ) -> bool:
        """Hand a piece of a fragmented message to the open message stream,
        or to the parts of the message being assembled (*done*: its last).

        False: the piece broke a rule (bad UTF-8) and the connection has
        been failed. Waits while the stream's consumer has not taken the
        previous chunk: that is the backpressure.
        """
        chunk = message.payload(piece, done)
        if isinstance(chunk, tuple):
            await self._closing_frame(CloseConnection(*chunk))
            return False
        if done:
            self._log.message("<", message.text, message.size)
        await self._take_chunk(chunk, done)
        return True

    async def _take_chunk(self, chunk: Any, done: bool) -> None:
        """Hand a piece of the incoming message to the open message stream,
        or to the parts of the message being assembled (*done*: its last),
        whichever branch decoded it."""
        stream = self._streamed
        if stream is not None:
            if chunk or done:
                await stream.feed(chunk, done)
            # The consumer may have ended it already, and opened another.
            if done and self._streamed is stream:
                self._end_stream()
        else:
            self._parts.append(chunk)
            if done:
                whole, self._parts = _join(self._parts), []
                await self._deliver(whole)

    async def _inflate(
        self, data: bytes | bytearray, start: int, end: int, opcode: int, key: bytes | None
    ) -> Message | None:
        """Inflate the whole compressed message in *data[start:end]* (the fast branch).

        Big jobs (as judged for :meth:`_next_event`) run in a worker thread;
        cancelling the reader then waits for that thread, which is bounded
        by the size limit. ``None``: the message broke a rule and the
        connection has been failed with the code the deflate extension gave.
        """
        deflate = self._deflate
        assert deflate is not None  # only frames with RSV1 negotiated get here
        view = memoryview(data)[start:end]
        payload = view if key is None else payload_copy(view, key)
        text = opcode & 0x0F == OPCODE_TEXT
        limit = self._size_limit.max_size
        work = min(len(payload) * deflate.inflate_ratio, limit)
        if work >= deflate.options.thread_threshold:
            result = await trio.to_thread.run_sync(deflate.inflate_message, payload, text, limit)
        else:
            result = deflate.inflate_message(payload, text, limit)
        if isinstance(result, tuple):
            await self._closing_frame(CloseConnection(*result))
            return None
        return result

    async def _deliver_whole(self, message: bytes) -> None:
        """Deliver a message gathered over several reads; a message stream
        opened meanwhile gets it, as it would have got the first piece."""
        stream = self._streamed
        if stream is None:
            await self._deliver(message)
            return
        await stream.feed(message, True)
        if self._streamed is stream:
            self._end_stream()

    async def _receive(self) -> bytes | bytearray:
        """The next bytes from the transport; empty at its end.

        A plain socket is read directly, waiting for it to be readable only
        when it is empty: trio's ``receive_some`` also yields a scheduler
        pass after each read, which on the path from the peer's frame to
        ``get_message()`` is a pass too many. A run of reads that never had
        to wait still yields every READS_PER_YIELD reads.
        """
        size = self._options.receive_buffer_size
        sock = self._socket
        if sock is None:
            return await self._stream.receive_some(size)
        if self._reads_unyielded >= READS_PER_YIELD:
            self._reads_unyielded = 0
            await trio.lowlevel.checkpoint()
        while True:
            try:
                # A closed socket answers -1 (EBADF below), never a stale number.
                data = os.read(sock.fileno(), size)
            except BlockingIOError:
                data = None  # wait below: inside the except, the exception and
                # its traceback would stay alive as long as the connection idles
            except OSError as exc:  # reset by the peer, or closed under us
                raise trio.BrokenResourceError(str(exc)) from exc
            if data is None:
                self._reads_unyielded = 0
                await trio.lowlevel.wait_readable(sock)
                continue
            self._reads_unyielded += 1
            return data

    def _fast_path_open(self) -> bool:
        """Whether a simple frame may bypass wsproto: no message is in progress."""
        return not self._parts and self._streamed is None and self._ws.state is ConnectionState.OPEN

    async def _handle_events(self, fed: int) -> bool:
        """Act on wsproto's events for the *fed* bytes; True once the connection closed."""
        events = self._ws.events()
        handled = 0
        while (event := await self._next_event(events, fed)) is not None:
            self._log.frame("<", event)
            handled += 1
            if handled % FRAMES_PER_YIELD == 0:
                await trio.lowlevel.checkpoint()  # fairness to other connections
            if isinstance(event, (TextMessage, BytesMessage)):
                data = _chunk(event) if self._streamed else event.data
                await self._take_chunk(data, event.message_finished)
            elif isinstance(event, Ping):
                self._answer_ping(event)
            elif isinstance(event, Pong):
                self._acknowledge(event.payload)
            elif isinstance(event, CloseConnection):
                await self._closing_frame(event)
                return True
        return False

    def _feed_size(self) -> int:
        """How many received bytes wsproto may decode before we look again.

        Inflating is the one step whose output can dwarf its input (1032:1
        for deflate). A whole message is bounded by its size budget anyway,
        but a message stream promises chunks, not messages, so while one is
        open compressed input goes in small slices.
        """
        if self._deflate is not None and self._streamed is not None:
            return STREAM_INFLATE_SLICE
        return self._options.receive_buffer_size

    async def _next_event(self, events: Iterator[Event], fed: int) -> Event | None:
        """The next event; big inflating jobs run in a worker thread.

        Inflating is bounded by the size limit but may still take a while
        for a large message; zlib releases the GIL, so a worker thread keeps
        the other connections served meanwhile. Only the reader touches the
        inbound half of wsproto's state, so this is safe next to sends.
        Reads that are not compressed cost one thread hop at most, when a
        previous message compressed well.
        """
        deflate = self._deflate
        if deflate is not None and fed:
            # Guess the inflating work from the last message's ratio; the
            # size budget caps it.
            work = min(fed * deflate.inflate_ratio, self._size_limit.remaining())
            if work >= deflate.options.thread_threshold:
                return await trio.to_thread.run_sync(next, events, None)
        return next(events, None)

    async def _deliver(self, message: Message | _Violation) -> None:
        try:
            try:
                # No checkpoint when there is room: the reader goes on with
                # the rest of the read instead of a run-loop pass per message.
                self._queue_in.send_nowait(message)
            except trio.WouldBlock:
                self._queue_full = True
                self._queue_stalls += 1
                try:
                    await self._queue_in.send(message)
                finally:
                    self._queue_full = False
            self._backlog += 1
        except trio.BrokenResourceError:
            pass  # the application closed: drop what it will never read

    def _acknowledge(self, payload: bytes) -> None:
        if self._keepalive is not None:
            keepalive.timer().pong(self, payload)
        if payload not in self._pings:
            return  # an unsolicited pong
        while self._pings:
            key, waiter = self._pings.popitem(last=False)
            waiter.set()
            if key == payload:
                break

    async def _closing_frame(self, event: CloseConnection) -> None:
        state = self._ws.state
        if state is ConnectionState.REMOTE_CLOSING:
            # The peer started the closing handshake: echo its code.
            self._set_reason(event.code, event.reason)
            self._send_if(state, event.response())
        elif state in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING):
            # wsproto reports a protocol violation by the peer this way,
            # without a state change: fail the connection with its code.
            reason = event.reason
            if event.code in (MESSAGE_TOO_BIG, POLICY_VIOLATION) and self._size_limit.violation:
                reason = self._size_limit.violation
            violation = _Violation(event.code, reason)
            self._log.debug("peer violated the protocol: %s %s", event.code, reason)
            if state is ConnectionState.OPEN and self._streamed is None:
                # The messages that came before the violation were valid:
                # the application gets them, and may answer them, before the
                # Close goes out (Autobahn's "strict" behaviour). It has
                # VIOLATION_GRACE seconds to get that far.
                with trio.move_on_after(VIOLATION_GRACE):
                    await self._deliver(violation)
                    await violation.handled.wait()
            self._fail(violation)
            await self._linger()
            return
        if self._is_client:
            # RFC 6455 7.1.1: the server closes the TCP connection first.
            await self._linger()

    def _fail(self, violation: _Violation) -> None:
        """Fail the connection for *violation*: send its Close frame once."""
        if not violation.handled.is_set():
            violation.handled.set()
            self._failed = True
            self._set_reason(violation.code, violation.reason)
            self._send_if(ConnectionState.OPEN, CloseConnection(violation.code, violation.reason))

    async def _linger(self) -> None:
        """Let the peer read our Close frame before the TCP connection goes.

        Closing a socket with unread input makes the kernel send RST, which
        can destroy our Close frame in flight. So half-close where the
        transport allows it and read (discarding) until the peer closes.
        """
        with trio.move_on_after(self._options.disconnect_timeout):
            await self._writer.drain()
            if isinstance(self._stream, trio.abc.HalfCloseableStream) and not self._writer.failed:
                await self._stream.send_eof()
            while await self._stream.receive_some(self._options.receive_buffer_size):
                pass


class _fast:
    """``async with _fast(lock)``: hold *lock*, with no run-loop pass if it is free.

    ``async with lock`` always yields to the scheduler; on the send path that
    doubled the passes per message. It stays a cancellation point, and fair:
    a lock that is free has no waiters to overtake.
    """

    __slots__ = ("lock",)

    def __init__(self, lock: trio.Lock) -> None:
        self.lock = lock

    async def __aenter__(self) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self.lock.acquire_nowait()
        except trio.WouldBlock:
            await self.lock.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.lock.release()


class _Uncontended:
    """The lock-free stand-in for :class:`_fast` in ``send_message``."""

    __slots__ = ()

    async def __aenter__(self) -> None:
        pass

    async def __aexit__(self, *exc_info: object) -> None:
        pass


_UNCONTENDED = _Uncontended()


def _join(parts: list[Any]) -> Message:
    """One message from its fragments (all ``str`` or all ``bytes``)."""
    return parts[0] if len(parts) == 1 else parts[0][:0].join(parts)  # type: ignore[no-any-return]


def _chunk(event: TextMessage | BytesMessage) -> Message:
    data = event.data
    return data if isinstance(data, (str, bytes)) else bytes(data)
