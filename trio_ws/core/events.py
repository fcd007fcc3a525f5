"""What the protocol core reports, and what it hands the I/O layer to run.

:meth:`trio_ws.core.protocol.Protocol.next_event` returns one of these, or
``None`` when it needs more bytes. A whole message is not wrapped at all: it
is the ``str`` (text) or ``bytes`` (binary) itself, because it is by far the
most frequent event and an object around it would cost every message an
allocation. Every other event is a small immutable value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a message that arrived in several frames or reads.

    *data* is ``str`` for a text message (a character split across pieces
    comes whole with the next piece) or ``bytes``; *final* says it ends the
    message. The pieces of one message come in order, nothing in between
    but control frames' events.
    """

    data: str | bytes
    final: bool


@dataclass(frozen=True, slots=True)
class Ping:
    """The peer sent a ping; it should be answered with a pong of the same payload."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """The peer sent a pong (an answer to a ping, or unsolicited)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """A Close frame: *code* (1005 if it gave none) and *reason*.

    From ``next_event()``, the peer's (log records describe ours with it
    too). After the peer's the core reports nothing more. If the peer started the
    closing handshake, :meth:`~trio_ws.core.protocol.Protocol.close_frame`
    gives the echo to send.
    """

    code: int
    reason: str | None


#: The name :class:`Close` had in the core's first commit, which other
#: branches may already use.
CloseReceived = Close


@dataclass(frozen=True, slots=True)
class Violation:
    """The peer broke the protocol: fail the connection with *code*.

    *reason* says what the peer did wrong, and goes out in our Close frame
    (see :meth:`~trio_ws.core.protocol.Protocol.fail`). After this the core
    reports nothing more.
    """

    code: int
    reason: str


class ThreadJob:
    """Work the core wants done off the Trio thread before it goes on.

    Decompressing a big message may take a while; zlib releases the GIL, so
    the I/O layer should call :meth:`run` in a worker thread (with
    ``trio.to_thread.run_sync``), then ask the core for its next event as
    usual: the core picks the result up from here. Calling :meth:`run` in
    the Trio thread is just as correct, only slower for everyone else. It
    must be run exactly once before the next call to ``next_event()``.
    """

    __slots__ = ("_args", "_fn", "done", "result")

    def __init__(self, fn: Callable[..., Any], *args: object) -> None:
        self._fn = fn
        self._args = args
        self.result: Any = None
        self.done = False

    def run(self) -> None:
        """Do the work; safe in a worker thread (it touches only the core's
        inbound decompression state, which nothing else uses meanwhile)."""
        self.result = self._fn(*self._args)
        self.done = True


#: Everything :meth:`~trio_ws.core.protocol.Protocol.next_event` may return
#: except ``None``.
Event = str | bytes | Chunk | Ping | Pong | Close | Violation | ThreadJob
