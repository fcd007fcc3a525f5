"""A connection's socket I/O: reads, and a bounded write buffer drained by one task.

Both sides of the transport live here, on one :class:`FrameWriter` per
connection, since they share the socket: :meth:`FrameWriter.read_nowait` and
:meth:`FrameWriter.wait` are the reader task's only way to read, and the rest
of the class is the write side.

Senders queue whole frames and return; a writer task hands them to the
transport. It runs only while there is something to write (an idle
connection costs no task for it). Two things follow from that:

* Frames queued close together share one system call. A frame sent on an
  idle TCP or unix socket is written at once, by the sender, without waiting
  for a scheduler pass, unless the sender says more is coming (a server
  answering messages that are already queued behind this one). Then, or when
  the writer is busy anyway, the writer task writes it, and first lets the
  tasks that are ready run and queue their frames, for as long as each pass
  adds some (a few passes at most): a burst of small messages costs one
  ``send`` instead of one each. Linux's TCP autocorking makes the same trade.
  The decision looks only at this connection, never at the whole Trio run
  (``trio.lowlevel.current_statistics()`` walks every registered socket, so
  asking it on each send made a send cost time in proportion to the number
  of open connections).
* Backpressure still reaches the sender: once ``WRITE_BUFFER_SIZE`` bytes
  are waiting, senders wait for the writer to catch up, so a peer that stops
  reading stops us queueing.

Only whole frames are queued, so a sender cancelled while it waits for room
has queued nothing and the connection stays usable. A transport that fails
while writing fails the connection; senders learn of it on their next call.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable

import trio

from .flusher import Flusher, current_flusher
from .lifecycle import LazyLot
from .options import (
    BATCH_BYTES,
    CORK_BYTES,
    CORK_FRAMES,
    CORK_LONG_PASS,
    CORK_PASSES,
    CORK_SECONDS,
    READS_PER_YIELD,
    WRITE_BUFFER_SIZE,
    WRITE_JOIN_LIMIT,
)
from .sockets import Piece, plain_socket, read_socket, write_nowait

#: Most buffers one writev() takes (Linux and macOS allow 1024).
_IOV_MAX = 512


class FrameWriter:
    """Queue frames for *stream*; writer tasks, started in the nursery given
    to :meth:`start` while frames wait, write them."""

    # One writer per connection: slots, not a per-instance dict (about
    # 150 bytes less per connection). A new attribute needs a slot here.
    __slots__ = (
        "_bulk",
        "_first_queued",
        "_flusher",
        "_held",
        "_late",
        "_nursery",
        "_on_failure",
        "_pieces",
        "_progress",
        "_queued",
        "_reads_unyielded",
        "_receive_size",
        "_running",
        "_socket",
        "_stopping",
        "_stream",
        "_unyielded",
        "_writing",
        "failed",
    )

    def __init__(
        self, stream: trio.abc.Stream, on_failure: Callable[[str], None], receive_size: int
    ) -> None:
        self._stream = stream
        self._receive_size = receive_size  # bytes asked of the transport per read
        self._reads_unyielded = 0  # reads by read_nowait() without a schedule point
        self._bulk = False  # the last read filled the buffer (see read_socket)
        self._nursery: trio.Nursery | None = None  # where writer tasks run
        # Plain sockets can be written without a scheduler pass (see put()).
        self._socket = plain_socket(stream)
        self._on_failure = on_failure  # called once, when a write fails
        self._pieces: list[Piece] = []  # whole frames, in order
        self._queued = 0  # bytes in _pieces
        self._writing = 0  # bytes handed to the transport but not yet written
        self._late: bytes | None = None  # a pong waiting for room
        self._running = False  # a writer task is alive
        self._first_queued = 0.0  # when the oldest queued frame was queued
        # Senders wait here for room, and drain() for nothing left; both
        # check again when woken, so one lot (woken after each write) serves
        # both, and it exists only while someone waits.
        self._progress = LazyLot()
        self._stopping = False
        self._unyielded = 0  # frames queued by send() without a schedule point
        self._held: int | None = None  # the flusher's pass since which _pieces wait
        self._flusher: Flusher | None = None  # that flusher, once asked for
        self.failed = False

    @property
    def full(self) -> bool:
        """Whether senders must wait before queueing."""
        return self._queued + self._writing >= WRITE_BUFFER_SIZE

    def queue(self, *pieces: Piece) -> None:
        """Queue one frame, given as consecutive pieces, for the writer task.

        Frames queued after :meth:`stop` (the transport is closed) are dropped.
        """
        if self.failed or self._stopping:
            return
        if not self._pieces:
            self._first_queued = trio.current_time()
        self._pieces.extend(pieces)
        self._queued += sum(map(len, pieces))
        self._start_writer()

    def put(self, *pieces: Piece) -> None:
        """Write one frame now if the writer is idle, else queue it; never blocks.

        For frames that are not worth holding back (Close, pongs), and for
        :meth:`send`. What the socket does not take at once is queued.
        """
        idle = not (self._pieces or self._writing or self.failed or self._stopping)
        if self._socket is not None and idle:
            pieces = self._write_now(pieces)
        if pieces:
            self.queue(*pieces)

    def put_batched(self, frame: tuple[Piece, ...]) -> None:
        """Queue a frame of a fan-out, to share a write with the next; never blocks.

        While the run's flusher is hot (see :mod:`trio_ws.flusher`), on an
        idle plain socket, the frame waits: a frame queued in a later
        scheduler pass, the flusher or BATCH_BYTES writes them all in one
        call. Otherwise this is :meth:`put`.
        """
        if self._held is None:
            if self._flusher is None:
                self._flusher = current_flusher()
            if not self._flusher.hot or self._pieces or self._running or self.failed:
                self.put(*frame)
                return
            if self._socket is None or self._nursery is None or self._stopping:
                self.put(*frame)
                return
            self._first_queued = -math.inf  # a writer task taking these over writes at once
        assert self._flusher is not None
        self._pieces += frame
        self._queued += sum(map(len, frame))
        held, passes = self._held, self._flusher.passes
        if held is None and self._queued < BATCH_BYTES:
            self._held = passes
            self._flusher.add(self)
        elif held != passes or self._queued >= BATCH_BYTES:
            self.flush_batched(held)  # company from a later pass, or enough for a call

    def flush_batched(self, since: int | None) -> None:
        """Write the frames held since the flusher's pass *since*, if they still
        are, in one call (what the socket does not take, as :meth:`put` does);
        never raises."""
        if self._held != since:
            return
        self._held = None
        if self._running or not self._pieces:
            return  # a writer task (or finish()) took them over
        pieces, self._pieces, self._queued = self._pieces, [], 0
        try:
            self.put(*pieces)
        except Exception as exc:  # the connection's nursery closed: it is gone
            self._give_up(repr(exc))
        if len(self._progress):
            self._progress.unpark_all()

    def start(self, nursery: trio.Nursery) -> None:
        """Run writer tasks in *nursery* from now on."""
        self._nursery = nursery
        self._start_writer()

    def _start_writer(self) -> None:
        if self._pieces and not self._running and self._nursery is not None:
            self._running = True
            self._nursery.start_soon(self._run)

    async def send(self, *pieces: Piece, more_coming: bool = False) -> None:
        """Queue one frame, or write it now; not cancellable.

        The frame is written here, by the caller, if the writer is idle and
        the caller does not expect to send again soon (*more_coming*). The
        check is O(1): nothing here may cost more with more connections open.
        Either way this is not a schedule point: a task sending a burst
        queues all of it before the writer runs, and a task that sends and
        then waits for an answer does not pay a scheduler pass in between.
        Every CORK_FRAMES frames it yields all the same, so a sending loop
        cannot starve other tasks.
        """
        if (
            more_coming
            or self._pieces  # the writer is busy anyway: join its next write
            or self._writing
        ):
            self.queue(*pieces)
        else:
            self.put(*pieces)
        self._unyielded += 1
        if self._unyielded >= CORK_FRAMES:
            self._unyielded = 0
            await trio.lowlevel.cancel_shielded_checkpoint()

    def queue_late(self, frame: bytes) -> None:
        """Queue *frame* now if there is room, else in place of the last late one.

        For pongs: a peer that pings while not reading must not grow the
        buffer, and RFC 6455 allows answering only the latest ping.
        """
        if self.full:
            self._late = frame
        else:
            self.put(frame)

    async def wait_for_room(self) -> None:
        """Wait until the buffer has room (or the transport failed).

        Cancelling it is safe: nothing was queued.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while self.full and not self.failed:
            await self._progress.park()

    async def drain(self) -> None:
        """Wait until every queued frame is written, or the transport failed."""
        while (self._queued or self._writing) and not self.failed:
            await self._progress.park()

    async def finish(self) -> None:
        """Write what is still queued, from the calling task if no writer runs.

        For the last frames of a connection (its Close), called inside a
        shielded, time-bounded scope. When the connection's tasks are being
        cancelled, a writer task is cancelled too, and a cancelled write to
        a TLS stream breaks it: the writer then leaves its frames queued
        (see :meth:`_run`) and the caller's shield lets them out here. Two
        callers at once take turns: one writes while the other waits.
        """
        while (self._queued or self._writing) and not self.failed:
            if self._running or not self._pieces:
                await self._progress.park()
                continue
            self._running = True  # no writer task starts while this writes
            try:
                await self._write_queued()
            except Exception as exc:  # the transport broke
                await self._fail(repr(exc))
                return
            finally:
                self._running = False
                self._progress.unpark_all()

    def stop(self) -> None:
        """Drop frames queued from now on: the transport is being closed."""
        self._stopping = True

    # Ctrl-C reaches the main task at a checkpoint, never mid-frame here.
    @trio.lowlevel.enable_ki_protection
    async def _run(self) -> None:
        """Write until nothing is left; never raises except Cancelled."""
        try:
            while True:
                if not self._pieces:
                    # Stay for one more pass: a sender that is busy now
                    # would otherwise start a new task for its next frame.
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    if not self._pieces:
                        return
                await self._cork()
                if self._socket is None and trio.current_effective_deadline() == -math.inf:
                    # Cancelled before writing: a cancelled TLS write would
                    # break the stream, so the closing reader's finish()
                    # writes these frames (the Close) under its shield.
                    self._progress.unpark_all()
                    return
                self._unyielded = 0
                await self._write_queued()
                if self._late is not None:
                    late, self._late = self._late, None
                    self.queue(late)
                self._progress.unpark_all()
        except trio.Cancelled:
            await self._fail("cancelled")
            raise
        except Exception as exc:  # the transport broke, or (a bug) anything else
            await self._fail(repr(exc))
        finally:
            self._running = False

    async def _write_queued(self) -> None:
        """Take every queued frame and write it (counted as being written meanwhile)."""
        pieces, self._pieces = self._pieces, []
        self._writing, self._queued = self._queued, 0
        await self._write(pieces)
        self._writing = 0

    async def _write_socket(self, pieces: list[Piece]) -> None:
        """Write *pieces* to a plain socket with ``writev``: no joining, and
        no scheduler pass unless the socket is full."""
        assert self._socket is not None
        rest = tuple(pieces)
        while rest:
            rest = self._write_now(rest[:_IOV_MAX], raising=True) + rest[_IOV_MAX:]
            if rest:
                await trio.lowlevel.wait_writable(self._socket)

    def _write_now(self, pieces: tuple[Piece, ...], *, raising: bool = False) -> tuple[Piece, ...]:
        """Write what the socket takes without blocking; return the rest.

        A failing socket is left for the writer task to find (it passes
        *raising*), so that there is one way to fail.
        """
        assert self._socket is not None
        try:
            return write_nowait(self._socket, pieces)
        except trio.BrokenResourceError:
            if raising:
                raise
            return pieces

    async def _cork(self) -> None:
        """Let tasks that are ready to run queue their frames first.

        Stop after two passes in a row that added nothing: Trio runs each
        pass's tasks in a varying order, so one pass may end before a busy
        sender has had its turn. Stop, or do not start, once a pass took
        long (CORK_LONG_PASS).
        """
        now = trio.current_time()
        if self._queued >= CORK_BYTES or now - self._first_queued > CORK_LONG_PASS:
            return  # enough to write, or the frames have waited a long pass already
        idle = 0
        until = now + CORK_SECONDS
        for _ in range(CORK_PASSES):
            before = len(self._pieces)
            await trio.lowlevel.cancel_shielded_checkpoint()
            idle = idle + 1 if len(self._pieces) == before else 0
            last, now = now, trio.current_time()
            if (
                idle == 2
                or self._queued >= CORK_BYTES
                or now >= until
                or now - last > CORK_LONG_PASS
            ):
                return

    async def _write(self, pieces: list[Piece]) -> None:
        """Write *pieces*: small ones joined, big ones as they are (no copy)."""
        if self._socket is not None:
            await self._write_socket(pieces)
            return
        send_all = self._stream.send_all
        group: list[Piece] = []
        size = 0
        for piece in pieces:
            if len(piece) >= WRITE_JOIN_LIMIT:
                if group:
                    await send_all(b"".join(group))
                    group, size = [], 0
                await send_all(piece)
                continue
            group.append(piece)
            size += len(piece)
            if size >= WRITE_JOIN_LIMIT:
                await send_all(b"".join(group) if len(group) > 1 else group[0])
                group, size = [], 0
        if group:
            await send_all(b"".join(group) if len(group) > 1 else group[0])

    async def _fail(self, why: str) -> None:
        """Give up on the transport: the peer can no longer find frame boundaries."""
        self._give_up(why)
        await trio.aclose_forcefully(self._stream)

    def _give_up(self, why: str) -> None:
        """:meth:`_fail` but for closing the stream (left to the reader)."""
        self.failed = True
        self._pieces, self._queued, self._writing, self._late = [], 0, 0, None
        self._held = None
        self._progress.unpark_all()
        self._on_failure(why)

    # -- the read side

    def read_nowait(self) -> bytes | bytearray | None:
        """The next bytes of a plain socket, empty at its end; ``None``: await
        :meth:`wait` first. Read directly (see :mod:`trio_ws.sockets`):
        trio's ``receive_some`` also yields a scheduler pass per read, one too
        many between the peer's frame and ``get_message()``."""
        sock = self._socket
        if sock is None or self._reads_unyielded >= READS_PER_YIELD:
            return None
        try:  # a closed socket answers -1 (EBADF below), never a stale number
            data = read_socket(sock.fileno(), self._receive_size, self._bulk)
        except BlockingIOError:  # (the wait is not in here: this exception and
            self._reads_unyielded = 0  # its traceback would live as long)
            return None
        except OSError as exc:  # reset by the peer, or closed under us
            raise trio.BrokenResourceError(str(exc)) from exc
        self._reads_unyielded += 1
        self._bulk = len(data) == self._receive_size
        return data

    def wait(self) -> Awaitable[bytes | bytearray | None]:
        """What to await when :meth:`read_nowait` gave ``None``: a plain
        socket's own wait in Trio (an idle reader keeps no frame of ours) or
        a checkpoint, then ``None`` (read again); else the stream's next
        bytes. Cancelling it loses nothing. :meth:`receive` does both."""
        if self._socket is None:
            return self._stream.receive_some(self._receive_size)
        if self._reads_unyielded >= READS_PER_YIELD:
            self._reads_unyielded = 0
            return trio.lowlevel.checkpoint()
        return trio.lowlevel.wait_readable(self._socket)

    async def receive(self) -> bytes | bytearray:
        """The next bytes from the transport, empty at its end."""
        data = self.read_nowait()
        while data is None:
            data = await self.wait()
            if data is None:
                data = self.read_nowait()
        return data

    # -- the end of the transport

    async def linger(self) -> None:
        """Write what is queued, half-close (a plain socket with no scheduler
        pass) and read, discarding, until the peer closes; the caller bounds it."""
        await self.drain()
        if self._socket is not None and not self.failed:
            with contextlib.suppress(OSError):  # the peer has gone already
                self._socket.shutdown(trio.socket.SHUT_WR)
        elif isinstance(self._stream, trio.abc.HalfCloseableStream) and not self.failed:
            await self._stream.send_eof()
        while await self.receive():
            pass

    async def close_transport(self, timeout: float) -> None:
        """Write what is queued (our Close, or the echo of the peer's), then close
        the transport gracefully, within *timeout*; shielded, so a cancelled reader
        still ends its connection. A plain socket with nothing left to write
        needs no I/O: it is closed at once, with no cancel scope and no pass."""
        if self._socket is not None and not (self._queued or self._writing):
            self.stop()
            self._socket.close()
            return
        try:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + timeout):
                await self.finish()
                self.stop()
                await self._stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # a cancelled aclose() dropped it during close_notify: closed anyway

    async def drop(self, after: float = 0) -> None:
        """Drop the transport, after up to *after* seconds for queued frames."""
        if after:
            with trio.move_on_after(after):
                await self.drain()
        await trio.aclose_forcefully(self._stream)
