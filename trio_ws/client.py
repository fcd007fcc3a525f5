"""Opening client connections.

``open_websocket*`` are async context managers that own the connection and
its background reader; ``connect_websocket*`` and ``wrap_client_stream`` run
the reader in a nursery you pass and leave closing to you. The keyword
arguments they share are documented once, in the reference under
"Connection options".
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from urllib.parse import urlsplit

import trio

from .close_codes import NORMAL_CLOSURE, leaving_code
from .connection import WebSocketConnection, close_connection, start_connection
from .core.deflate import NegotiationError, PerMessageDeflate
from .core.size_limit import MessageSizeLimit
from .exceptions import ConnectionTimeout, DisconnectionTimeout, HandshakeError
from .groups import one_error, only_cancelled
from .handshake import check_subprotocols, client_handshake, normalize_headers
from .http import HeaderInput
from .options import (
    DEFAULT,
    DEFAULT_COMPRESSION,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DISCONNECT_TIMEOUT,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MESSAGE_QUEUE_SIZE,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_RECEIVE_BUFFER_SIZE,
    ConnectionOptions,
    DeflateOptions,
    _Default,
)
from .transport import open_stream, proxy_from_environment
from .values import host_header

__all__ = [
    "connect_websocket",
    "connect_websocket_url",
    "open_websocket",
    "open_websocket_url",
    "wrap_client_stream",
]


@asynccontextmanager
async def open_websocket(
    host: str,
    port: int,
    resource: str,
    *,
    use_ssl: bool | ssl.SSLContext,
    subprotocols: Sequence[str] | None = None,
    extra_headers: HeaderInput | None = None,
    message_queue_size: int = DEFAULT_MESSAGE_QUEUE_SIZE,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT,
    compression: DeflateOptions | None = DEFAULT_COMPRESSION,
    ping_interval: float | None = DEFAULT_PING_INTERVAL,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
    proxy: str | _Default | None = DEFAULT,
    unix_socket: str | None = None,
) -> AsyncIterator[WebSocketConnection]:
    """Open a connection to ``host:port`` for *resource*, and close it on exit.

    *use_ssl* is ``False`` for ``ws://``, ``True`` for ``wss://`` with a
    default, verifying TLS context, or an :class:`ssl.SSLContext` to use.

    Leaving the block closes the connection with 1000 (1011 if the block
    raised an exception, 1001 if it was cancelled or interrupted by Ctrl-C),
    waiting at most *disconnect_timeout* for the closing
    handshake; if that runs out and the block itself raised nothing,
    :class:`DisconnectionTimeout` is raised. Errors come out as themselves,
    never wrapped in an :class:`ExceptionGroup`.
    """
    options = ConnectionOptions(
        message_queue_size,
        max_message_size,
        receive_buffer_size,
        connect_timeout,
        disconnect_timeout,
        compression=compression,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    )

    async def connect(nursery: trio.Nursery) -> WebSocketConnection:
        return await _connect(
            nursery,
            host,
            port,
            resource,
            use_ssl,
            subprotocols,
            extra_headers,
            options,
            proxy,
            unix_socket,
        )

    async with _owned_connection(connect) as connection:
        yield connection


def open_websocket_url(
    url: str,
    ssl_context: ssl.SSLContext | None = None,
    *,
    subprotocols: Sequence[str] | None = None,
    extra_headers: HeaderInput | None = None,
    message_queue_size: int = DEFAULT_MESSAGE_QUEUE_SIZE,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT,
    compression: DeflateOptions | None = DEFAULT_COMPRESSION,
    ping_interval: float | None = DEFAULT_PING_INTERVAL,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
    proxy: str | _Default | None = DEFAULT,
    unix_socket: str | None = None,
) -> AbstractAsyncContextManager[WebSocketConnection]:
    """Like :func:`open_websocket`, for a ``ws://`` or ``wss://`` *url*.

    ``wss://`` URLs verify the server's certificate with a default context
    unless *ssl_context* is given.
    """
    host, port, resource, use_ssl = _parse_url(url, ssl_context)
    return open_websocket(
        host,
        port,
        resource,
        use_ssl=use_ssl,
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
        connect_timeout=connect_timeout,
        disconnect_timeout=disconnect_timeout,
        compression=compression,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        proxy=proxy,
        unix_socket=unix_socket,
    )


async def connect_websocket(
    nursery: trio.Nursery,
    host: str,
    port: int,
    resource: str,
    *,
    use_ssl: bool | ssl.SSLContext,
    subprotocols: Sequence[str] | None = None,
    extra_headers: HeaderInput | None = None,
    message_queue_size: int = DEFAULT_MESSAGE_QUEUE_SIZE,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT,
    compression: DeflateOptions | None = DEFAULT_COMPRESSION,
    ping_interval: float | None = DEFAULT_PING_INTERVAL,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
    proxy: str | _Default | None = DEFAULT,
    unix_socket: str | None = None,
) -> WebSocketConnection:
    """Connect as :func:`open_websocket` does, running the reader in *nursery*.

    The caller must close the connection (``await connection.aclose()``).
    """
    options = ConnectionOptions(
        message_queue_size,
        max_message_size,
        receive_buffer_size,
        connect_timeout,
        disconnect_timeout,
        compression=compression,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    )
    return await _connect(
        nursery,
        host,
        port,
        resource,
        use_ssl,
        subprotocols,
        extra_headers,
        options,
        proxy,
        unix_socket,
    )


async def connect_websocket_url(
    nursery: trio.Nursery,
    url: str,
    ssl_context: ssl.SSLContext | None = None,
    *,
    subprotocols: Sequence[str] | None = None,
    extra_headers: HeaderInput | None = None,
    message_queue_size: int = DEFAULT_MESSAGE_QUEUE_SIZE,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT,
    compression: DeflateOptions | None = DEFAULT_COMPRESSION,
    ping_interval: float | None = DEFAULT_PING_INTERVAL,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
    proxy: str | _Default | None = DEFAULT,
    unix_socket: str | None = None,
) -> WebSocketConnection:
    """Like :func:`connect_websocket`, for a ``ws://`` or ``wss://`` *url*."""
    host, port, resource, use_ssl = _parse_url(url, ssl_context)
    options = ConnectionOptions(
        message_queue_size,
        max_message_size,
        receive_buffer_size,
        connect_timeout,
        disconnect_timeout,
        compression=compression,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    )
    return await _connect(
        nursery,
        host,
        port,
        resource,
        use_ssl,
        subprotocols,
        extra_headers,
        options,
        proxy,
        unix_socket,
    )


