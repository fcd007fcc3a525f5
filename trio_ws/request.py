"""The server side of the opening handshake: one client's upgrade request.

The server reads a request, lets its request hook and policies answer it,
and hands a :class:`WebSocketRequest` to the handler, which accepts or
rejects it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from .close_codes import ABNORMAL_CLOSURE
from .connection import WebSocketConnection, start_connection
from .core.deflate import NAME, PerMessageDeflate
from .core.size_limit import MessageSizeLimit
from .exceptions import ConnectionClosed, HandshakeError
from .handshake import Headers, PeerGone, check_subprotocols, normalize_headers
from .http import HeaderInput, HTTPRequest, HTTPResponse, header_value, query_params
from .options import DEFAULT_SERVER_HEADER, ConnectionOptions, DeflateOptions
from .server_handshake import (
    BadRequest,
    UpgradeRequest,
    acceptance,
    check_upgrade,
    read_request,
    rejection,
)
from .sockets import send_head
from .values import CloseReason, Endpoint, socket_endpoints

logger = logging.getLogger("trio_ws.server")

#: The answer to a request that the handler neither accepted nor rejected.
UNDECIDED_STATUS = 403
#: The answer to a request whose handler raised before deciding.
HANDLER_ERROR_STATUS = 500

#: A server's ``subprotocols`` setting: the subprotocols it speaks, or a
#: function that picks one of the client's proposals (or ``None``).
SubprotocolChoice = Sequence[str] | Callable[[Sequence[str]], str | None]


def server_subprotocols(choice: SubprotocolChoice | None) -> SubprotocolChoice | None:
    """A server's ``subprotocols`` setting, checked: a callable, or a list of names."""
    return choice if callable(choice) else check_subprotocols(choice) or None


def choose_subprotocol(choice: SubprotocolChoice | None, proposed: Sequence[str]) -> str | None:
    """The subprotocol a server's *choice* picks from the client's *proposed* ones.

    A sequence picks the client's most preferred one that it contains; a
    callable gets the proposals in the client's order and returns one of them
    or ``None``.
    """
    if choice is None or not proposed:
        return None
    if callable(choice):
        return choice(tuple(proposed))
    return next((p for p in proposed if p in choice), None)


class RequestOutcome:
    """What became of one request, for the code that serves it.

    The server makes one per request and hands it to the request, which
    fills it in: the server learns of the acceptance at once (through
    *on_accept*, called before :meth:`WebSocketRequest.accept` returns) and,
    once the handler is done, whether it decided and which connection to
    close, without touching the request's own state.
    """

    __slots__ = ("connection", "decided", "on_accept")

    def __init__(self, on_accept: Callable[[WebSocketConnection], object] | None = None) -> None:
        #: The accepted connection, once there is one.
        self.connection: WebSocketConnection | None = None
        #: Whether the request was accepted or rejected.
        self.decided = False
        self.on_accept = on_accept


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
        *,
        state: dict[str, Any] | None = None,
        subprotocols: SubprotocolChoice | None = None,
        default_headers: Headers | None = None,
        outcome: RequestOutcome | None = None,
        endpoints: tuple[Endpoint | str, Endpoint | str] | None = None,
    ) -> None:
        self._nursery = nursery
        self._stream = stream
        self._upgrade = upgrade
        self._options = options
        self._state: dict[str, Any] = {} if state is None else state
        self._subprotocols = subprotocols
        self._default_headers = default_headers or []  # see server_headers()
        # The server asked the socket once, for the request hook: reuse that.
        self._local, self._remote = endpoints or socket_endpoints(stream)
        self._outcome = RequestOutcome() if outcome is None else outcome

    @property
    def path(self) -> str:
        """The request target, such as ``/chat?room=1``."""
        return self._upgrade.target

    @property
    def headers(self) -> Headers:
        """All request headers as ``(lowercase name, value)`` byte pairs."""
        return self._upgrade.headers

    def header(self, name: str) -> str | None:
        """The first value of request header *name* (any case) as text, or ``None``."""
        return header_value(self._upgrade.headers, name)

    @property
    def query(self) -> dict[str, str]:
        """The query parameters of :attr:`path`, each with its first value.

        For every value of a repeated parameter, use
        ``urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)``.
        """
        return query_params(self._upgrade.target)

    @property
    def state(self) -> dict[str, Any]:
        """Per-request data: the same dict the request hook saw as ``HTTPRequest.state``.

        Starts empty; a hook that authenticated the client can leave the user
        here for the handler, e.g. ``request.state["user"] = user``.
        """
        return self._state

    @property
    def proposed_subprotocols(self) -> tuple[str, ...]:
        """The subprotocols the client offered, in its order of preference."""
        return self._upgrade.subprotocols

    @property
    def local(self) -> Endpoint | str:
        """The server's address for this connection (a ``repr()`` if not a socket)."""
        return self._local

    @property
    def remote(self) -> Endpoint | str:
        """The client's address (the stream's ``repr()`` if it is not a socket)."""
        return self._remote

    def _decide(self) -> None:
        if self._outcome.decided:
            raise RuntimeError("this request has already been accepted or rejected")
        self._outcome.decided = True

    async def accept(
        self, *, subprotocol: str | None = None, extra_headers: HeaderInput | None = None
    ) -> WebSocketConnection:
        """Complete the handshake and return the open connection.

        *subprotocol* must be one of :attr:`proposed_subprotocols` (or
        ``None``); if it is ``None`` and the server was given
        ``subprotocols``, that setting chooses. The connection is closed when
        the handler returns. On a plain socket the 101 answer is written at
        once, without a scheduler pass unless the socket is full. Cancelled
        before the answer went out (already cancelled when called, say,
        because the server is shutting down), nothing is sent and the
        request counts as decided: the server then closes the stream.
        """
        if subprotocol is None:
            subprotocol = choose_subprotocol(self._subprotocols, self._upgrade.subprotocols)
        if subprotocol is not None and subprotocol not in self._upgrade.subprotocols:
            raise ValueError(f"the client did not propose subprotocol {subprotocol!r}")
        headers = normalize_headers(extra_headers, self._default_headers)
        self._decide()
        limit = MessageSizeLimit(self._options.max_message_size)
        deflate, answer = _negotiate(self._upgrade.extensions, self._options.compression, limit)
        try:
            await send_head(self._stream, acceptance(self._upgrade, subprotocol, answer, headers))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionClosed(CloseReason(ABNORMAL_CLOSURE, None)) from exc
        connection = WebSocketConnection(
            self._stream,
            self._options,
            is_client=False,
            path=self._upgrade.target,
            subprotocol=subprotocol,
            handshake_headers=self._upgrade.headers,
            trailing_data=self._upgrade.trailing_data,
            size_limit=limit,
            deflate=deflate,
            endpoints=(self._local, self._remote),
        )
        start_connection(connection, self._nursery)
        self._outcome.connection = connection
        if self._outcome.on_accept is not None:
            self._outcome.on_accept(connection)
        return connection

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
        headers = normalize_headers(extra_headers, self._default_headers)
        self._decide()
        await answer_and_close(
            self._stream, rejection(status_code, headers, body or b""), self._options
        )


