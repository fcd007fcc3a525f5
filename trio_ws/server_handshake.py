"""The server side of the HTTP/1.1 opening handshake (RFC 6455 section 4.2).

Reads one request head with h11 (straight from a plain socket when it can),
says what is wrong with it as an HTTP status, and renders the answers: the
101 that completes the upgrade and the errors that refuse it. No Trio tasks
here: :mod:`trio_ws.request` runs this for each connection.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from http import HTTPStatus

import h11
import trio

from .handshake import VERSION, Headers, PeerGone, accept_token, render_head, shared_headers
from .http import HTTPRequest
from .options import MAX_HANDSHAKE_HEAD_SIZE, MAX_HEADER_COUNT
from .sockets import plain_socket
from .sockets import receive as _receive
from .values import Endpoint, socket_endpoints


class BadRequest(Exception):
    """A request the server answers with an HTTP error instead of upgrading."""

    def __init__(self, status: int, detail: str, headers: Headers | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.headers = headers or []


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """A valid WebSocket upgrade request (kept by its request for the whole
    connection: slots, about 50 bytes less by tracemalloc)."""

    target: str
    headers: Headers
    key: bytes
    subprotocols: tuple[str, ...]  # tuples: the usual empty one is shared
    extensions: tuple[str, ...]
    trailing_data: bytes = field(repr=False)


async def read_request(
    stream: trio.abc.Stream, receive_size: int, remote: Endpoint | str | None = None
) -> HTTPRequest:
    """Read one HTTP request head from *stream*, within the size limits.

    *remote* is the client's address when the caller has asked the socket
    already (otherwise this asks it). Raises :class:`BadRequest` with the
    status the client should get, or :class:`PeerGone` when the client left
    first. A request body is read and dropped (an upgrade request has none).
    A plain socket is read directly (see :func:`trio_ws.sockets.receive`). Cancelling it
    while it waits for the client leaves the stream to the caller to close.
    """
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HANDSHAKE_HEAD_SIZE)
    sock = plain_socket(stream)
    request = None
    eof = False
    try:
        event: object = h11.NEED_DATA  # ask h11 only once there are bytes
        while type(event) is not h11.EndOfMessage:
            if event is h11.NEED_DATA:
                data = await _receive(stream, sock, receive_size)
                eof = not data
                conn.receive_data(bytes(data))  # the same object if bytes already
            elif type(event) is h11.Request:
                request = event
                headers = shared_headers(event.headers.raw_items())
                if not _has_body(headers):
                    break  # its EndOfMessage would be next, at the same place
            elif type(event) is h11.ConnectionClosed:
                raise PeerGone()
            event = conn.next_event()  # a body's Data events are dropped
    except h11.RemoteProtocolError as exc:
        if eof:
            raise PeerGone() from None
        raise BadRequest(exc.error_status_hint, f"malformed request: {exc}") from exc
    assert request is not None  # h11 gives the request before its end
    # h11 bounds only heads that arrive in pieces; one read can hold more.
    head_size = len(request.target) + sum(len(n) + len(v) + 4 for n, v in headers)
    if head_size > MAX_HANDSHAKE_HEAD_SIZE:
        raise BadRequest(431, f"request head is larger than {MAX_HANDSHAKE_HEAD_SIZE} bytes")
    if len(headers) > MAX_HEADER_COUNT:
        raise BadRequest(431, f"request has more than {MAX_HEADER_COUNT} headers")
    return HTTPRequest(
        method=request.method.decode("latin-1"),
        path=request.target.decode("latin-1"),
        http_version=request.http_version.decode("latin-1"),
        headers=headers,
        remote=socket_endpoints(stream)[1] if remote is None else remote,
        trailing_data=conn.trailing_data[0],
    )


def _has_body(headers: Headers) -> bool:
    """Whether a request with *headers* has a body (RFC 9112 6.3: not
    without Content-Length or Transfer-Encoding). For a head without one,
    asking h11 for its EndOfMessage cost about 3 us more."""
    return any(name in _BODY_FRAMING for name, _ in headers)


#: The headers that give a request a body.
_BODY_FRAMING = frozenset([b"content-length", b"transfer-encoding"])


#: The request headers a WebSocket upgrade depends on.
_UPGRADE_FIELDS = frozenset(
    [
        b"upgrade",
        b"connection",
        b"sec-websocket-version",
        b"sec-websocket-key",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
    ]
)


def _split(values: list[bytes] | None) -> list[str]:
    """The comma-separated tokens of a header's *values*, stripped (as :func:`_tokens`)."""
    if not values:
        return []
    return [t.strip().decode("latin-1") for v in values for t in v.split(b",") if t.strip()]


