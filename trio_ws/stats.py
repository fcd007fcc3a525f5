"""The figures an operator watches on one worker process.

Every counter is a plain ``int`` attribute bumped by one addition where the
event happens (never by walking connections), so counting costs the same
with ten connections or ten thousand. Read them at any time, for example
from a ``/metrics`` endpoint; :meth:`WorkerStats.as_dict` gives a copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .broadcast import BroadcastResult

__all__ = ["WorkerStats"]


class WorkerStats:
    """Counters of one worker: connections, messages, slow consumers, broker.

    Attributes (all ``int``, all start at 0):

    - ``connections_open``, ``connections_total``: WebSocket connections
      open now, and accepted since start (:meth:`opened` / :meth:`closed`).
    - ``messages_in``, ``bytes_in``: messages received from clients
      (:meth:`received`); ``bytes_in`` counts characters for text, so that
      counting never encodes.
    - ``messages_out``, ``bytes_out``: messages queued to clients, once per
      recipient (:meth:`fanned_out` and :meth:`sent`).
    - ``slow_consumer_skips``, ``slow_consumer_closes``: recipients that
      missed a broadcast because their buffer was full, or were closed for it.
    - ``broker_published``, ``broker_received``: messages this worker handed
      to the broker, and got from it.
    - ``broker_reconnects``: times the broker connection was re-established.
    - ``broker_gaps``: gaps signalled (messages that may have been lost).
    - ``broker_dropped``: broker messages dropped because the local buffer
      was full (each also signals a gap).
    """

    __slots__ = (
        "broker_dropped",
        "broker_gaps",
        "broker_published",
        "broker_received",
        "broker_reconnects",
        "bytes_in",
        "bytes_out",
        "connections_open",
        "connections_total",
        "messages_in",
        "messages_out",
        "slow_consumer_closes",
        "slow_consumer_skips",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    connections_open: int
    connections_total: int
    messages_in: int
    bytes_in: int
    messages_out: int
    bytes_out: int
    slow_consumer_skips: int
    slow_consumer_closes: int
    broker_published: int
    broker_received: int
    broker_reconnects: int
    broker_gaps: int
    broker_dropped: int

    def opened(self) -> None:
        """Count a connection accepted."""
        self.connections_open += 1
        self.connections_total += 1

    def closed(self) -> None:
        """Count a connection ended."""
        self.connections_open -= 1

    def received(self, message: str | bytes) -> None:
        """Count one message from a client."""
        self.messages_in += 1
        self.bytes_in += len(message)

    def sent(self, message: str | bytes) -> None:
        """Count one message queued to one client."""
        self.messages_out += 1
        self.bytes_out += len(message)

    def fanned_out(self, size: int, result: BroadcastResult) -> None:
        """Count a broadcast of a *size*-byte message, from its result."""
        count = int(result)
        self.messages_out += count
        self.bytes_out += count * size
        self.slow_consumer_skips += result.skipped
        self.slow_consumer_closes += result.closed

    def as_dict(self) -> dict[str, int]:
        """A snapshot of every counter, by name."""
        return {name: getattr(self, name) for name in self.__slots__}