async def wrap_client_stream(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    host: str,
    resource: str,
    *,
    subprotocols: Sequence[str] | None = None,
    extra_headers: HeaderInput | None = None,
    message_queue_size: int = DEFAULT_MESSAGE_QUEUE_SIZE,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT,
    compression: DeflateOptions | None = DEFAULT_COMPRESSION,
    ping_interval: float | None = DEFAULT_PING_INTERVAL,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
) -> WebSocketConnection:
    """Run the client handshake over an already connected *stream*.

    *host* is sent as the Host header. The reader runs in *nursery*; the
    connection owns *stream* from now on and the caller must close the
    connection. No timeout applies to the handshake: wrap the call in
    :func:`trio.fail_after` if you need one.
    """
    options = ConnectionOptions(
        message_queue_size,
        max_message_size,
        receive_buffer_size,
        disconnect_timeout=disconnect_timeout,
        compression=compression,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    )
    subprotocols = _check_request(subprotocols, extra_headers)
    return await _handshake(nursery, stream, host, resource, subprotocols, extra_headers, options)


# ------------------------------------------------------------------ internals


def _check_request(
    subprotocols: Sequence[str] | None, extra_headers: HeaderInput | None
) -> list[str]:
    """Check the upgrade request's arguments before any network: TypeError or ValueError."""
    normalize_headers(extra_headers)
    return check_subprotocols(subprotocols)


