"""The exceptions trio_ws raises.

Every error during the opening handshake is a :class:`HandshakeError`, so one
``except`` clause covers a refused upgrade, a broken TLS handshake and a
server that hung up; :class:`ConnectionClosed` covers everything afterwards.

Each exception keeps its constructor arguments in ``args``, so that it
survives :func:`copy.copy` and :mod:`pickle` (programs hand exceptions to
other threads, processes and log handlers) with its attributes.
"""

from __future__ import annotations

from .close_codes import NORMAL_CODES
from .values import CloseReason


class ConnectionClosed(Exception):
    """The connection is closed, or closing; :attr:`reason` says why.

    Like :class:`OSError` with its errno subclasses, constructing one gives
    the subclass that fits the code: :class:`ConnectionClosedOK` for a
    normal close, :class:`ConnectionClosedError` otherwise, so
    ``except ConnectionClosed`` still catches both.
    """

    def __new__(cls, reason: CloseReason) -> ConnectionClosed:
        if cls is ConnectionClosed:
            normal = getattr(reason, "code", None) in NORMAL_CODES
            cls = ConnectionClosedOK if normal else ConnectionClosedError
        return super().__new__(cls, reason)

    def __init__(self, reason: CloseReason) -> None:
        super().__init__(reason)
        #: The :class:`CloseReason`: code, name and the peer's text.
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r})"


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally: 1000, 1001 or 1005 (a Close frame without code).

    These are the codes that end ``async for message in ws`` quietly.
    """


class ConnectionClosedError(ConnectionClosed):
    """The connection closed with an error code, or was lost (1006)."""


class MessageTypeError(TypeError):
    """:meth:`~trio_ws.WebSocketConnection.get_text` got binary, or
    :meth:`~trio_ws.WebSocketConnection.get_bytes` got text.

    The message is not lost: it is :attr:`message`. The connection stays
    open; a program that cannot use the message may close it with code 1003
    (``await ws.aclose(1003)``, "unsupported data").
    """

    def __init__(self, message: str | bytes, expected: type[str] | type[bytes]) -> None:
        super().__init__(message, expected)
        #: The message that arrived, whole.
        self.message = message
        #: The type the caller asked for, ``str`` or ``bytes``.
        self.expected = expected

    def __str__(self) -> str:
        if isinstance(self.message, str):
            return f"expected a binary message, got text of {len(self.message)} characters"
        return f"expected a text message, got {len(self.message)} bytes of binary"


class HandshakeError(Exception):
    """The opening handshake failed; ``__cause__`` holds the underlying error."""


class ConnectionRejected(HandshakeError):
    """The server answered the upgrade request with something other than 101.

    That includes informational answers such as 100: an upgrade is answered
    with 101 or not at all.
    """

    def __init__(
        self, status_code: int, headers: list[tuple[bytes, bytes]], body: bytes | None
    ) -> None:
        super().__init__(status_code, headers, body)
        #: The HTTP status of the answer.
        self.status_code = status_code
        #: The answer's headers as ``(lowercase name, value)`` byte pairs.
        self.headers = headers
        #: The answer's body (at most 64 KiB of it), or ``None`` if it had none.
        self.body = body

    def __str__(self) -> str:
        return f"server rejected WebSocket connection: HTTP {self.status_code}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}<status_code={self.status_code}>"


class ConnectionTimeout(HandshakeError):
    """The connection or its opening handshake took longer than allowed."""


class DisconnectionTimeout(HandshakeError):
    """The closing handshake took longer than ``disconnect_timeout``.

    A :class:`HandshakeError`, as in trio-websocket: the closing handshake
    is a handshake too.
    """
