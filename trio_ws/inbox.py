"""The connection's bounded inbox: the message queue and message streams.

The reader task pushes each complete message into a Trio memory channel of
capacity ``message_queue_size``; ``get_message()`` drains it. When the
channel is full the reader waits in :meth:`Inbox.deliver`, so it stops
reading the socket and TCP flow control slows the peer down: nothing is
dropped and nothing is buffered without bound.

A message may instead be received as a stream of chunks
(:class:`MessageStream`): the reader hands each chunk through an unbuffered
memory channel, so it holds at most one chunk while the consumer works on
the previous one, and the peer is slowed down by TCP as with whole messages.

Nothing here reads the socket or knows the protocol: the connection's reader
decides what a message is, and this module decides where it goes.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

import trio

from .close_codes import NORMAL_CODES
from .core.size_limit import MessageSizeLimit
from .exceptions import ConnectionClosed
from .lifecycle import Lifecycle
from .options import DefaultType
from .values import CloseReason

Chunk = str | bytes
Message = str | bytes

#: What the reader may queue besides messages (the connection's marker of a
#: protocol violation): the inbox keeps it in order and hands it back as is.
Marker = TypeVar("Marker")


class MessageStream:
    """The chunks of one message, as an async iterator.

    Obtained from :meth:`WebSocketConnection.get_message_stream
    <trio_ws.WebSocketConnection.get_message_stream>`. Chunks are ``str`` for
    a text message and ``bytes`` for a binary one; iteration ends after the
    last chunk. If the connection closes before the message is complete,
    iteration raises :class:`~trio_ws.ConnectionClosed`.
    """

    def __init__(
        self,
        close_reason: Callable[[], CloseReason],
        first: Chunk | None = None,
        whole: bool = False,
    ) -> None:
        self._close_reason = close_reason
        self._send, self._receive = trio.open_memory_channel[tuple[Chunk, bool]](0)
        # A first chunk that had arrived before the stream was asked for:
        # a whole queued message, or the start of one being assembled.
        self._pending = first
        self._finished_after_pending = whole
        self._finished = False
        #: Whether any of the message has been handed to this stream.
        self.started = first is not None
        #: True for a text message, False for binary, None until known: set
        #: by the first chunk, or by the end of an empty message.
        self.is_text: bool | None = None if first is None else isinstance(first, str)

    @property
    def finished(self) -> bool:
        """Whether the last chunk of the message has been taken."""
        return self._finished

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self

    async def __anext__(self) -> Chunk:
        if self._pending is not None:
            chunk, self._pending = self._pending, None
            self._finished = self._finished_after_pending
            await trio.lowlevel.checkpoint()
            if chunk:
                return chunk
            if self._finished:  # an empty message, queued whole: no chunks
                raise StopAsyncIteration
        if self._finished:
            raise StopAsyncIteration
        try:
            chunk, self._finished = await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ConnectionClosed(self._close_reason()) from None
        self.is_text = isinstance(chunk, str)
        if not chunk:  # only the end of the message: empty chunks are not yielded
            raise StopAsyncIteration
        return chunk

    # -- the reader's side

    async def feed(self, chunk: Chunk, finished: bool) -> None:
        """Hand *chunk* to the consumer; drop it if the consumer left."""
        self.started = True
        try:
            await self._send.send((chunk, finished))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # abandoned: the rest of the message is read and dropped

    def end(self) -> None:
        """The connection closed: wake the consumer with ConnectionClosed."""
        self._send.close()

    def abandon(self) -> None:
        """The consumer is gone; the reader drops what is left of the message."""
        self._receive.close()


class Inbox(Generic[Marker]):
    """The queue of whole messages, and the message being received.

    The reader calls :meth:`deliver` (whole messages) and :meth:`take_chunk`
    (pieces of one); the application's side calls :meth:`get` and
    :meth:`open_stream`. Slots only: one of these lives per connection.
    """

    __slots__ = (
        "_in",
        "_life",
        "_max_message_size",
        "_out",
        "_size_limit",
        "backlog",
        "full",
        "parts",
        "stalls",
        "stream",
    )

    def __init__(
        self,
        life: Lifecycle[Any],
        capacity: int,
        size_limit: MessageSizeLimit,
        max_message_size: int,
    ) -> None:
        self._life = life  # why the connection closed, for ConnectionClosed
        # Not open_memory_channel[...](): subscripting it at run time builds
        # a typing alias (and a Union) per connection, about 4 µs.
        self._in: trio.MemorySendChannel[Message | Marker]
        self._out: trio.MemoryReceiveChannel[Message | Marker]
        self._in, self._out = trio.open_memory_channel(capacity)
        self._size_limit = size_limit
        self._max_message_size = max_message_size
        #: The open message stream, which receives the current message.
        self.stream: MessageStream | None = None
        #: Pieces of the message being assembled (all str or all bytes);
        #: None until a fragmented message arrives (most connections see none).
        self.parts: list[Any] | None = None
        #: Roughly how many messages wait in the queue: a hint for the writer.
        self.backlog = 0
        #: The reader waits on a full queue: pongs cannot be read meanwhile.
        self.full = False
        #: How many times the reader has had to wait so (keepalive asks).
        self.stalls = 0

    # ------------------------------------------------------ the application's side

    async def get(
        self, on_marker: Callable[[Marker], object] | None = None, iterating: bool = False
    ) -> Message | Marker:
        """The next item of the queue; cancelling loses nothing.

        A marker goes to *on_marker*, if given (which raises, or the marker
        is returned). Raises :class:`ConnectionClosed` once the queue is
        closed and empty, or, *iterating* (``async for``, which awaits this
        directly: one suspended frame less while it idles),
        StopAsyncIteration if the connection closed normally.
        """
        try:
            # No scheduler pass when a message is waiting: the queue is
            # bounded, so a consumer still parks within a few messages.
            if self.backlog > 0:  # only a hint, so the slow way stays behind it
                await trio.lowlevel.checkpoint_if_cancelled()
                with contextlib.suppress(trio.WouldBlock):
                    item = self._out.receive_nowait()
                    self.backlog -= 1
                    return item if on_marker is None else self._check(item, on_marker)
            item = await self._out.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            reason = self._life.final_reason()
            if iterating and reason.code in NORMAL_CODES:
                raise StopAsyncIteration from None
            raise ConnectionClosed(reason) from None
        self.backlog -= 1
        return item if on_marker is None else self._check(item, on_marker)

    @staticmethod
    def _check(item: Message | Marker, on_marker: Callable[[Marker], object]) -> Message | Marker:
        if not isinstance(item, (str, bytes)):
            on_marker(item)
        return item

    def open_stream(self, max_size: int | DefaultType | None) -> MessageStream | Marker:
        """A stream for the next message (or the marker queued in its place).

        A message queued whole already comes as one chunk. Otherwise the
        stream becomes :attr:`stream` and takes what has been assembled of
        the message so far, and *max_size* (``None``: no limit) applies to
        this message in place of ``max_message_size`` (``DEFAULT``: that limit).
        """
        if self.stream is not None:
            raise RuntimeError("another task is already receiving a message stream")
        if isinstance(max_size, DefaultType):
            max_size = self._max_message_size
        try:
            whole = self._out.receive_nowait()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ConnectionClosed(self._life.final_reason()) from None
        except trio.WouldBlock:
            # Part of the next message may be assembled already: it goes first.
            stream = MessageStream(
                self._life.final_reason, join(self.parts) if self.parts else None
            )
            self.parts = None
            self._size_limit.max_size = sys.maxsize if max_size is None else max_size
            self.stream = stream
            return stream
        self.backlog -= 1
        if isinstance(whole, (str, bytes)):
            return MessageStream(self._life.final_reason, whole, whole=True)
        return whole

    def close_stream(self, stream: MessageStream) -> None:
        """The consumer has left *stream* (see ``get_message_stream``)."""
        # Nothing of the message taken (it stays for get_message), or all
        # of it: either way this stream is over, whatever the reader's pace.
        if self.stream is stream and (not stream.started or stream.finished):
            self.end_stream()
        stream.abandon()

    def close(self) -> None:
        """The application closes: drop queued messages, wake blocked receivers."""
        self._out.close()

    # ------------------------------------------------------ the reader's side

    async def deliver(self, item: Message | Marker) -> None:
        """Queue *item*; wait while the queue is full (that is backpressure)."""
        try:
            try:
                # No checkpoint when there is room: the reader goes on with
                # the rest of the read instead of a run-loop pass per message.
                self._in.send_nowait(item)
            except trio.WouldBlock:
                self.full = True
                self.stalls += 1
                try:
                    await self._in.send(item)
                finally:
                    self.full = False
            self.backlog += 1
        except trio.BrokenResourceError:
            pass  # the application closed: drop what it will never read

    async def take_chunk(self, chunk: Any, done: bool) -> None:
        """Hand a piece of the incoming message to the open message stream,
        or to the parts of the message being assembled (*done*: its last),
        whichever branch decoded it."""
        stream = self.stream
        if stream is not None:
            if chunk or done:
                await stream.feed(chunk, done)
            # The consumer may have ended it already, and opened another.
            if done and self.stream is stream:
                self.end_stream()
        else:
            if self.parts is None:
                self.parts = []
            self.parts.append(chunk)
            if done:
                whole, self.parts = join(self.parts), None
                await self.deliver(whole)

    def end_stream(self) -> None:
        """The streamed message is over: the usual size limit applies again."""
        self.stream = None
        self._size_limit.max_size = self._max_message_size

    def finish(self) -> None:
        """The reader is done: nothing more will arrive."""
        self._in.close()
        if self.stream is not None:
            self.stream.end()


def join(parts: list[Any]) -> Message:
    """One message from its fragments (all ``str`` or all ``bytes``)."""
    return parts[0] if len(parts) == 1 else parts[0][:0].join(parts)  # type: ignore[no-any-return]
