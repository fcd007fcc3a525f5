"""Serving WebSocket endpoints.

Each accepted TCP (or TLS) connection runs in its own task: read the upgrade
request within ``connect_timeout``, hand a :class:`WebSocketRequest` to the
handler, and close the connection when the handler returns. Nothing one
connection does (a bad request, a slow handshake, a handler that raises) can
reach another connection or the server itself.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import trio

from .close_codes import ABNORMAL_CLOSURE, INTERNAL_ERROR, NORMAL_CLOSURE
from .compression import NAME, DeflateOptions, PerMessageDeflate
from .connection import WebSocketConnection
from .exceptions import ConnectionClosed, HandshakeError
from .handshake import (
    BadRequest,
    HeaderInput,
    Headers,
    PeerGone,
    UpgradeRequest,
    acceptance,
    normalize_headers,
    read_upgrade_request,
    rejection,
)
from .options import (
    DEFAULT_COMPRESSION,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DISCONNECT_TIMEOUT,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MESSAGE_QUEUE_SIZE,
    DEFAULT_PING_INTERVAL,
    DEFAULT_PING_TIMEOUT,
    DEFAULT_RECEIVE_BUFFER_SIZE,
    ConnectionOptions,
)
from .size_limit import MessageSizeLimit
from .values import CloseReason, Endpoint, socket_endpoints

__all__ = ["WebSocketRequest", "WebSocketServer", "serve_websocket", "wrap_server_stream"]

logger = logging.getLogger("trio_ws.server")

Handler = Callable[["WebSocketRequest"], Awaitable[object]]

#: The answer to a request that the handler neither accepted nor rejected.
UNDECIDED_STATUS = 403
#: The answer to a request whose handler raised before deciding.
HANDLER_ERROR_STATUS = 500


class WebSocketRequest:
    """A client's upgrade request, waiting for the handler to decide.

    Call :meth:`accept` to complete the handshake or :meth:`reject` to answer
    with an HTTP error. A handler that returns without deciding has the
    request rejected with 403; one that raises first, with 500.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        stream: trio.abc.Stream,
        upgrade: UpgradeRequest,
        options: ConnectionOptions,
    ) -> None:
        self._nursery = nursery
        self._stream = stream
        self._upgrade = upgrade
        self._options = options
        self._local, self._remote = socket_endpoints(stream)
        self._connection: WebSocketConnection | None = None
        self._decided = False

    @property
    def path(self) -> str:
        """The request target, such as ``/chat?room=1``."""
        return self._upgrade.target

    @property
    def headers(self) -> Headers:
        """All request headers as ``(lowercase name, value)`` byte pairs."""
        return self._upgrade.headers

    @property
    def proposed_subprotocols(self) -> tuple[str, ...]:
        """The subprotocols the client offered, in its order of preference."""
        return tuple(self._upgrade.subprotocols)

    @property
    def local(self) -> Endpoint | None:
        """The server's address for this connection."""
        return self._local

    @property
    def remote(self) -> Endpoint | None:
        """The client's address."""
        return self._remote

    def _decide(self) -> None:
        if self._decided:
            raise RuntimeError("this request has already been accepted or rejected")
        self._decided = True

    async def accept(
        self, *, subprotocol: str | None = None, extra_headers: HeaderInput | None = None
    ) -> WebSocketConnection:
        """Complete the handshake and return the open connection.

        *subprotocol* must be one of :attr:`proposed_subprotocols` (or
        ``None``). The connection is closed when the handler returns.
        """
        if subprotocol is not None and subprotocol not in self._upgrade.subprotocols:
            raise ValueError(f"the client did not propose subprotocol {subprotocol!r}")
        headers = normalize_headers(extra_headers)
        self._decide()
        limit = MessageSizeLimit(self._options.max_message_size)
        deflate, answer = _negotiate(self._upgrade.extensions, self._options.compression, limit)
        try:
            await self._stream.send_all(acceptance(self._upgrade, subprotocol, answer, headers))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionClosed(CloseReason(ABNORMAL_CLOSURE, None)) from exc
        self._connection = WebSocketConnection(
            self._stream,
            self._options,
            is_client=False,
            path=self._upgrade.target,
            subprotocol=subprotocol,
            handshake_headers=self._upgrade.headers,
            trailing_data=self._upgrade.trailing_data,
            size_limit=limit,
            deflate=deflate,
        )
        self._nursery.start_soon(self._connection._run)
        return self._connection

    async def reject(
        self,
        status_code: int,
        *,
        extra_headers: HeaderInput | None = None,
        body: bytes | None = None,
    ) -> None:
        """Answer with HTTP *status_code* (and *body*), then close the connection."""
        if not 100 <= status_code <= 599 or status_code == 101:
            raise ValueError(f"cannot reject with HTTP status {status_code}")
        headers = normalize_headers(extra_headers)
        self._decide()
        await _answer_and_close(
            self._stream, rejection(status_code, headers, body or b""), self._options
        )


