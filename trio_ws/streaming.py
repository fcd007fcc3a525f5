"""Receiving one message as a stream of chunks, with memory bounded by a chunk.

The connection's reader hands each chunk of the streamed message through an
unbuffered memory channel, so it holds at most one chunk while the consumer
works on the previous one; the peer is slowed down by TCP as with whole
messages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import trio

from .exceptions import ConnectionClosed
from .values import CloseReason

Chunk = str | bytes


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
