"""Opening client connections.

``open_websocket*`` are async context managers that own the connection and
its background reader; ``connect_websocket*`` and ``wrap_client_stream`` run
the reader in a nursery you pass and leave closing to you. The keyword
arguments they share are documented once, in the reference under
"Connection options".
"""

from __future__ import annotations

import functools
import ssl
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import trio

from .close_codes import NORMAL_CLOSURE, leaving_code
from .connection import WebSocketConnection, close_connection, start_connection
from .core.deflate import NegotiationError, PerMessageDeflate
from .core.size_limit import MessageSizeLimit
from .exceptions import ConnectionTimeout, DisconnectionTimeout, HandshakeError
from .groups import one_error, only_cancelled
from .handshake import (
    check_extra_request_headers,
    check_request_line,
    check_subprotocols,
    client_handshake,
)
from .http import HeaderInput
from .options import (
    DEFAULT,
    STREAM_KEYWORDS,
    ConnectionKeywords,
    ConnectionOptions,
    DefaultType,
    StreamKeywords,
    connection_options,
)
from .transport import open_stream, proxy_from_environment
from .values import host_header

if sys.version_info >= (3, 11):  # resolvable at run time too, for the docs
    from typing import Unpack
elif TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "ClientKeywords",
    "connect_websocket",
    "connect_websocket_url",
    "open_websocket",
    "open_websocket_url",
    "wrap_client_stream",
]


class ClientKeywords(ConnectionKeywords, total=False):
    """The keyword arguments of the functions that open a client connection.

    The reference describes each once, under "Connection options".
    """

    subprotocols: Sequence[str] | None
    extra_headers: HeaderInput | None
    proxy: str | DefaultType | None
    unix_socket: str | None


CLIENT_KEYWORDS = frozenset(ClientKeywords.__annotations__)

Connect = Callable[[trio.Nursery], Awaitable[WebSocketConnection]]


def open_websocket(
    host: str,
    port: int,
    resource: str,
    *,
    use_ssl: bool | ssl.SSLContext,
    **options: Unpack[ClientKeywords],
) -> AbstractAsyncContextManager[WebSocketConnection]:
    """Open a connection to ``host:port`` for *resource*, and close it on exit.

    *use_ssl* is ``False`` for ``ws://``, ``True`` for ``wss://`` with a
    default, verifying TLS context, or an :class:`ssl.SSLContext` to use.
    *options* are described under :ref:`connection-options`; a bad one is a
    :class:`TypeError` or :class:`ValueError` from the call itself, as is a
    *resource* that is not visible ASCII (percent-encode the rest).

    Leaving the block closes the connection with 1000 (1011 if the block
    raised an exception, 1001 if it was cancelled or interrupted by Ctrl-C),
    waiting at most *disconnect_timeout* for the closing
    handshake; if that runs out and the block itself raised nothing,
    :class:`DisconnectionTimeout` is raised. Errors come out as themselves,
    never wrapped in an :class:`ExceptionGroup`.
    """
    return _OwnedConnection(_connector("open_websocket", host, port, resource, use_ssl, options))


def open_websocket_url(
    url: str,
    ssl_context: ssl.SSLContext | None = None,
    **options: Unpack[ClientKeywords],
) -> AbstractAsyncContextManager[WebSocketConnection]:
    """Like :func:`open_websocket`, for a ``ws://`` or ``wss://`` *url*.

    ``wss://`` URLs verify the server's certificate with a default context
    unless *ssl_context* is given.
    """
    host, port, resource, use_ssl = _parse_url(url, ssl_context)
    connect = _connector("open_websocket_url", host, port, resource, use_ssl, options)
    return _OwnedConnection(connect)


async def connect_websocket(
    nursery: trio.Nursery,
    host: str,
    port: int,
    resource: str,
    *,
    use_ssl: bool | ssl.SSLContext,
    **options: Unpack[ClientKeywords],
) -> WebSocketConnection:
    """Connect as :func:`open_websocket` does, running the reader in *nursery*.

    The caller must close the connection (``await connection.aclose()``).
    """
    return await _connector("connect_websocket", host, port, resource, use_ssl, options)(nursery)


async def connect_websocket_url(
    nursery: trio.Nursery,
    url: str,
    ssl_context: ssl.SSLContext | None = None,
    **options: Unpack[ClientKeywords],
) -> WebSocketConnection:
    """Like :func:`connect_websocket`, for a ``ws://`` or ``wss://`` *url*."""
    host, port, resource, use_ssl = _parse_url(url, ssl_context)
    connect = _connector("connect_websocket_url", host, port, resource, use_ssl, options)
    return await connect(nursery)


