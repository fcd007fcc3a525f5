"""Per-connection logging: every record names the connection it is about.

Records go to the ``trio_ws.connection`` logger (``trio_ws.server`` for the
server's own) with ``ws_id``, ``remote`` and ``path`` attributes, for
formatters and filters, and a ``[#id remote path]`` prefix. Frame-level
records are DEBUG and never contain payloads, only their sizes.

The ``trio_ws`` logger's parent is the ``trio-websocket`` logger (whose
parent is the root logger), so a program written for trio-websocket that
sets that logger's level or adds handlers to it keeps seeing the records it
expects; with neither set, that logger changes nothing.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from .core.events import Chunk, Close, Ping, Pong
from .values import Endpoint

_ids = itertools.count(1)

#: The logger trio-websocket logs to; trio_ws's loggers sit below it.
COMPAT_LOGGER = "trio-websocket"

# Logger.parent is a plain attribute that logging maintains itself: it is
# reassigned only when a logger higher up in the same dotted name is created,
# and "trio_ws" has none (the root aside), so the link stays.
logging.getLogger("trio_ws").parent = logging.getLogger(COMPAT_LOGGER)

if TYPE_CHECKING:
    _Adapter = logging.LoggerAdapter[logging.Logger]
else:  # LoggerAdapter is subscriptable at run time only from Python 3.11
    _Adapter = logging.LoggerAdapter


class ConnectionLogger(_Adapter):
    """A logger adapter that stamps records with one connection's identity."""

    def __init__(self, logger: logging.Logger, remote: Endpoint | str, path: str) -> None:
        # The record attributes and prefix are built when a record is made:
        # most connections never log at an enabled level, and built up front
        # they cost every idle connection a dict and two strings.
        super().__init__(logger)
        #: The connection's number, unique in this process; ``str(connection)`` shows it.
        self.ws_id = next(_ids)
        self._remote = remote
        self._path = path

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        remote = self._remote
        where = f"{remote.address}:{remote.port}" if isinstance(remote, Endpoint) else "-"
        identity = {"ws_id": self.ws_id, "remote": where, "path": self._path}
        kwargs["extra"] = {**identity, **kwargs.get("extra", {})}
        return f"[#{self.ws_id} {where} {self._path}] {msg}", kwargs

    def frame(self, direction: str, event: Chunk | Ping | Pong | Close) -> None:
        """Log one frame-level event at DEBUG, payload elided."""
        if self.isEnabledFor(logging.DEBUG):
            self.debug("%s %s", direction, describe(event))

    def message(self, direction: str, text: bool, size: int) -> None:
        """Log a whole message of *size* chars or bytes at DEBUG, as :meth:`frame` does."""
        if self.isEnabledFor(logging.DEBUG):
            kind, unit = ("text", "chars") if text else ("binary", "bytes")
            self.debug("%s %s %d %s", direction, kind, size, unit)


def describe(event: Chunk | Ping | Pong | Close) -> str:
    """A one-line description of *event* (the protocol core's) without its payload."""
    if isinstance(event, Chunk):
        text = isinstance(event.data, str)
        end = "" if event.final else ", more to come"
        return (
            f"{'text' if text else 'binary'} {len(event.data)} {'chars' if text else 'bytes'}{end}"
        )
    if isinstance(event, (Ping, Pong)):
        return f"{type(event).__name__.lower()} {len(event.payload)} bytes"
    return f"close {event.code} {event.reason!r}" if event.reason else f"close {event.code}"
