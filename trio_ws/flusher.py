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
  and the frames queued on that connection in the same pass join it. The
  first frame queued there in a later pass (a publisher's next message)
  writes them all, with itself, in one call: waiting longer would add
  latency for nothing. Frames that no later broadcast joins are written by
  this run's :class:`Flusher` task after FLUSH_PASSES passes. Many
  broadcasts in one pass therefore share one call per connection, and a
  publisher that broadcasts once per pass makes one call per connection
  for every two or three messages.

The frames waiting count in each connection's write buffer as any other,
so the memory bound and the slow-consumer policy do not change. There is
one flusher per Trio run, a system task started on first use; its work is
proportional to the connections that have frames waiting, never to the
number of open connections.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import trio

from .options import FLUSH_PASSES
from .run_services import run_service


class Batched(Protocol):
    """What the flusher needs of a writer (``FrameWriter``)."""

    def flush_batched(self, since: int | None) -> None:
        """Write the frames held since pass *since*, if it still holds those; never raises."""


class Flusher:
    """Writers with frames held for a batched write, and the task that writes them."""

    def __init__(self) -> None:
        #: Whether fan-out frames wait for company (see the module's doc).
        self.hot = False
        #: Scheduler passes counted while hot: a writer notes the pass in
        #: which it began to hold frames.
        self.passes = 0
        self._last_broadcast = 0  # the pass of the latest broadcast
        self._current: list[Batched] = []  # began to hold in this pass
        self._older: deque[tuple[int, list[Batched]]] = deque()  # (pass, writers)
        self._wake = trio.lowlevel.ParkingLot()

    def broadcast_ended(self) -> None:
        """Note a broadcast: the next ones' frames wait for company."""
        self._last_broadcast = self.passes
        if not self.hot:
            self.hot = True
            self._wake.unpark_all()

    def add(self, writer: Batched) -> None:
        """Have *writer* flushed FLUSH_PASSES passes from now, unless it wrote by then."""
        self._current.append(writer)

    async def run(self) -> None:
        """While hot, count passes, flush what waited FLUSH_PASSES, cool when quiet.

        A system task: cancelled when the run ends, which is the only way
        it returns. ``flush_batched`` never raises, so neither does this.
        """
        while True:
            if not self.hot:
                await self._wake.park()
            await trio.lowlevel.cancel_shielded_checkpoint()
            if self._current:
                self._older.append((self.passes, self._current))
                self._current = []
            self.passes += 1
            older = self._older
            while older and self.passes - older[0][0] >= FLUSH_PASSES:
                since, writers = older.popleft()
                for writer in writers:  # no broadcast came to join these
                    writer.flush_batched(since)
            if not older and self.passes - self._last_broadcast >= FLUSH_PASSES:
                self.hot = False


_FLUSHER: trio.lowlevel.RunVar[Flusher] = trio.lowlevel.RunVar("trio_ws_flusher")


def current_flusher() -> Flusher:
    """The flusher of the current Trio run, started on first use."""
    return run_service(_FLUSHER, Flusher, "trio_ws flusher")
