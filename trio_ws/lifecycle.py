"""A connection's lifecycle: whether and why it closed, and where its tasks run.

The close state has one owner here: :attr:`Lifecycle.reason` is what
``WebSocketConnection.closed`` reports, set once by whichever side starts
closing (or by the loss of the transport), and setting it runs the close
callbacks. The reader task's end is recorded here too, and a task that must
wait for it (``aclose()``) gets a Trio event made on demand: most
connections never need one, and an event costs about 280 bytes.

The lifecycle refers to its connection only while close callbacks are
registered (they are called with it). Without that back reference a
connection's objects hold no reference cycle, so they are freed as soon as
the application drops the connection, not by a garbage collection pass.

The two lock helpers at the end serve the send path: a message is queued in
the order its sender took the lock, without a scheduler pass when the lock
is free. :class:`LazyLot` is a parking lot that exists only while a task
waits on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import trio

from .close_codes import ABNORMAL_CLOSURE
from .logs import ConnectionLogger
from .values import CloseReason

#: The connection that close callbacks are called with.
Owner = TypeVar("Owner")


class Lifecycle(Generic[Owner]):
    """One connection's close state, close callbacks, reader end and nursery."""

    __slots__ = ("_callbacks", "_done", "_log", "_nursery", "_owner", "reason")

    def __init__(self, log: ConnectionLogger) -> None:
        self._owner: Owner | None = None  # set while close callbacks wait
        self._log = log
        #: Why the connection closed, or None while it is open.
        self.reason: CloseReason | None = None
        self._callbacks: dict[Callable[[Owner], object], None] | None = None  # made when needed
        # The reader has finished (True), or not yet (False, or the event a
        # waiter made, set when it finishes).
        self._done: bool | trio.Event = False
        self._nursery: trio.Nursery | None = None  # where the connection's tasks run

    # ------------------------------------------------------ close state

    def set_reason(self, code: int, reason: str | None) -> None:
        """Record why the connection closed, unless that is known already."""
        if self.reason is None:
            self.reason = CloseReason(code, reason)
            callbacks, self._callbacks = self._callbacks, None
            owner, self._owner = self._owner, None
            if callbacks and owner is not None:  # the owner came with the first one
                for callback in callbacks:
                    self._call(callback, owner)

    def transport_failed(self, why: str) -> None:
        """The writer could not write: the connection is lost (1006)."""
        self.set_reason(ABNORMAL_CLOSURE, why)
        self._log.debug("writing failed: %s", why)

    def final_reason(self) -> CloseReason:
        """Why the connection closed; 1006 if nothing said so yet."""
        return self.reason or CloseReason(ABNORMAL_CLOSURE, None)

    def add_close_callback(self, owner: Owner, callback: Callable[[Owner], object]) -> None:
        """Call ``callback(owner)`` once when the connection closes; at once if it has."""
        if self.reason is not None:
            self._call(callback, owner)
        else:
            if self._callbacks is None:
                self._callbacks = {}
            self._owner = owner
            self._callbacks[callback] = None

    def remove_close_callback(self, callback: Callable[[Owner], object]) -> None:
        """Forget *callback*, if it was registered."""
        if self._callbacks is not None:
            self._callbacks.pop(callback, None)
            if not self._callbacks:
                self._callbacks = self._owner = None  # no cycle left to collect

    def _call(self, callback: Callable[[Owner], object], owner: Owner) -> None:
        try:
            callback(owner)
        except Exception:
            self._log.exception("close callback %r failed", callback)

    # ------------------------------------------------------ the reader's end

    @property
    def reader_done(self) -> bool:
        """Whether the reader task has finished (the transport is closed)."""
        return self._done is True

    def finish_reader(self) -> None:
        """The reader task has finished: wake whoever waits for it."""
        done, self._done = self._done, True
        if isinstance(done, trio.Event):
            done.set()

    async def wait_reader_done(self) -> None:
        """Wait until the reader task has finished; always a checkpoint."""
        done = self._done
        if done is True:
            await trio.lowlevel.checkpoint()
            return
        if done is False:
            done = self._done = trio.Event()
        await done.wait()

    # ------------------------------------------------------ tasks

    def start(self, nursery: trio.Nursery, reader: Callable[[], Awaitable[object]]) -> None:
        """Run *reader*, and from now on the connection's other tasks, in *nursery*."""
        self._nursery = nursery
        nursery.start_soon(reader)

    def spawn(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run *fn* in the connection's nursery, unless the connection is over."""
        if self._nursery is not None:
            with contextlib.suppress(RuntimeError):  # the nursery has closed
                self._nursery.start_soon(fn, *args)


class fast_lock:
    """``async with fast_lock(lock)``: hold *lock*, with no run-loop pass if it is free.

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
    """The lock-free stand-in for :class:`fast_lock`, when nothing can contend."""

    __slots__ = ()

    async def __aenter__(self) -> None:
        pass

    async def __aexit__(self, *exc_info: object) -> None:
        pass


#: ``async with (fast_lock(lock) if waits else UNCONTENDED)``: see ``send_message``.
UNCONTENDED = _Uncontended()


class LazyLot:
    """A :class:`trio.lowlevel.ParkingLot` made when a task parks, dropped
    when :meth:`unpark_all` wakes them all.

    A connection's writer keeps one for the senders that wait for room and
    the closers that wait for the buffer to drain; most connections never
    have a waiter, and an idle lot costs about 240 bytes.
    """

    __slots__ = ("_lot",)

    def __init__(self) -> None:
        self._lot: trio.lowlevel.ParkingLot | None = None

    def __len__(self) -> int:
        return 0 if self._lot is None else len(self._lot)

    async def park(self) -> None:
        """Wait until :meth:`unpark_all`; cancelling it just stops the wait."""
        if self._lot is None:
            self._lot = trio.lowlevel.ParkingLot()
        await self._lot.park()

    def unpark_all(self) -> None:
        """Wake every waiting task (a later one parks in a new lot)."""
        lot, self._lot = self._lot, None
        if lot is not None:
            lot.unpark_all()
