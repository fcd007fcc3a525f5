"""Plain HTTP requests and responses, as the server's request hook sees them.

The helpers here also serve :class:`~trio_ws.WebSocketRequest`, so that a
header or a query parameter is read the same way before and after the hook.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .values import Endpoint

#: Headers as users give them: a mapping or a sequence of ``(name, value)``
#: pairs, names and values ``str`` or ``bytes``; a ``None`` value means "do
#: not send this header" (say, a default ``User-Agent`` or ``Server``).
HeaderInput = (
    Mapping[str, bytes | str | None]
    | Mapping[bytes, bytes | str | None]
    | Sequence[tuple[bytes | str, bytes | str | None]]
)


def header_value(headers: Sequence[tuple[bytes, bytes]], name: str) -> str | None:
    """The first value of header *name* (any case) in *headers*, as text, or ``None``."""
    key = name.lower().encode("latin-1")
    for n, value in headers:
        if n == key:
            return value.decode("latin-1")
    return None


def query_params(target: str) -> dict[str, str]:
    """The query string of request *target* as ``{name: first value}``.

    Parameters without a value (``?flag``) map to ``""``; a repeated
    parameter keeps its first value.
    """
    params: dict[str, str] = {}
    for name, value in parse_qsl(urlsplit(target).query, keep_blank_values=True):
        params.setdefault(name, value)
    return params


@dataclass(frozen=True)
class HTTPRequest:
    """An HTTP request head, before any WebSocket upgrade.

    Header names are lowercase bytes, values bytes, in the order received.
    :attr:`state` starts empty: the request hook may store what it learnt
    there (say, the authenticated user), and the handler finds the same dict
    as :attr:`WebSocketRequest.state <trio_ws.WebSocketRequest.state>`.
    """

    method: str
    path: str
    http_version: str
    headers: list[tuple[bytes, bytes]]
    remote: Endpoint | str | None = None
    #: Bytes that came after the head in the same read: the first WebSocket
    #: frames, which the connection reads before the socket.
    trailing_data: bytes = field(default=b"", repr=False)
    #: Per-request data handed from the request hook to the handler.
    state: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def header(self, name: str) -> str | None:
        """The first value of header *name* (any case) as text, or ``None``."""
        return header_value(self.headers, name)

    @property
    def query(self) -> dict[str, str]:
        """The query parameters of :attr:`path`, each with its first value.

        For every value of a repeated parameter, use
        ``urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)``.
        """
        return query_params(self.path)


@dataclass(frozen=True)
class HTTPResponse:
    """A plain HTTP answer a request hook sends instead of upgrading.

    ``Content-Length`` and ``Connection: close`` are added; the server
    closes the connection after sending it. *headers* take the same forms
    as ``extra_headers`` elsewhere: a mapping or ``(name, value)`` pairs.
    """

    status_code: int
    headers: HeaderInput = ()
    body: bytes = b""