def _negotiate(
    offers: Sequence[str], options: DeflateOptions | None, limit: MessageSizeLimit
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


async def answer_and_close(
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


async def receive_request(
    nursery: trio.Nursery,
    stream: trio.abc.Stream,
    options: ConnectionOptions,
    screen: Callable[[HTTPRequest], Awaitable[HTTPResponse | None]] | None = None,
    *,
    subprotocols: SubprotocolChoice | None = None,
    default_headers: Headers | None = None,
    outcome: RequestOutcome | None = None,
) -> WebSocketRequest:
    """Read the upgrade request; answer a bad one, close and raise HandshakeError.

    *screen* sees the request first and may answer it instead (the server's
    request hook, origin check and connection limit). Every answer carries
    the *default_headers* (see :func:`server_headers`) it does not set itself.
    The request fills in *outcome*, if given, as it is answered.
    """
    defaults = default_headers or []
    endpoints = socket_endpoints(stream)  # two system calls: made once per connection
    try:
        request = await read_request(stream, options.receive_buffer_size, endpoints[1])
        response = await screen(request) if screen is not None else None
        if response is not None:
            await answer_and_close(stream, render_plain(response, defaults), options)
            raise HandshakeError(f"answered {request.path} with HTTP {response.status_code}")
        upgrade = check_upgrade(request)
    except BadRequest as exc:
        answer = rejection(exc.status, exc.headers + defaults, f"{exc}\n".encode())
        await answer_and_close(stream, answer, options)
        raise HandshakeError(f"invalid upgrade request ({exc.status}): {exc}") from exc
    except (PeerGone, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        await trio.aclose_forcefully(stream)
        raise HandshakeError("client left before completing its request") from exc
    return WebSocketRequest(
        nursery,
        stream,
        upgrade,
        options,
        state=request.state,
        subprotocols=subprotocols,
        default_headers=defaults,
        outcome=outcome,
        endpoints=endpoints,
    )


def server_headers(server_header: str | None = DEFAULT_SERVER_HEADER) -> Headers:
    """The headers a server adds to its answers by default: ``Server``, if any.

    A server computes them once, not per connection.
    """
    return [] if server_header is None else normalize_headers([(b"server", server_header)])


def render_plain(response: HTTPResponse, defaults: Headers | None = None) -> bytes:
    """The bytes of a hook's plain HTTP answer, with *defaults* it does not override."""
    headers = normalize_headers(response.headers, defaults)
    return rejection(response.status_code, headers, response.body)
