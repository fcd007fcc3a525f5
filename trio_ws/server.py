"""Serving WebSocket endpoints.

Each accepted TCP (or TLS) connection runs in its own task: read the upgrade
request within ``connect_timeout``, hand a :class:`WebSocketRequest` to the
handler, and close the connection when the handler returns. Nothing one
connection does (a bad request, a slow handshake, a handler that raises) can
reach another connection or the server itself.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import ssl
import stat
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import trio

from .close_codes import GOING_AWAY, INTERNAL_ERROR, NORMAL_CLOSURE, check_sendable
from .connection import WebSocketConnection, connection_logger
from .exceptions import ConnectionClosed, HandshakeError
from .groups import one_error
from .http import HTTPRequest, HTTPResponse
from .listeners import accept_forever, listen_on, open_reuse_port_listeners
from .options import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MESSAGE_QUEUE_SIZE,
    DEFAULT_RECEIVE_BUFFER_SIZE,
    DEFAULT_SERVER_HEADER,
    DEFAULT_SHUTDOWN_TIMEOUT,
    STREAM_KEYWORDS,
    ConnectionKeywords,
    SessionKeywords,
    connection_options,
)
from .request import (
    HANDLER_ERROR_STATUS,
    UNDECIDED_STATUS,
    RequestOutcome,
    SubprotocolChoice,
    WebSocketRequest,
    receive_request,
    server_headers,
    server_subprotocols,
)
from .values import Endpoint, address_endpoint

if sys.version_info >= (3, 11):  # resolvable at run time too, for the docs
    from typing import Unpack
elif TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "ServerKeywords",
    "WebSocketRequest",
    "WebSocketServer",
    "serve_websocket",
    "wrap_server_stream",
]

logger = logging.getLogger("trio_ws.server")

Handler = Callable[[WebSocketRequest], Awaitable[object]]
#: Sees every HTTP request first; returns a response to send instead of
#: going on with the upgrade, or None to go on.
RequestHook = Callable[[HTTPRequest], Awaitable[HTTPResponse | None]]


class ServerKeywords(ConnectionKeywords, total=False):
    """The keyword arguments of :class:`WebSocketServer` (and :func:`serve_websocket`).

    The reference describes each once, under "Connection options".
    """

    handler_nursery: trio.Nursery | None
    request_hook: RequestHook | None
    origins: Sequence[str | None] | None
    max_connections: int | None
    subprotocols: SubprotocolChoice | None
    server_header: str | None


SERVER_KEYWORDS = frozenset(ServerKeywords.__annotations__)


class WebSocketServer:
    """Serves WebSocket connections on one or more Trio listeners.

    Most programs use :func:`serve_websocket`; create this directly to serve
    on listeners you made yourself, then ``await nursery.start(server.run)``.
    *options* are described under :ref:`connection-options`.
    """

    def __init__(
        self,
        handler: Handler,
        listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
        **options: Unpack[ServerKeywords],
    ) -> None:
        self._options = connection_options("WebSocketServer", options, SERVER_KEYWORDS)
        if not listeners:
            raise ValueError("a WebSocketServer needs at least one listener")
        self._handler = handler
        self._listeners = list(listeners)
        self._handler_nursery = options.get("handler_nursery")
        self._request_hook = options.get("request_hook")
        origins = options.get("origins")
        self._origins = None if origins is None else frozenset(origins)
        self._max_connections = options.get("max_connections")
        self._subprotocols = server_subprotocols(options.get("subprotocols"))
        self._default_headers = server_headers(options.get("server_header", DEFAULT_SERVER_HEADER))
        self._streams = 0  # TCP connections being served, handshaking or open
        self._connections: set[WebSocketConnection] = set()
        self._snapshot: frozenset[WebSocketConnection] | None = None  # of _connections
        self._scopes: set[trio.CancelScope] = set()  # one per connection task
        self._handshaking: set[trio.CancelScope] = set()  # those not yet accepted
        self._accepting: trio.CancelScope | None = None
        self._readers: trio.Nursery | None = None  # runs every connection's reader
        self._idle = trio.Event()
        self._idle.set()

    @property
    def listeners(self) -> list[Endpoint | str]:
        """Where the server listens: an :class:`Endpoint` per socket listener.

        A listener that is not a socket listener is given as its ``repr()``.
        """
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
            result.append(address_endpoint(sock.getsockname(), is_ssl))
        return result

    @property
    def port(self) -> int:
        """The port the server listens on; all its socket listeners must share it.

        ``host=None`` gives one listener for IPv4 and one for IPv6 on the same
        port, which is fine here. ``RuntimeError`` if the listeners are on
        different ports or none is a socket listener (trio-websocket raises it
        whenever there is more than one listener).
        """
        ports = {e.port for e in self.listeners if isinstance(e, Endpoint)}
        if len(ports) != 1:
            raise RuntimeError(f"server listens on {len(ports)} ports, not one: {sorted(ports)}")
        return ports.pop()

    @property
    def connections(self) -> frozenset[WebSocketConnection]:
        """Every WebSocket connection accepted and not yet over.

        That includes connections whose closing handshake has started, up
        to the moment their handler has returned and the close is done
        (:func:`~trio_ws.broadcast` passes over those). For whole-server
        announcements: ``broadcast(server.connections, message)``. The set
        is copied only after a connection came or went, so asking again
        while nothing changed costs nothing.
        """
        if self._snapshot is None:
            self._snapshot = frozenset(self._connections)
        return self._snapshot

    async def run(
        self, *, task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled or shut down; ``task_status.started`` gets the server.

        Cancelling it closes every open connection with 1001 (going away). A
        ``KeyboardInterrupt`` does the same and comes out as itself, not in
        an exception group, so ``trio.run(serve_websocket, ...)`` stops on
        Ctrl-C with a plain ``KeyboardInterrupt``.
        """
        with one_error():
            async with trio.open_nursery() as handlers:
                self._readers = self._handler_nursery or handlers
                # Accepting runs in a nursery of its own, so that shutdown can
                # stop it (closing the listeners) while the handlers go on.
                with trio.CancelScope() as self._accepting:
                    async with trio.open_nursery() as accepting:
                        for listener in self._listeners:
                            accepting.start_soon(
                                accept_forever, listener, self._serve_stream, self._readers
                            )
                        task_status.started(self)

    async def shutdown(
        self,
        code: int = GOING_AWAY,
        reason: str | None = "going away",
        *,
        timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    ) -> None:
        """Stop serving, gracefully.

        Stops accepting connections, drops clients still in their opening
        handshake, closes every open connection with *code* and *reason*,
        and waits up to *timeout* seconds for the handlers to return; the
        ones still running then are cancelled. :meth:`run` returns once all
        is done. Safe to call from any task, for example on SIGTERM.
        *code* and *reason* are checked first, as for ``aclose()``.
        """
        check_sendable(code, reason)
        if self._accepting is not None:
            self._accepting.cancel()
        for scope in list(self._handshaking):
            scope.cancel()
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as closing:
                for connection in list(self._connections):
                    closing.start_soon(connection.aclose, code, reason)
            await self._idle.wait()
        for scope in list(self._scopes):
            scope.cancel()
        await self._idle.wait()  # cancelled handlers end promptly

    async def _screen(self, request: HTTPRequest) -> HTTPResponse | None:
        """The server's own answer to *request*, if any, before the upgrade."""
        if self._request_hook is not None:
            try:
                response = await self._request_hook(request)
            except Exception:
                logger.exception("request hook failed for %s", request.path)
                return HTTPResponse(500, body=b"internal error\n")
            if response is not None:
                return response
        if self._origins is not None and request.header("origin") not in self._origins:
            return HTTPResponse(403, body=b"origin not allowed\n")
        if self._max_connections is not None and self._streams > self._max_connections:
            return HTTPResponse(503, [(b"retry-after", b"5")], b"too many connections\n")
        return None

    # Ctrl-C must not land in the middle of a handshake (say, after the 101
    # went out but before the connection exists, which the client then sees
    # as 1006): Trio delivers it to the main task at its next checkpoint
    # instead, the server is cancelled, and every connection gets 1001.
    @trio.lowlevel.enable_ki_protection
    async def _serve_stream(self, stream: trio.abc.Stream) -> None:
        # One cancel scope per connection: its deadline bounds the opening
        # handshake and is lifted for the handler, and shutdown() cancels it
        # (a second scope for the handshake alone cost about 6 µs each).
        # The reader runs next to the handlers, not in a nursery of this
        # connection's own (which cost each connection about 1.2 KiB): it
        # never raises, and it ends once the handler's close has closed the
        # stream, whether in time, by timeout or by cancellation.
        assert self._readers is not None
        self._streams += 1
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        scope = trio.CancelScope(deadline=trio.current_time() + self._options.connect_timeout)
        self._scopes.add(scope)
        self._handshaking.add(scope)
        if self._accepting is None or self._accepting.cancel_called:
            scope.cancel()  # shutting down: this one came too late

        def accepted(connection: WebSocketConnection) -> None:
            self._connections.add(connection)
            self._snapshot = None
            self._handshaking.discard(scope)

        outcome = RequestOutcome(accepted)
        request = None
        try:
            with scope:
                try:
                    request = await receive_request(
                        self._readers,
                        stream,
                        self._options,
                        self._screen,
                        subprotocols=self._subprotocols,
                        default_headers=self._default_headers,
                        outcome=outcome,
                    )
                except HandshakeError as exc:
                    logger.debug("%s", exc)
                    return
                if scope.cancel_called:
                    # The deadline passed (or shutdown began) just as the
                    # request came in complete: too late all the same.
                    request = None
                    return
                scope.deadline = math.inf
                # The handler runs here, not in a method of its own: every
                # connection's task idles in this frame, and a second one
                # would cost each open connection about 0.2 KiB.
                code = NORMAL_CLOSURE
                try:
                    await self._handler(request)
                except ConnectionClosed as exc:
                    logger.debug("handler ended by closed connection: %s", exc.reason)
                except Exception:
                    log = connection_logger(outcome.connection) if outcome.connection else logger
                    log.exception("WebSocket handler for %s failed", request.path)
                    code = INTERNAL_ERROR
                except BaseException:
                    # Cancelled (the server is torn down) or KeyboardInterrupt:
                    # the server is going away, which is not a normal closure.
                    code = GOING_AWAY
                    raise
                finally:
                    await self._finish(request, outcome, code)
        finally:
            if request is None and scope.cancel_called and not self._shutting_down():
                logger.debug("dropping a client that did not finish its handshake in time")
            self._scopes.discard(scope)
            self._handshaking.discard(scope)
            self._streams -= 1
            if not self._streams:
                self._idle.set()
            if isinstance(stream, trio.SocketStream):
                # Usually closed by the connection already; closing a plain
                # socket needs no I/O, so no scheduler pass is spent on it.
                stream.socket.close()
            else:
                await trio.aclose_forcefully(stream)

    def _shutting_down(self) -> bool:
        return self._accepting is not None and self._accepting.cancel_called

    async def _finish(self, request: WebSocketRequest, outcome: RequestOutcome, code: int) -> None:
        """Close the handler's connection with *code*, or answer an undecided request."""
        connection = outcome.connection
        if connection is not None:
            try:
                await connection.aclose(code)
            finally:
                self._connections.discard(connection)
                self._snapshot = None
        elif not outcome.decided:
            status = UNDECIDED_STATUS if code == NORMAL_CLOSURE else HANDLER_ERROR_STATUS
            await request.reject(status)


