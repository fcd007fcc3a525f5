"""Plain HTTP requests and responses, as the server's request hook sees them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .values import Endpoint


@dataclass(frozen=True)
class HTTPRequest:
    """An HTTP request head, before any WebSocket upgrade.

    Header names are lowercase bytes, values bytes, in the order received.
    """

    method: str
    path: str
    http_version: str
    headers: list[tuple[bytes, bytes]]
    remote: Endpoint | None = None
    _trailing_data: bytes = field(default=b"", repr=False)

    def header(self, name: str) -> str | None:
        """The first value of header *name* (any case) as text, or ``None``."""
        key = name.lower().encode("latin-1")
        for n, value in self.headers:
            if n == key:
                return value.decode("latin-1")
        return None


@dataclass(frozen=True)
class HTTPResponse:
    """A plain HTTP answer a request hook sends instead of upgrading.

    ``Content-Length`` and ``Connection: close`` are added; the server
    closes the connection after sending it.
    """

    status_code: int
    headers: Sequence[tuple[bytes | str, bytes | str]] = ()
    body: bytes = b""
