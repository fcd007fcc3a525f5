"""The connection's sending side: messages in order, frames into the write buffer.

The protocol core (:mod:`trio_ws.core`) encodes each frame; the writer
(:mod:`trio_ws.socket_io`) writes it. In between, this module decides when a
frame may go: whole messages are queued in the order their senders came (a
fair lock, taken only when something could overtake), a message sent as a
stream of fragments keeps the others waiting until its last frame, and a
sender waits while the write buffer is full, which is the backpressure a
slow peer exerts. :meth:`Outbox.try_send` is the one path that never waits
(broadcasts): what cannot go at once is held back, a little, or refused.

Pings, pongs and Close frames bypass the lock: they may go between the
fragments of a message.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, Iterable
from typing import Any

import trio

from .close_codes import ABNORMAL_CLOSURE, INTERNAL_ERROR
from .core.events import Close, Ping, Pong
from .core.protocol import Frame, Protocol, State
from .exceptions import ConnectionClosed
from .inbox import Inbox
from .lifecycle import UNCONTENDED, Lifecycle, fast_lock
from .logs import ConnectionLogger
from .options import DEFERRED_MESSAGES, WRITE_BUFFER_SIZE, WRITE_NOW_AFTER_COMPRESSING
from .outgoing import PreparedMessage
from .socket_io import FrameWriter


class Outbox:
    """One connection's sending side (see the module's docstring). Slots only."""

    __slots__ = (
        "_core",
        "_deferred",
        "_deferred_size",
        "_inbox",
        "_life",
        "_lock",
        "_log",
        "_mask",
        "_writer",
        "skipped",
    )

    def __init__(
        self,
        core: Protocol,
        writer: FrameWriter,
        life: Lifecycle[Any],
        inbox: Inbox[Any],
        log: ConnectionLogger,
        *,
        mask: bool,
    ) -> None:
        self._core = core
        self._writer = writer
        self._life = life
        self._inbox = inbox  # its backlog hints that a reply will follow
        self._log = log
        self._mask = mask  # a client masks its frames
        # trio.Lock is fair: messages are queued in the order they were sent.
        # Only messages take it, so pongs and Close may go between fragments.
        # Made by the first sender that must wait (see send): most
        # connections never need one, and a lock costs about 330 bytes.
        self._lock: trio.Lock | None = None
        # try_send: messages waiting for a stream to finish, their payload
        # bytes, and the messages refused for want of room.
        self._deferred: list[tuple[PreparedMessage, bool]] | None = None  # made when needed
        self._deferred_size = 0
        self.skipped = 0

    # ------------------------------------------------------ open, and room

    def check_open(self) -> None:
        """Raise :class:`ConnectionClosed` unless messages may still be sent."""
        state, failed = self._core.state, self._writer.failed
        if state is not State.OPEN or self._life.reason is not None or failed:
            raise ConnectionClosed(self._life.final_reason())

    async def wait_for_room(self) -> None:
        """Wait for room in the write buffer; raise if the connection is closed.

        A sender that is itself cancelled gets ``Cancelled``, never the
        ConnectionClosed (1001) that the same cancellation may already have
        caused by reaching the reader first: its cancel scope catches the one
        and not the other.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self.check_open()
        if self._writer.full:
            await self._writer.wait_for_room()
            await trio.lowlevel.checkpoint_if_cancelled()
            self.check_open()

    # ------------------------------------------------------ whole messages

    async def send(self, message: str | bytes, compress: bool) -> None:
        """``send_message``: queue *message*, waiting for the lock and for room."""
        if isinstance(message, str):
            text, payload = True, message.encode()
        elif isinstance(message, (bytes, bytearray, memoryview)):
            text, payload = False, bytes(message)
        else:
            raise TypeError(f"message must be str or bytes, not {type(message).__name__}")
        core = self._core
        # None: too short to gain, or binary data that does not compress.
        deflate = core.send_deflate(payload, text, compress)
        threaded = deflate is not None and core.needs_thread(len(payload))
        # If nobody holds the lock and nothing below will wait, the frame is
        # queued before any other sender runs: the lock would order nothing,
        # and taking it costs about a tenth of the small-message rate.
        waits = self._locked() or self._writer.full or threaded
        async with fast_lock(self._take_lock()) if waits else UNCONTENDED:
            await self.wait_for_room()
            if deflate is not None:
                if threaded:
                    # Not cancellable: the compressor moves on with this message,
                    # so it must be sent.
                    payload = await trio.to_thread.run_sync(core.compress, payload, text)
                    try:
                        self.check_open()
                    except ConnectionClosed:
                        # Closed because our scope was cancelled meanwhile (the
                        # reader went with it): that is the error to raise.
                        await trio.lowlevel.checkpoint_if_cancelled()
                        raise
                else:
                    payload = core.compress(payload, text)
            await self._queue_message(text, payload, deflate is not None, len(message))

    async def _queue_message(self, text: bool, payload: bytes, compressed: bool, size: int) -> None:
        """Frame a whole message and hand it to the writer (see FrameWriter.send)."""
        self._log.message(">", text, size)
        frame = self._core.message_frame(text, payload, compressed=compressed)
        if compressed and size >= WRITE_NOW_AFTER_COMPRESSING:
            # Compressing took far longer than a write: holding the frame for
            # company would leave the peer idle while we compress the next one.
            self._writer.put(*frame)
            return
        # A reply to a message still queued (or waiting for room in the
        # queue: the reader is blocked on it) is likely to follow this one.
        await self._writer.send(*frame, more_coming=self._inbox.backlog > 0 or self._inbox.full)

    def try_send(self, message: str | bytes | PreparedMessage, compress: bool) -> bool:
        """``try_send_message``: queue *message* now, hold it back, or refuse it."""
        prepared = message if isinstance(message, PreparedMessage) else PreparedMessage(message)
        self.check_open()
        if self._writer.full:
            self.skipped += 1
            return False
        if self._locked() or self._deferred:
            # Another message is going out piece by piece: wait behind it.
            if self._deferred and (
                len(self._deferred) >= DEFERRED_MESSAGES
                or self._deferred_size + len(prepared) > WRITE_BUFFER_SIZE
            ):
                self.skipped += 1
                return False
            if not self._deferred:
                self._deferred = []
                self._life.spawn(self._send_deferred)
            self._deferred.append((prepared, compress))
            self._deferred_size += len(prepared)
            return True
        self._queue_prepared(prepared, compress)
        return True

    def _queue_prepared(self, prepared: PreparedMessage, compress: bool) -> None:
        self._log.message(">", prepared.is_text, len(prepared))
        # The sending policy of send_message applies here too.
        deflate = self._core.send_deflate(prepared.payload, prepared.is_text, compress)
        self._writer.put_batched(prepared.frame(deflate, mask=self._mask))

    def _locked(self) -> bool:
        """Whether a sender holds the lock (one that was never made is free)."""
        return self._lock is not None and self._lock.locked()

    def _take_lock(self) -> trio.Lock:
        if self._lock is None:
            self._lock = trio.Lock()
        return self._lock

    async def _send_deferred(self) -> None:
        """Queue the messages try_send held back, once the lock is free."""
        async with fast_lock(self._take_lock()):
            deferred, self._deferred, self._deferred_size = self._deferred or [], None, 0
            with contextlib.suppress(ConnectionClosed):
                self.check_open()
                for prepared, compress in deferred:
                    self._queue_prepared(prepared, compress)

    # ------------------------------------------------------ a message as fragments

    async def send_stream(
        self,
        chunks: Iterable[str | bytes] | AsyncIterable[str | bytes],
        text: bool | None,
        compress: bool,
    ) -> None:
        """``send_message_stream``: one frame per chunk, holding the lock throughout.

        A message cannot be left half-sent on a connection that goes on: an
        error once frames are out closes with 1011, a cancellation drops the
        transport (1006); either way the exception propagates.
        """
        async with fast_lock(self._take_lock()):
            is_text = text
            started = False  # frames are out: only a final frame or a close ends them
            deflate = False  # set by the first chunk
            sent = 0  # bytes of payload, before compression
            core = self._core

            async def send_frame(payload: bytes, fin: bool) -> None:
                frame = core.fragment_frame(
                    bool(is_text), payload, first=not started, fin=fin, deflate=deflate
                )
                await self.wait_for_room()
                self._writer.put(*frame)

            async def send_chunk(chunk: object) -> None:
                nonlocal is_text, started, deflate, sent
                if is_text is None:
                    is_text = isinstance(chunk, str)
                if not isinstance(chunk, str if is_text else (bytes, bytearray, memoryview)):
                    kind = "str" if is_text else "bytes"
                    raise TypeError(f"chunks of a message must all be {kind}")
                data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
                if not started:  # the first chunk decides for the whole message
                    deflate = core.send_deflate(data, is_text, compress) is not None
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
                    self.send_close(INTERNAL_ERROR, "message stream failed", set_reason=True)
                raise
            except BaseException:
                if started:
                    await self.abort("message stream interrupted")
                raise

    # ------------------------------------------------------ control frames

    async def send_control(self, event: Ping | Pong) -> None:
        """Queue a ping or a pong, waiting for room first (see :meth:`wait_for_room`)."""
        await self.wait_for_room()
        core = self._core
        ping = isinstance(event, Ping)
        frame = core.ping_frame(event.payload) if ping else core.pong_frame(event.payload)
        assert frame is not None  # wait_for_room: still open
        self._log.frame(">", event)
        self._writer.put(*frame)

    def ping_now(self, payload: bytes) -> None:
        """Queue a ping without waiting (keepalive); nothing once closing."""
        frame = None if self._writer.failed else self._core.ping_frame(payload)
        if frame is not None:
            self._log.frame(">", Ping(payload))
            self._writer.put(*frame)

    def send_close(
        self, code: int, reason: str | None, *, set_reason: bool = False, echo: bool = False
    ) -> None:
        """Queue our Close frame while the connection is open (with *echo*:
        the answer to the peer's Close), if the transport still takes frames.

        With *set_reason*, sending it also sets the connection's ``closed``.
        """
        wanted = State.REMOTE_CLOSING if echo else State.OPEN
        if self._core.state is wanted and not self._writer.failed:
            if set_reason:
                self._life.set_reason(code, reason)
            self.put_close(self._core.close_frame(code, reason), code, reason)

    def put_close(self, frame: Frame | None, code: int, reason: str | None) -> None:
        """Queue a Close frame the core encoded (``None``: it sent one already)."""
        if frame is not None:
            self._log.frame(">", Close(code, reason))
            self._writer.put(*frame)

    async def abort(self, why: str) -> None:
        """Drop the transport: the byte stream can no longer be trusted (1006)."""
        self._life.set_reason(ABNORMAL_CLOSURE, why)
        await self._writer.drop()