def _negotiate(
    offers: list[str], options: DeflateOptions | None, limit: MessageSizeLimit
) -> tuple[PerMessageDeflate | None, str | None]:
    """Accept the client's first acceptable permessage-deflate offer, if any.

    RFC 7692 section 5: an offer the server cannot accept as it stands (an
    unknown or repeated parameter, an invalid value) is declined, not failed.
    """
    if options is None:
        return None, None
    for offer in offers:
        if offer.split(";", 1)[0].strip().lower() != NAME:
            continue
        deflate = PerMessageDeflate(options, limit, client=False)
        params = deflate.accept(offer)
        if params is not None:
            return deflate, f"{NAME}; {params}" if params else NAME
    return None, None


async def _answer_and_close(
    stream: trio.abc.Stream, answer: bytes, options: ConnectionOptions
) -> None:
    """Send a final HTTP answer and close, bounded by ``disconnect_timeout``."""
    with trio.move_on_after(options.disconnect_timeout):
        try:
            await stream.send_all(answer)
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    await trio.aclose_forcefully(stream)


async def _receive_request(
    nursery: trio.Nursery, stream: trio.abc.Stream, options: ConnectionOptions
) -> WebSocketRequest:
    """Read the upgrade request; answer a bad one, close and raise HandshakeError."""
    try:
        upgrade = await read_upgrade_request(stream, options.receive_buffer_size)
    except BadRequest as exc:
        answer = rejection(exc.status, exc.headers, f"{exc}\n".encode())
        await _answer_and_close(stream, answer, options)
        raise HandshakeError(f"invalid upgrade request ({exc.status}): {exc}") from exc
    except (PeerGone, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        await trio.aclose_forcefully(stream)
        raise HandshakeError("client left before completing its request") from exc
    return WebSocketRequest(nursery, stream, upgrade, options)


class WebSocketServer:
    """Serves WebSocket connections on one or more Trio listeners.

    Most programs use :func:`serve_websocket`; create this directly to serve
    on listeners you made yourself, then ``await nursery.start(server.run)``.
    """

    def __init__(
        self,
        handler: Handler,
        listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
        *,
        handler_nursery: trio.Nursery | None = None,
        message_queue_size: int = DEFAULT_MESSAGE_QUEUE_SIZE,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT,
        compression: DeflateOptions | None = DEFAULT_COMPRESSION,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
    ) -> None:
        if not listeners:
            raise ValueError("a WebSocketServer needs at least one listener")
        self._handler = handler
        self._listeners = list(listeners)
        self._handler_nursery = handler_nursery
        self._options = ConnectionOptions(
            message_queue_size,
            max_message_size,
            receive_buffer_size,
            connect_timeout,
            disconnect_timeout,
            compression=compression,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
        )

    @property
    def listeners(self) -> list[Endpoint | str]:
        """Where the server listens: an :class:`Endpoint` per socket listener."""
        result: list[Endpoint | str] = []
        for listener in self._listeners:
            if isinstance(listener, trio.SSLListener):
                sock_listener, is_ssl = listener.transport_listener, True
            else:
                sock_listener, is_ssl = listener, False
            sock = getattr(sock_listener, "socket", None)
            if sock is None:
                result.append(repr(listener))
                continue
            address = sock.getsockname()
            if isinstance(address, tuple):
                result.append(Endpoint(str(address[0]), int(address[1]), is_ssl))
            else:
                result.append(Endpoint(str(address), 0, is_ssl))
        return result

    @property
    def port(self) -> int:
        """The port the server listens on; all its socket listeners must share it."""
        ports = {e.port for e in self.listeners if isinstance(e, Endpoint)}
        if len(ports) != 1:
            raise RuntimeError(f"server listens on {len(ports)} ports, not one: {sorted(ports)}")
        return ports.pop()

    async def run(
        self, *, task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; ``task_status.started`` receives the server."""
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(
                    trio.serve_listeners,
                    self._serve_stream,
                    self._listeners,
                    handler_nursery=self._handler_nursery,
                )
            )
            task_status.started(self)

    async def _serve_stream(self, stream: trio.abc.Stream) -> None:
        async with trio.open_nursery() as nursery:  # holds this connection's reader
            request = None
            with trio.move_on_after(self._options.connect_timeout):
                try:
                    request = await _receive_request(nursery, stream, self._options)
                except HandshakeError as exc:
                    logger.debug("%s", exc)
                    return
            if request is None:
                logger.debug("dropping a client that did not finish its handshake in time")
                await trio.aclose_forcefully(stream)
                return
            await self._run_handler(request)

    async def _run_handler(self, request: WebSocketRequest) -> None:
        code = NORMAL_CLOSURE
        try:
            await self._handler(request)
        except ConnectionClosed as exc:
            logger.debug("handler ended by closed connection: %s", exc.reason)
        except Exception:
            logger.exception("WebSocket handler for %s failed", request.path)
            code = INTERNAL_ERROR
        finally:
            if request._connection is not None:
                await request._connection._close(code, None)
            elif not request._decided:
                request._decided = True
                status = UNDECIDED_STATUS if code == NORMAL_CLOSURE else HANDLER_ERROR_STATUS
                await _answer_and_close(request._stream, rejection(status, [], b""), self._options)


async def serve_websocket(
    handler: Handler,
    host: str | bytes | None,
    port: int,
    ssl_context: ssl.SSLContext | None,
    *,
    handler_nursery: trio.Nursery | None = None,
    message_queue_size: int = DEFAULT_MESSAGE_QUEUE_SIZE,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT,
    compression: DeflateOptions | None = DEFAULT_COMPRESSION,
    ping_interval: float | None = DEFAULT_PING_INTERVAL,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on *host*:*port* and serve each connection with *handler*.

    Use it as ``server = await nursery.start(serve_websocket, handler, host,
    port, ssl_context)``; port 0 picks a free port (see ``server.port``).
    *ssl_context* serves ``wss://``; ``None`` serves plain ``ws://``. The
    handler is called with a :class:`WebSocketRequest` for every valid
    upgrade request. If it raises, the error is logged, that connection is
    closed with 1011 (or answered with 500 before acceptance) and the server
    goes on. Errors opening the listeners are raised as themselves.
    """
    if ssl_context is None:
        listeners: Sequence[trio.abc.Listener[trio.abc.Stream]] = await trio.open_tcp_listeners(
            port, host=host
        )
    else:
        listeners = await trio.open_ssl_over_tcp_listeners(
            port, ssl_context, host=host, https_compatible=True
        )
    server = WebSocketServer(
        handler,
        listeners,
        handler_nursery=handler_nursery,
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
        connect_timeout=connect_timeout,
        disconnect_timeout=disconnect_timeout,
        compression=compression,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    )
    await server.run(task_status=task_status)


async def wrap_server_stream(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    message_queue_size: int = DEFAULT_MESSAGE_QUEUE_SIZE,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    *,
    disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT,
    compression: DeflateOptions | None = DEFAULT_COMPRESSION,
    ping_interval: float | None = DEFAULT_PING_INTERVAL,
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT,
) -> WebSocketRequest:
    """Read an upgrade request from *stream* and return it, undecided.

    A request that is not a valid upgrade is answered with the right HTTP
    error, *stream* is closed and :class:`HandshakeError` is raised. The
    accepted connection's reader runs in *nursery*; the caller must close
    the connection. No timeout applies: wrap the call in
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
    return await _receive_request(nursery, stream, options)