def check_upgrade(request: HTTPRequest) -> UpgradeRequest:
    """Check that *request* is a valid WebSocket upgrade, or raise BadRequest.

    The headers are gone through once, picking the ones the upgrade needs
    (six passes over them cost about three times as much).
    """
    fields: dict[bytes, list[bytes]] = {}
    for name, value in request.headers:
        if name in _UPGRADE_FIELDS:
            fields.setdefault(name, []).append(value)
    upgrade_advice = [(b"upgrade", b"websocket"), (b"sec-websocket-version", VERSION)]
    if request.method != "GET":
        raise BadRequest(405, "a WebSocket upgrade must use GET", [(b"allow", b"GET")])
    if "websocket" not in (t.lower() for t in _split(fields.get(b"upgrade"))):
        raise BadRequest(426, "this is a WebSocket endpoint", upgrade_advice)
    if request.http_version != "1.1":
        raise BadRequest(400, "a WebSocket upgrade needs HTTP/1.1")
    if "upgrade" not in (t.lower() for t in _split(fields.get(b"connection"))):
        raise BadRequest(400, "missing 'Connection: Upgrade'")
    if _split(fields.get(b"sec-websocket-version")) != ["13"]:
        raise BadRequest(426, "unsupported Sec-WebSocket-Version", upgrade_advice)
    keys = fields.get(b"sec-websocket-key", [])
    try:
        valid_key = len(keys) == 1 and len(base64.b64decode(keys[0], validate=True)) == 16
    except ValueError:
        valid_key = False
    if not valid_key:
        raise BadRequest(400, "missing or invalid Sec-WebSocket-Key")
    return UpgradeRequest(
        target=request.path,
        headers=request.headers,
        key=keys[0],
        subprotocols=tuple(_split(fields.get(b"sec-websocket-protocol"))),
        extensions=tuple(_split(fields.get(b"sec-websocket-extensions"))),
        trailing_data=request.trailing_data,
    )


def render_response(status: int, headers: Headers, body: bytes = b"") -> bytes:
    """An HTTP/1.1 response head (and body) as bytes."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return render_head(f"HTTP/1.1 {status} {phrase}".encode(), headers) + body


def rejection(status: int, headers: Headers, body: bytes) -> bytes:
    """A complete non-101 answer, after which the server closes the connection."""
    framing = [(b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    names = {name for name, _ in framing}
    return render_response(status, [h for h in headers if h[0] not in names] + framing, body)


#: The start of every 101 answer, up to the Sec-WebSocket-Accept value.
_SWITCHING = b"".join(
    [
        b"HTTP/1.1 101 Switching Protocols\r\n",
        b"upgrade: websocket\r\n",
        b"connection: Upgrade\r\n",
        b"sec-websocket-accept: ",
    ]
)


def acceptance(
    request: UpgradeRequest,
    subprotocol: str | None,
    extensions: str | None,
    extra_headers: Headers,
) -> bytes:
    """The 101 answer that completes *request*'s upgrade.

    The same bytes as :func:`render_response` would make, from a constant
    start: only the accept value and what the server chose vary.
    """
    parts = [_SWITCHING, accept_token(request.key)]
    if subprotocol is not None:
        parts += (b"\r\nsec-websocket-protocol: ", subprotocol.encode())
    if extensions:
        parts += (b"\r\nsec-websocket-extensions: ", extensions.encode())
    for name, value in extra_headers:
        parts += (b"\r\n", name, b": ", value)
    parts.append(b"\r\n\r\n")
    return b"".join(parts)