async def serve_websocket(
    handler: Handler,
    host: str | bytes | None,
    port: int,
    ssl_context: ssl.SSLContext | None,
    *,
    unix_socket: str | None = None,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
    **options: Unpack[ServerKeywords],
) -> None:
    """Listen on *host*:*port* and serve each connection with *handler*.

    Use it as ``server = await nursery.start(serve_websocket, handler, host,
    port, ssl_context)``; port 0 picks a free port (see ``server.port``).
    *ssl_context* serves ``wss://``; ``None`` serves plain ``ws://``. The
    handler is called with a :class:`WebSocketRequest` for every valid
    upgrade request. If it raises, the error is logged, that connection is
    closed with 1011 (or answered with 500 before acceptance) and the server
    goes on. Errors opening the listeners are raised as themselves.

    To serve a socket you made yourself, wrap it in
    :class:`trio.SocketListener` and give it to :class:`WebSocketServer`.
    Every keyword argument (those of :class:`WebSocketServer`, and
    *unix_socket* and *reuse_port*) is described under
    :ref:`connection-options`; a bad one is raised before any listener is
    opened.
    """
    connection_options("serve_websocket", options, SERVER_KEYWORDS)
    if unix_socket is not None:
        listeners: Sequence[trio.abc.Listener[trio.abc.Stream]] = [
            await open_unix_listener(unix_socket)
        ]
        if ssl_context is not None:
            listeners = [trio.SSLListener(listeners[0], ssl_context, https_compatible=True)]
    elif reuse_port:
        listeners = await open_reuse_port_listeners(port, host=host)
        if ssl_context is not None:
            listeners = [trio.SSLListener(x, ssl_context, https_compatible=True) for x in listeners]
    elif ssl_context is None:
        listeners = await trio.open_tcp_listeners(port, host=host)
    else:
        listeners = await trio.open_ssl_over_tcp_listeners(
            port, ssl_context, host=host, https_compatible=True
        )
    server = WebSocketServer(handler, listeners, **options)
    await server.run(task_status=task_status)


