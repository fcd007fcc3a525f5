"""The exceptions trio_ws raises.

Every error during the opening handshake is a :class:`HandshakeError`, so one
``except`` clause covers a refused upgrade, a broken TLS handshake and a
server that hung up; :class:`ConnectionClosed` covers everything afterwards.
"""

from __future__ import annotations

from .values import CloseReason


class ConnectionClosed(Exception):
    """The connection is closed, or closing; :attr:`reason` says why."""

    def __init__(self, reason: CloseReason) -> None:
        super().__init__(reason)
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r})"


class HandshakeError(Exception):
    """The opening handshake failed; ``__cause__`` holds the underlying error."""


class ConnectionRejected(HandshakeError):
    """The server answered the upgrade request with something other than 101."""

    def __init__(
        self, status_code: int, headers: list[tuple[bytes, bytes]], body: bytes | None
    ) -> None:
        super().__init__(f"server rejected WebSocket connection: HTTP {status_code}")
        self.status_code = status_code
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"{type(self).__name__}<status_code={self.status_code}>"


class ConnectionTimeout(HandshakeError):
    """The connection or its opening handshake took longer than allowed."""


class DisconnectionTimeout(Exception):
    """The closing handshake took longer than ``disconnect_timeout``."""
