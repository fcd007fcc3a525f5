"""One system call per connection for a burst of broadcasts.

On loopback or a LAN nearly all of a broadcast's cost per connection is the
``writev`` that hands the frame to the kernel, and writing two small frames
in one call costs about what writing one does. A publisher that broadcasts
again and again (or many handler tasks publishing in the same scheduler
pass) would make one call per message per connection if each frame were
written at once. So fan-out has two modes, switched per Trio run:

* **Cold** (nothing was broadcast lately): a frame that
  :meth:`WebSocketConnection.try_send_message` (and so
  :func:`trio_ws.broadcast`) queues on an idle connection is written at
  once, as :meth:`~WebSocketConnection.send_message` would. A lone message
  never waits for company that is not coming.
* **Hot** (from the end of a broadcast until FLUSH_PASSES scheduler passes
  go by without one): such a frame stays in the connection's write buffer,
  and this run's :class:`Flusher` writes every waiting connection's frames,
  one call each, after FLUSH_PASSES passes. Frames queued on that
  connection meanwhile go in the same call.

The frames waiting count in each connection's write buffer as any other,
so the memory bound and the slow-consumer policy do not change. There is
one flusher per Trio run, a system task started on first use; its work is
proportional to the connections that have frames waiting, never to the
number of open connections.
"""

from __future__ import annotations

from typing import Protocol

import trio

from .options import FLUSH_PASSES


class Batched(Protocol):
    """What the flusher needs of a writer (``FrameWriter``)."""

    def flush_batched(self) -> None:
        """Write the frames held for the flusher; must not raise."""


class Flusher:
    """Writers with frames held for a batched write, and the task that writes them."""

    def __init__(self) -> None:
        #: Whether fan-out frames wait for the flusher (see the module's doc).
        self.hot = False
        self._broadcasts = False  # a broadcast ended since the last flush
        self._waiting: list[Batched] = []
        self._wake = trio.lowlevel.ParkingLot()

    def broadcast_ended(self) -> None:
        """Note a broadcast: the frames of the next ones wait for company."""
        self._broadcasts = True
        if not self.hot:
            self.hot = True
            self._wake.unpark_all()

    def add(self, writer: Batched) -> None:
        """Have *writer*'s :meth:`~Batched.flush_batched` called at the next flush.

        A writer is added when it starts holding frames for the flusher;
        one that wrote them itself and then started again may be listed
        twice, and finds nothing to do the second time.
        """
        self._waiting.append(writer)

    async def run(self) -> None:
        """While hot, flush every FLUSH_PASSES passes; cool down after a quiet round.

        A system task: cancelled when the run ends, which is the only way
        it returns. ``flush_batched`` never raises, so neither does this.
        """
        while True:
            if not self.hot:
                await self._wake.park()
            for _ in range(FLUSH_PASSES):
                await trio.lowlevel.cancel_shielded_checkpoint()
            writers, self._waiting = self._waiting, []
            if not (writers or self._broadcasts):
                self.hot = False  # a whole round without a broadcast
            self._broadcasts = False
            for writer in writers:
                writer.flush_batched()


_FLUSHER: trio.lowlevel.RunVar[Flusher] = trio.lowlevel.RunVar("trio_ws_flusher")


def current_flusher() -> Flusher:
    """The flusher of the current Trio run, started on first use."""
    try:
        return _FLUSHER.get()
    except LookupError:
        flusher = Flusher()
        _FLUSHER.set(flusher)
        trio.lowlevel.spawn_system_task(flusher.run, name="trio_ws flusher")
        return flusher