async def open_unix_listener(path: str, backlog: int = 128) -> trio.SocketListener:
    """Listen on the unix socket *path*, replacing a stale socket file there."""
    if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
        os.unlink(path)  # left by a previous run; anything else is not ours to remove
    return await listen_on(trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), path, backlog)


async def wrap_server_stream(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    message_queue_size: int = DEFAULT_MESSAGE_QUEUE_SIZE,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    *,
    subprotocols: SubprotocolChoice | None = None,
    server_header: str | None = DEFAULT_SERVER_HEADER,
    **options: Unpack[SessionKeywords],
) -> WebSocketRequest:
    """Read an upgrade request from *stream* and return it, undecided.

    A request that is not a valid upgrade is answered with the right HTTP
    error, *stream* is closed and :class:`HandshakeError` is raised. The
    accepted connection's reader runs in *nursery*; the caller must close
    the connection. No timeout applies: wrap the call in
    :func:`trio.fail_after` if you need one. The buffer sizes come first,
    positionally, as in trio-websocket; all *options* are described under
    :ref:`connection-options`.
    """
    sizes = {
        "message_queue_size": message_queue_size,
        "max_message_size": max_message_size,
        "receive_buffer_size": receive_buffer_size,
    }
    checked = connection_options("wrap_server_stream", {**options, **sizes}, STREAM_KEYWORDS)
    return await receive_request(
        nursery,
        stream,
        checked,
        subprotocols=server_subprotocols(subprotocols),
        default_headers=server_headers(server_header),
    )