async def wrap_client_stream(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    host: str,
    resource: str,
    *,
    subprotocols: Sequence[str] | None = None,
    extra_headers: HeaderInput | None = None,
    **options: Unpack[StreamKeywords],
) -> WebSocketConnection:
    """Run the client handshake over an already connected *stream*.

    *host* is sent as the Host header (unless *extra_headers* has one).
    The reader runs in *nursery*; the connection owns *stream* from now on
    and the caller must close the connection. No timeout applies to the handshake: wrap the call in
    :func:`trio.fail_after` if you need one. *options* are described under
    :ref:`connection-options`.
    """
    checked = connection_options("wrap_client_stream", options, STREAM_KEYWORDS)
    check_request_line(host, resource)
    subprotocols = _check_request(subprotocols, extra_headers)
    return await _handshake(nursery, stream, host, resource, subprotocols, extra_headers, checked)


def check_client_keywords(
    function: str, keywords: ClientKeywords
) -> tuple[ConnectionOptions, list[str]]:
    """The connection options and the subprotocols that a client's *keywords* give.

    Everything is checked here, before any network traffic: an unknown
    keyword or a wrong type is a :class:`TypeError` naming it, a bad value a
    :class:`ValueError`.
    """
    options = connection_options(function, keywords, CLIENT_KEYWORDS)
    return options, _check_request(keywords.get("subprotocols"), keywords.get("extra_headers"))


# ------------------------------------------------------------------ internals


def _connector(
    function: str,
    host: str,
    port: int,
    resource: str,
    use_ssl: bool | ssl.SSLContext,
    keywords: ClientKeywords,
) -> Connect:
    """Check a call to *function*, and return the step that connects in a nursery."""
    options, subprotocols = check_client_keywords(function, keywords)
    check_request_line(host, resource)
    if not isinstance(use_ssl, (bool, ssl.SSLContext)):  # 1 would silently mean True
        kind = type(use_ssl).__name__
        raise TypeError(f"use_ssl must be True, False or an ssl.SSLContext, not {kind} {use_ssl!r}")
    return partial(
        _connect,
        host=host,
        port=port,
        resource=resource,
        use_ssl=use_ssl,
        subprotocols=subprotocols,
        extra_headers=keywords.get("extra_headers"),
        options=options,
        proxy=keywords.get("proxy", DEFAULT),
        unix_socket=keywords.get("unix_socket"),
    )


def _check_request(
    subprotocols: Sequence[str] | None, extra_headers: HeaderInput | None
) -> list[str]:
    """Check the upgrade request's arguments before any network: TypeError or ValueError."""
    check_extra_request_headers(extra_headers)
    return check_subprotocols(subprotocols)


def _parse_url(
    url: str, ssl_context: ssl.SSLContext | None
) -> tuple[str, int, str, bool | ssl.SSLContext]:
    if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
        kind = type(ssl_context).__name__
        raise TypeError(f"ssl_context must be an ssl.SSLContext or None, not {kind}")
    host, port, resource, is_ssl = _split_url(url)
    if ssl_context is not None and not is_ssl:
        raise ValueError(f"ssl_context was given for a ws:// URL; use wss:// for TLS: {url!r}")
    return host, port, resource, (ssl_context or True) if is_ssl else False


