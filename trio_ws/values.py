"""Small immutable values that describe a connection."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import trio

from .close_codes import code_name


@dataclass(frozen=True)
class CloseReason:
    """Why a connection closed: a close code, its name and the peer's text.

    :attr:`code` is always a plain ``int`` and :attr:`reason` is ``None``
    when there is no text, whatever the protocol or the caller handed in, so
    values compare, print and pickle the same way everywhere.
    """

    code: int
    reason: str | None = None

    def __post_init__(self) -> None:
        # An IntEnum code becomes a plain int, and an empty reason None.
        if type(self.code) is not int:
            object.__setattr__(self, "code", int(self.code))
        if self.reason == "":
            object.__setattr__(self, "reason", None)

    @property
    def name(self) -> str:
        """The registered name of :attr:`code`, such as ``"NORMAL_CLOSURE"``.

        Codes without one are named by their range, as trio-websocket does:
        ``RFC_RESERVED``, ``IANA_RESERVED``, ``PRIVATE_RESERVED`` or
        ``INVALID_CODE``.
        """
        return code_name(self.code)

    def __repr__(self) -> str:
        # trio-websocket's format, which programs may log or match on.
        return f"CloseReason<code={self.code}, name={self.name}, reason={self.reason}>"

    def __str__(self) -> str:
        text = f"{self.code}/{self.name}"
        return f"{text} ({self.reason})" if self.reason else text


def format_host(host: str) -> str:
    """Bracket an IPv6 literal so it can stand before ``:port`` in a URL."""
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host


def host_header(host: str, port: int, is_ssl: bool) -> str:
    """*host* as in a Host header: IPv6 literals bracketed, default ports left out."""
    default = 443 if is_ssl else 80
    return format_host(host) if port == default else f"{format_host(host)}:{port}"


@dataclass(frozen=True)
class Endpoint:
    """One end of a connection: its address, port and whether TLS is used.

    :attr:`address` is a string (an IP address, or a unix socket's path with
    port 0).
    """

    address: str
    port: int
    is_ssl: bool

    def __repr__(self) -> str:
        # trio-websocket's format (it has no separate str either).
        return f'Endpoint(address="{self.address}", port={self.port}, is_ssl={self.is_ssl})'

    @property
    def url(self) -> str:
        """The endpoint as a ``ws://`` or ``wss://`` URL, omitting default ports."""
        scheme = "wss" if self.is_ssl else "ws"
        return f"{scheme}://{host_header(self.address, self.port, self.is_ssl)}"


def address_endpoint(address: Any, is_ssl: bool) -> Endpoint:
    """The :class:`Endpoint` for a socket address: ``(host, port, ...)`` or a unix path."""
    if isinstance(address, tuple):
        return Endpoint(str(address[0]), int(address[1]), is_ssl)
    return Endpoint(str(address), 0, is_ssl)


def socket_endpoints(stream: trio.abc.Stream) -> tuple[Endpoint | str, Endpoint | str]:
    """The local and remote :class:`Endpoint` of a (TLS over) socket stream.

    A stream that is not a socket, such as Trio's memory streams, is
    described by its ``repr()`` on both sides, as trio-websocket does; so is
    the remote side of a socket whose peer has already gone.
    """
    is_ssl = isinstance(stream, trio.SSLStream)
    transport = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    sock = getattr(transport, "socket", None)
    if sock is None:
        return repr(stream), repr(stream)
    local = address_endpoint(sock.getsockname(), is_ssl)
    try:
        return local, address_endpoint(sock.getpeername(), is_ssl)
    except OSError:
        return local, repr(stream)