def _parse_url(
    url: str, ssl_context: ssl.SSLContext | None
) -> tuple[str, int, str, bool | ssl.SSLContext]:
    if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
        kind = type(ssl_context).__name__
        raise TypeError(f"ssl_context must be an ssl.SSLContext or None, not {kind}")
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"WebSocket URL scheme must be ws or wss: {url!r}")
    if not parts.hostname:
        raise ValueError(f"WebSocket URL has no host: {url!r}")
    is_ssl = parts.scheme == "wss"
    if ssl_context is not None and not is_ssl:
        raise ValueError(f"ssl_context was given for a ws:// URL; use wss:// for TLS: {url!r}")
    try:
        port = parts.port or (443 if is_ssl else 80)
    except ValueError as exc:  # not a number, or out of range
        raise ValueError(f"WebSocket URL has an invalid port ({exc}): {url!r}") from None
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    use_ssl: bool | ssl.SSLContext = (ssl_context or True) if is_ssl else False
    return parts.hostname, port, resource, use_ssl


async def _connect(
    nursery: trio.Nursery,
    host: str,
    port: int,
    resource: str,
    use_ssl: bool | ssl.SSLContext,
    subprotocols: Sequence[str] | None,
    extra_headers: HeaderInput | None,
    options: ConnectionOptions,
    proxy: str | _Default | None,
    unix_socket: str | None,
) -> WebSocketConnection:
    """TCP, TLS and the HTTP upgrade, together bounded by ``connect_timeout``."""
    subprotocols = _check_request(subprotocols, extra_headers)
    if not isinstance(use_ssl, (bool, ssl.SSLContext)):  # 1 would silently mean True
        kind = type(use_ssl).__name__
        raise TypeError(f"use_ssl must be True, False or an ssl.SSLContext, not {kind} {use_ssl!r}")
    tls = None
    if use_ssl:
        tls = use_ssl if isinstance(use_ssl, ssl.SSLContext) else ssl.create_default_context()
    if isinstance(proxy, _Default):
        proxy = None if unix_socket else proxy_from_environment(host, tls is not None)
    try:
        with trio.fail_after(options.connect_timeout):
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
    except trio.TooSlowError:
        raise ConnectionTimeout(
            f"no WebSocket connection to {host}:{port} within {options.connect_timeout} s"
        ) from None


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


@asynccontextmanager
async def _owned_connection(
    connect: Callable[[trio.Nursery], Awaitable[WebSocketConnection]],
) -> AsyncIterator[WebSocketConnection]:
    """Run *connect* in a private nursery, yield its connection, close it.

    Exceptions are caught inside the nursery and re-raised after it, so the
    caller sees the exception itself and not an ExceptionGroup around it; the
    only task in the nursery, the reader, never raises. When the caller's
    scope is cancelled, the nursery raises Cancelled on its way out: an
    exception the block raised meanwhile (say in a ``finally``) still wins,
    as it would without the nursery (the pattern of Trio issue 1559). A
    ``KeyboardInterrupt`` leaves the block as itself.
    """
    error: BaseException | None = None
    finished_in_time = True
    with one_error():
        try:
            async with trio.open_nursery() as nursery:
                try:
                    connection = await connect(nursery)
                except BaseException as exc:
                    error = exc
                else:
                    code = NORMAL_CLOSURE
                    try:
                        yield connection
                    except BaseException as exc:
                        error = exc
                        code = leaving_code(exc)
                    try:
                        finished_in_time = await close_connection(connection, code)
                    except BaseException as exc:
                        error = error or exc
        except BaseException as exc:
            if error is None or not only_cancelled(exc):
                raise
            # Cancelled by the caller's scope: the block's own error goes on.
    if error is not None:
        raise error
    if not finished_in_time:
        raise DisconnectionTimeout("the closing handshake did not finish in time")