@functools.lru_cache(maxsize=256)
def _split_url(url: str) -> tuple[str, int, str, bool]:
    """Host, port, resource and whether TLS is used, for a ``ws://`` or ``wss://`` URL.

    Cached: clients open the same few URLs again and again, and urlsplit()
    caches only the split, not its ``hostname`` and ``port`` properties
    (about 2 µs of the 2.5 a parse costs). A bad URL raises each time.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"WebSocket URL scheme must be ws or wss: {url!r}")
    if not parts.hostname:
        raise ValueError(f"WebSocket URL has no host: {url!r}")
    is_ssl = parts.scheme == "wss"
    try:
        port = parts.port or (443 if is_ssl else 80)
    except ValueError as exc:  # not a number, or out of range
        raise ValueError(f"WebSocket URL has an invalid port ({exc}): {url!r}") from None
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, resource, is_ssl


async def _connect(
    nursery: trio.Nursery,
    host: str,
    port: int,
    resource: str,
    use_ssl: bool | ssl.SSLContext,
    subprotocols: Sequence[str] | None,
    extra_headers: HeaderInput | None,
    options: ConnectionOptions,
    proxy: str | DefaultType | None,
    unix_socket: str | None,
) -> WebSocketConnection:
    """TCP, TLS and the HTTP upgrade, together bounded by ``connect_timeout``.

    The arguments were checked by :func:`_connector`.
    """
    tls = None
    if use_ssl:
        tls = use_ssl if isinstance(use_ssl, ssl.SSLContext) else ssl.create_default_context()
    if isinstance(proxy, DefaultType):
        proxy = None if unix_socket else proxy_from_environment(host, tls is not None)
    # A bare cancel scope, not trio.fail_after(): that is a generator-based
    # context manager around the same scope, three contextlib calls more.
    with trio.CancelScope(relative_deadline=options.connect_timeout) as deadline:
        stream = await open_stream(host, port, tls, proxy=proxy, unix_socket=unix_socket)
        try:
            return await _handshake(
                nursery,
                stream,
                host_header(host, port, bool(use_ssl)),
                resource,
                subprotocols,
                extra_headers,
                options,
            )
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
    assert deadline.cancelled_caught  # the body returns or raises otherwise
    raise ConnectionTimeout(
        f"no WebSocket connection to {host}:{port} within {options.connect_timeout} s"
    )


async def _handshake(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    host: str,
    resource: str,
    subprotocols: Sequence[str] | None,
    extra_headers: HeaderInput | None,
    options: ConnectionOptions,
) -> WebSocketConnection:
    limit = MessageSizeLimit(options.max_message_size)
    deflate = (
        PerMessageDeflate(options.compression, limit, client=True) if options.compression else None
    )
    try:
        result = await client_handshake(
            stream,
            host=host,
            resource=resource,
            subprotocols=subprotocols,
            extra_headers=extra_headers,
            extension_offers=[deflate.offer()] if deflate else [],
            receive_size=options.receive_buffer_size,
        )
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise HandshakeError(f"connection lost during the opening handshake: {exc}") from exc
    _agree_extensions(result.extensions, deflate)
    connection = WebSocketConnection(
        stream,
        options,
        is_client=True,
        path=resource,
        subprotocol=result.subprotocol,
        handshake_headers=result.headers,
        trailing_data=result.trailing_data,
        size_limit=limit,
        deflate=deflate,
    )
    start_connection(connection, nursery)
    return connection


def _agree_extensions(answers: list[str], deflate: PerMessageDeflate | None) -> None:
    """Check the server's extension answer (RFC 7692 7.1): fail if invalid."""
    if not answers:
        return
    named = answers[0].split(";", 1)[0].strip().lower()
    if deflate is None or len(answers) > 1 or named != deflate.name:
        raise HandshakeError(f"server enabled extensions we did not offer: {answers}")
    try:
        deflate.finalize(answers[0])
    except NegotiationError as exc:
        raise HandshakeError(f"invalid permessage-deflate answer: {exc}") from exc


class _OwnedConnection:
    """Run *connect* in a private nursery, return its connection, close it on exit.

    A class rather than an ``asynccontextmanager`` generator: that costs a
    generator and three contextlib frames more per connection.

    Exceptions are caught inside the nursery and re-raised after it, so the
    caller sees the exception itself and not an ExceptionGroup around it; the
    only task in the nursery, the reader, never raises. When the caller's
    scope is cancelled, the nursery raises Cancelled on its way out: an
    exception the block raised meanwhile (say in a ``finally``) still wins,
    as it would without the nursery (the pattern of Trio issue 1559). A
    ``KeyboardInterrupt`` leaves the block as itself.
    """

    __slots__ = ("_connect", "_connection", "_nursery")

    def __init__(self, connect: Connect) -> None:
        self._connect = connect
        self._nursery: AbstractAsyncContextManager[trio.Nursery] | None = None

    async def __aenter__(self) -> WebSocketConnection:
        if self._nursery is not None:
            raise RuntimeError("a connection's context manager can be entered only once")
        self._nursery = trio.open_nursery()
        nursery = await self._nursery.__aenter__()
        try:
            self._connection = await self._connect(nursery)
        except BaseException as exc:
            await self._leave_nursery(exc)
            raise
        return self._connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        error = exc
        try:
            finished_in_time = await close_connection(
                self._connection, NORMAL_CLOSURE if exc is None else leaving_code(exc)
            )
        except BaseException as close_error:
            finished_in_time = True
            error = error or close_error
        await self._leave_nursery(error)
        if error is not None and error is not exc:
            raise error
        if error is None and not finished_in_time:
            raise DisconnectionTimeout("the closing handshake did not finish in time")
        # The block's own exception, if any, goes on as it is.

    async def _leave_nursery(self, error: BaseException | None) -> None:
        """Wait for the reader; raise what the nursery raises unless *error*
        is on its way and the nursery merely raised Cancelled (caller's scope)."""
        assert self._nursery is not None
        try:
            await self._nursery.__aexit__(None, None, None)
        except BaseException as exc:
            if error is None or not only_cancelled(exc):
                with one_error():
                    raise
