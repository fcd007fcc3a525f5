"""A connection's reader task, and the closing procedures that wait for it.

One :class:`Reader` per connection runs as the connection's background task:
it reads the transport, hands the bytes to the protocol core
(:mod:`trio_ws.core`) and acts on the events the core makes of them: whole
messages and chunks go into the inbox (waiting while it is full: that is the
backpressure), pings are answered, big inflating jobs run in a worker
thread, pongs wake the ``ping()`` calls waiting for them, and a Close frame
or a violation ends the connection. It works on the objects the connection
hands it (core, inbox, outbox, writer, lifecycle), so ``WebSocketConnection``
only starts it.

Closing lives here too (``aclose()``, ``close_nowait()``'s task, a keepalive
expiry): each one ends by waiting for the reader, or by dropping the
transport under it.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import trio

from .close_codes import ABNORMAL_CLOSURE, GOING_AWAY, INTERNAL_ERROR, check_sendable
from .core.events import Chunk, Close, Ping, Pong, ThreadJob, Violation
from .core.protocol import Protocol, State
from .exceptions import ConnectionClosed
from .inbox import Inbox
from .keepalive import KeepaliveState, PingWaiters
from .lifecycle import Lifecycle
from .logs import ConnectionLogger
from .options import CANCELLED_CLOSE_GRACE, FRAMES_PER_YIELD, ConnectionOptions
from .outbox import Outbox
from .socket_io import FrameWriter

#: Seconds the application has, after the peer violated the protocol, to
#: read (and answer) the messages that arrived before the violation.
VIOLATION_GRACE = 1.0


class PendingViolation:
    """Queued after the last valid message when the peer broke the protocol.

    The application meets it in ``get_message()`` (and fails the connection
    then), or the reader does after :data:`VIOLATION_GRACE`: whichever comes
    first sends the Close frame, once.
    """

    __slots__ = ("code", "handled", "reason")

    def __init__(self, code: int, reason: str | None) -> None:
        self.code = code
        self.reason = reason
        self.handled = trio.Event()


class Reader:
    """One connection's reader task and closing procedures.

    The pings this side sent wait here too, for the pongs the reader reads.
    Not public API: the connection builds one and starts :meth:`run` in its
    nursery (see ``trio_ws.connection.start_connection``).
    """

    __slots__ = (
        "_closers",
        "_core",
        "_inbox",
        "_is_client",
        "_keepalive",
        "_life",
        "_log",
        "_outbox",
        "_pings",
        "_timeout",
        "_writer",
    )

    def __init__(
        self,
        core: Protocol,
        inbox: Inbox[PendingViolation],
        outbox: Outbox,
        writer: FrameWriter,
        life: Lifecycle[Any],
        log: ConnectionLogger,
        keepalive: KeepaliveState | None,
        is_client: bool,
        options: ConnectionOptions,
    ) -> None:
        self._core = core
        self._inbox = inbox
        self._outbox = outbox
        self._writer = writer
        self._life = life
        self._log = log
        self._pings = PingWaiters()
        self._keepalive = keepalive
        self._is_client = is_client
        self._timeout = options.disconnect_timeout
        # close() calls waiting for the reader: each one drops the
        # transport by its deadline, which bounds the reader's wait too.
        self._closers = 0

    def start(self, nursery: trio.Nursery) -> None:
        """Run the reader in *nursery*, and from now on the connection's other
        tasks (the writer's whenever it has work, closing tasks)."""
        self._life.start(nursery, self.run)
        self._writer.start(nursery)

    async def ping(self, payload: bytes | None) -> None:
        """Send a ping and wait for its pong, as ``ping()`` does (*payload* checked).

        Cancelling it stops the wait; the pong, when it comes, is ignored.
        Raises ConnectionClosed if the connection closes first.
        """
        payload, waiter = self._pings.add(payload)
        try:
            await self._outbox.send_control(Ping(payload))
            await waiter.wait()
        finally:
            unanswered = self._pings.remove(payload)
        if unanswered:
            raise ConnectionClosed(self._life.final_reason())

    # ------------------------------------------------------------ the task

    # Ctrl-C reaches the main task at a checkpoint, never mid-frame here.
    @trio.lowlevel.enable_ki_protection
    async def run(self) -> None:
        """Read the transport and act on what the protocol core makes of it,
        until the connection closes; never raises except Cancelled.

        The core (:mod:`trio_ws.core.protocol`) splits the bytes into frames
        and decodes them; this loop does the I/O around it: reads when the
        core needs more, hands messages and chunks to the inbox (waiting
        while it is full: that is the backpressure), answers pings, runs the
        core's big inflating jobs in a worker thread (cancelling the reader
        then waits for that thread, which the size limit bounds) and ends
        the connection on a Close frame or a violation. Every
        FRAMES_PER_YIELD events it yields, for fairness to other connections.
        The loop is this coroutine's own, not one it awaits: an idle reader
        keeps one suspended frame of ours (about 280 bytes less each).

        Cancelling it (its nursery going away) queues a 1001 Close, then
        closes the transport as any end of the reader does.
        """
        core = self._core
        inbox = self._inbox
        log = self._log
        writer = self._writer
        handled = 0
        try:
            while True:
                # A message stream wants chunks, not whole messages.
                core.streaming = inbox.stream is not None
                event = core.next_event()
                if event is None:
                    data = writer.read_nowait()
                    while data is None:  # the wait gives a stream's next bytes
                        data = await writer.wait()
                        if data is None:  # a socket's: read it now
                            data = writer.read_nowait()
                    if not data:
                        return  # transport lost without a closing handshake: 1006
                    core.receive_data(data)
                    data = b""  # not kept alive while the next read waits
                    continue
                handled += 1
                if handled % FRAMES_PER_YIELD == 0:
                    await trio.lowlevel.checkpoint()  # fairness to other connections
                # The most frequent first; no assert per message (they cost).
                if isinstance(event, (str, bytes)):
                    log.message("<", isinstance(event, str), len(event))
                    if inbox.stream is None:
                        await inbox.deliver(event)
                    else:
                        await self._deliver_whole(event)
                elif isinstance(event, Chunk):
                    log.frame("<", event)
                    await inbox.take_chunk(event.data, event.final)
                elif isinstance(event, ThreadJob):
                    await trio.to_thread.run_sync(event.run)
                elif isinstance(event, Ping):
                    log.frame("<", event)
                    self._answer_ping(event.payload)
                elif isinstance(event, Pong):
                    log.frame("<", event)
                    if self._keepalive is not None:
                        self._keepalive.pong(event.payload)
                    self._pings.acknowledge(event.payload)
                elif isinstance(event, Close):
                    log.frame("<", event)
                    await self._peer_closed(event)
                    return
                else:
                    assert isinstance(event, Violation)
                    await self._violated(event)
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionClosed):
            pass
        except trio.Cancelled:
            # The nursery running this connection is being torn down (its
            # server or client is going away): say so, whichever of its
            # tasks saw the cancellation first, before the transport goes.
            self._outbox.send_close(GOING_AWAY, None, set_reason=True)
            raise
        except Exception:  # a bug here must not crash the user's nursery
            log.exception("unexpected error in WebSocket reader task")
        finally:
            self._life.set_reason(ABNORMAL_CLOSURE, None)
            inbox.finish()
            self._pings.release_all()
            self._keepalive = None  # the handle refers to this reader: no cycle left
            try:
                await writer.close_transport(self._timeout)
            finally:
                self._life.finish_reader()
            if log.isEnabledFor(logging.DEBUG):
                log.debug("closed: %s", self._life.final_reason())

    async def _deliver_whole(self, message: str | bytes) -> None:
        """Hand a whole message to the open message stream (perhaps opened
        while the message was gathered), as it would get a first chunk."""
        stream = self._inbox.stream
        assert stream is not None
        await stream.feed(message, True)
        if self._inbox.stream is stream:
            self._inbox.end_stream()

    def _answer_ping(self, payload: bytes) -> None:
        """Answer *ping* without ever making the reader wait.

        If the write buffer is full (perhaps because the peer is not
        reading), the reader must go on reading, or two peers that both send
        and ping could wait on each other forever; the pong then replaces any
        earlier one still waiting for room, as RFC 6455 allows.
        """
        frame = self._core.pong_frame(payload)
        if frame is not None:
            self._log.frame(">", Pong(payload))
            self._writer.queue_late(b"".join(frame))

    async def _peer_closed(self, event: Close) -> None:
        """The peer's Close frame: echo it if the peer started the handshake."""
        if self._core.state is State.REMOTE_CLOSING:
            self._life.set_reason(event.code, event.reason)
            self._outbox.send_close(event.code, event.reason, echo=True)
        if self._is_client:
            # RFC 6455 7.1.1: the server closes the TCP connection first.
            await self._linger()

    async def _violated(self, event: Violation) -> None:
        """The peer broke the protocol: fail the connection with the core's code."""
        violation = PendingViolation(event.code, event.reason)
        self._log.debug("peer violated the protocol: %s %s", event.code, event.reason)
        if self._core.state is State.OPEN and self._inbox.stream is None:
            # The messages that came before the violation were valid:
            # the application gets them, and may answer them, before the
            # Close goes out (Autobahn's "strict" behaviour). It has
            # VIOLATION_GRACE seconds to get that far.
            with trio.move_on_after(VIOLATION_GRACE):
                await self._inbox.deliver(violation)
                await violation.handled.wait()
        self.fail(violation)
        await self._linger()

    def fail(self, violation: PendingViolation) -> None:
        """Fail the connection for *violation*: its Close frame goes out once.

        Whichever comes first, the reader after the grace or the application
        reading the violation from the queue; the core's state says whether
        it has been done. Not a schedule point.
        """
        violation.handled.set()  # wakes the reader, if it still waits
        core = self._core
        if core.state is not State.FAILED:
            self._life.set_reason(violation.code, violation.reason)
            frame = core.fail(violation.code, violation.reason)
            if not self._writer.failed:
                self._outbox.put_close(frame, violation.code, violation.reason)

    def met_violation(self, violation: PendingViolation) -> NoReturn:
        """The application read *violation* from the inbox: fail the
        connection now (see :meth:`fail`) and raise ConnectionClosed."""
        self.fail(violation)
        raise ConnectionClosed(self._life.final_reason())

    async def _linger(self) -> None:
        """Let the peer read our Close frame before the TCP connection goes.

        Closing a socket with unread input makes the kernel send RST, which
        can destroy our Close frame in flight. So write what is queued,
        half-close where the transport allows it and read (discarding) until
        the peer closes, at most ``disconnect_timeout`` seconds. When a
        ``close()`` waits for the reader (the usual way a client closes), its
        deadline drops the transport and so ends this wait too: then no
        cancel scope of its own is needed. Cancelling it stops the wait.
        """
        if self._closers:
            await self._writer.linger()
        else:
            with trio.move_on_after(self._timeout):
                await self._writer.linger()

    # ------------------------------------------------------------ closing

    async def close(self, code: int, reason: str | None) -> bool:
        """Close as ``aclose()`` does; return whether it finished in time.

        Waits for the reader to end, at most ``disconnect_timeout`` seconds,
        then drops the transport. If cancelled, the Close frame still goes
        out if the transport takes it at once (a shielded wait of at most
        CANCELLED_CLOSE_GRACE seconds), the transport is dropped and the
        cancellation propagates. Once the reader has ended there is nothing
        to wait for: this is then a cancellation point but not a schedule
        point (the server's close after the peer's is that case).
        """
        check_sendable(code, reason)
        self._inbox.close()  # drop queued messages; wake blocked readers
        life = self._life
        if life.reader_done:
            await trio.lowlevel.checkpoint_if_cancelled()
            return True
        self._closers += 1  # from here, this call drops the transport by its deadline
        try:
            with trio.move_on_after(self._timeout):
                if life.reason is None:
                    life.set_reason(code, reason)
                    self._outbox.send_close(code, reason)
                await life.wait_reader_done()
                return True
            self._log.debug("closing handshake timed out; dropping transport")
            await self._writer.drop()
            # A connection we failed has no handshake to finish: not a timeout.
            return self._core.state is State.FAILED
        except ConnectionClosed:
            return True  # the transport broke while sending Close: nothing to wait for
        except BaseException:
            # Cancelled (the caller's scope, or a server going away): the
            # Close frame still goes out if the transport takes it at once.
            deadline = trio.current_time() + CANCELLED_CLOSE_GRACE
            with trio.CancelScope(shield=True, deadline=deadline):
                await self._writer.finish()
            await self._writer.drop()
            raise
        finally:
            self._closers -= 1

    def close_nowait(self, code: int, reason: str | None) -> None:
        """Set the close reason and queue the Close frame now; finish in a task."""
        check_sendable(code)
        if self._life.reason is None:
            self._life.set_reason(code, reason)
            self._outbox.send_close(code, reason)
            self._life.spawn(self.close, code, reason)

    def expire(self, why: str) -> None:
        """Close a connection whose peer stopped answering (1011), not waiting on it.

        The transport is dropped, in a task of the connection's nursery,
        ``disconnect_timeout`` seconds after the Close frame is queued.
        """
        self._life.spawn(self._expire, why)

    async def _expire(self, why: str) -> None:
        self._log.debug("closing connection: %s", why)
        self._life.set_reason(INTERNAL_ERROR, why)
        self._outbox.send_close(INTERNAL_ERROR, why)
        await self._writer.drop(after=self._timeout)
