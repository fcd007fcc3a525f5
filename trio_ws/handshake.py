"""The HTTP/1.1 opening handshake of RFC 6455 section 4, parsed with h11.

This module knows HTTP and nothing about Trio tasks: the client side sends the
upgrade request and checks the answer; the rules both sides share (header
checks, the accept token, shared header pairs) live here too. The server
side is :mod:`trio_ws.server_handshake`. Reads go through a single helper
that bounds the head size.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import h11
import trio

from .exceptions import ConnectionRejected, HandshakeError
from .http import HeaderInput
from .options import (
    DEFAULT_USER_AGENT,
    MAX_HANDSHAKE_HEAD_SIZE,
    MAX_REJECT_BODY_SIZE,
    SHARED_HEADER_VALUE_SIZE,
    SHARED_HEADERS,
)
from .sockets import plain_socket, receive, send_head

Headers = list[tuple[bytes, bytes]]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: The only Sec-WebSocket-Version there is (RFC 6455 4.1).
VERSION = b"13"
#: What the client tells h11 it sent (see client_handshake).
_UPGRADE_REQUEST = h11.Request(
    method="GET",
    target="/",
    headers=[("host", "localhost"), ("upgrade", "websocket"), ("connection", "Upgrade")],
)
_END_OF_MESSAGE = h11.EndOfMessage()
#: A request target (RFC 9112 3.2) as h11 allows it: visible ASCII.
_TARGET = re.compile(r"[\x21-\x7e]+")
#: A header name (RFC 9110 5.1: a token) and what a header value may not
#: hold (controls other than tab): both sides render their heads themselves,
#: so these checks stand where h11's would.
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_FORBIDDEN_IN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def accept_token(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value that answers ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def _as_bytes(value: object) -> bytes:
    if isinstance(value, str):
        return value.encode("latin-1")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"header names and values must be str or bytes, not {type(value).__name__}")


def _pairs(headers: object) -> list[tuple[object, object]]:
    """*headers* (a mapping or a sequence of pairs) as a list of pairs, or TypeError."""
    if isinstance(headers, Mapping):
        return list(headers.items())
    if isinstance(headers, (str, bytes, bytearray, memoryview)) or not isinstance(
        headers, Iterable
    ):
        raise TypeError(
            "extra headers must be a mapping or a sequence of (name, value) pairs, "
            f"not {type(headers).__name__}"
        )
    pairs = list(headers)
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"each extra header must be a (name, value) pair, not {pair!r}")
    return [(n, v) for n, v in pairs]


def normalize_headers(headers: HeaderInput | None, defaults: Headers | None = None) -> Headers:
    """Headers as ``(lowercase name, value)`` byte pairs, then *defaults*.

    A default is added unless *headers* names it; a header whose value is
    ``None`` is left out, which is how a default is removed. Raises
    ``TypeError`` for input of the wrong shape and ``ValueError`` for a name
    or value that would break the head apart (CR, LF or NUL), so no caller
    can inject headers.
    """
    given = [(_as_bytes(n).lower(), v) for n, v in _pairs(headers)] if headers else []
    pairs = [(n, _as_bytes(v)) for n, v in given if v is not None]
    for name, value in pairs:
        if not _TOKEN.fullmatch(name) or _FORBIDDEN_IN_VALUE.search(value):
            raise ValueError(f"invalid header {name!r}: {value!r}")
    if defaults:
        named = {n for n, _ in given}
        pairs += [(n, v) for n, v in defaults if n not in named]
    return pairs


def check_request_line(host: str, resource: str) -> None:
    """ValueError unless *host* and *resource* can go into an upgrade request as they are.

    Checked once per call, before any network: the client renders its
    request itself (see :func:`client_handshake`).
    """
    if not _TARGET.fullmatch(resource):
        raise ValueError(
            f"invalid resource {resource!r}: it must be visible ASCII, percent-encoded"
        )
    if not host or _FORBIDDEN_IN_VALUE.search(host.encode("utf-8", "surrogateescape")):
        raise ValueError(f"invalid host {host!r}")


#: Request headers the handshake writes itself, with what to use instead.
#: One of these in a client's ``extra_headers`` would go out twice, or
#: contradict what the connection then does, so it is refused up front.
RESERVED_REQUEST_HEADERS = {
    b"upgrade": "the handshake sends it",
    b"connection": "the handshake sends it",
    b"sec-websocket-key": "the handshake makes a fresh one per connection",
    b"sec-websocket-version": "the handshake sends it",
    b"sec-websocket-accept": "it belongs to the server's answer",
    b"sec-websocket-protocol": "offer subprotocols with subprotocols=[...]",
    b"sec-websocket-extensions": "permessage-deflate is set with compression=",
}


def check_extra_request_headers(headers: HeaderInput | None) -> None:
    """Refuse a client's extra headers that are malformed or reserved.

    ``TypeError`` or ``ValueError`` as :func:`normalize_headers`, and a
    ``ValueError`` naming the header for one the handshake owns
    (:data:`RESERVED_REQUEST_HEADERS`). ``Host`` is allowed: it replaces the
    one made from the URL.
    """
    for name, _ in normalize_headers(headers):
        if name in RESERVED_REQUEST_HEADERS:
            why = RESERVED_REQUEST_HEADERS[name]
            raise ValueError(f"extra_headers may not set {name.decode()!r}: {why}")


def check_subprotocols(subprotocols: object) -> list[str]:
    """*subprotocols* as a list of tokens; TypeError for a bare string or non-str items."""
    if subprotocols is None:
        return []
    if isinstance(subprotocols, (str, bytes)) or not isinstance(subprotocols, Iterable):
        raise TypeError(
            f"subprotocols must be a sequence of str, not {type(subprotocols).__name__} "
            "(for one subprotocol, write ['name'])"
        )
    tokens = list(subprotocols)
    for token in tokens:
        if not isinstance(token, str):
            raise TypeError(f"each subprotocol must be a str, not {type(token).__name__}")
        if not token or any(c in token for c in ' ,;"\t\r\n'):
            raise ValueError(f"invalid subprotocol {token!r}")
    return tokens


def _tokens(headers: Headers, name: bytes) -> list[str]:
    """The comma-separated values of every *name* header, stripped."""
    return [
        token.strip().decode("latin-1")
        for n, value in headers
        if n == name
        for token in value.split(b",")
        if token.strip()
    ]


def _has_token(headers: Headers, name: bytes, token: str) -> bool:
    return token in (t.lower() for t in _tokens(headers, name))


#: Header pairs seen lately, shared by the connections that received them:
#: an open connection keeps its handshake's headers, and most of them (Host,
#: Upgrade, User-Agent, the extension offer, the server's answer) are the
#: same for every client of a server. Emptied when full, so it stays small
#: whatever the peers send; the key and the accept token, unique to each
#: connection, are not kept.
_seen_headers: dict[tuple[bytes, bytes], tuple[bytes, bytes]] = {}
#: Different on every connection: never worth keeping in the table.
_UNIQUE_HEADERS = frozenset([b"sec-websocket-key", b"sec-websocket-accept"])


def shared_headers(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """*headers* as ``(lowercase name, value)`` pairs, each one an equal pair
    seen before if any.

    The names may come in any case (h11's ``raw_items()``, which is cheaper
    to read than its lowercased view): the table maps each pair as received
    to its lowercased pair, so a header seen before costs one look-up.
    Measured on 1,000 idle server connections: about 0.8 KiB less per
    connection.
    """
    pairs = []
    for pair in headers:
        seen = _seen_headers.get(pair)
        if seen is None:
            name, value = pair
            seen = (name.lower(), value)
            if seen[0] not in _UNIQUE_HEADERS and len(value) <= SHARED_HEADER_VALUE_SIZE:
                if len(_seen_headers) >= SHARED_HEADERS:
                    _seen_headers.clear()
                _seen_headers[pair] = seen
        pairs.append(seen)
    return pairs


class PeerGone(Exception):
    """The peer closed the connection in the middle of the handshake."""


async def next_event(conn: h11.Connection, stream: trio.abc.Stream, receive_size: int) -> object:
    """The next h11 event, reading more from *stream* as needed.

    A plain socket is read directly and waited on only when empty (see
    :func:`trio_ws.sockets.receive`): ``receive_some()`` spends a scheduler
    pass after each read. Cancelling it while it waits takes no bytes.
    """
    sock = plain_socket(stream)
    eof = False
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            if eof:
                raise PeerGone() from None
            raise
        if event is not h11.NEED_DATA:
            return event
        data = await receive(stream, sock, receive_size)
        eof = not data
        conn.receive_data(bytes(data))


# ---------------------------------------------------------------- client side


@dataclass(frozen=True)
class ClientResult:
    """What the server's 101 answer established."""

    headers: Headers
    subprotocol: str | None
    extensions: list[str]
    trailing_data: bytes


async def client_handshake(
    stream: trio.abc.Stream,
    *,
    host: str,
    resource: str,
    subprotocols: Sequence[str] | None,
    extra_headers: HeaderInput | None,
    extension_offers: Sequence[str] = (),
    receive_size: int,
) -> ClientResult:
    """Send the upgrade request on *stream* and validate the server's answer.

    Raises :class:`ConnectionRejected` for a non-101 answer and
    :class:`HandshakeError` when the server hangs up or answers 101 wrongly.
    """
    key = base64.b64encode(os.urandom(16))
    host_header = host.encode("idna")
    extra = normalize_headers(extra_headers, [(b"user-agent", DEFAULT_USER_AGENT.encode())])
    if extra_headers and any(name == b"host" for name, _ in extra):
        # The caller's Host (a virtual host reached by address) replaces ours:
        # a request with two is one that servers must refuse (RFC 9112 3.2).
        host_header = next(value for name, value in extra if name == b"host")
        extra = [(name, value) for name, value in extra if name != b"host"]
    headers: Headers = [
        (b"host", host_header),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-key", key),
        (b"sec-websocket-version", VERSION),
    ]
    if subprotocols:
        headers.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode()))
    if extension_offers:
        headers.append((b"sec-websocket-extensions", ", ".join(extension_offers).encode()))
    headers += extra

    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HANDSHAKE_HEAD_SIZE)
    # h11 parses the answer, so it must know that a GET offering an upgrade
    # went out; the request we send is rendered by render_head. Its target
    # and Host were checked by check_request_line, and a new, validated
    # Request event for each connection cost about 30 calls: one shared
    # event says the same to h11's state machine, which reads only the
    # method, the framing and the upgrade offer.
    conn.send(_UPGRADE_REQUEST)
    conn.send(_END_OF_MESSAGE)
    target = resource.encode()
    # Written straight to a plain socket (send_all would add a scheduler pass).
    await send_head(stream, render_head(b"GET " + target + b" HTTP/1.1", headers))

    try:
        while True:
            event = await next_event(conn, stream, receive_size)
            if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                break
            if isinstance(event, h11.InformationalResponse):  # 1xx: no upgrade (RFC 6455 4.1)
                raise ConnectionRejected(event.status_code, list(event.headers), None)
            if isinstance(event, h11.Response):
                body = await _read_body(conn, stream, receive_size)
                raise ConnectionRejected(event.status_code, list(event.headers), body)
            if isinstance(event, h11.ConnectionClosed):
                raise PeerGone()
    except PeerGone:
        raise HandshakeError("server closed the connection before answering") from None
    except h11.RemoteProtocolError as exc:
        raise HandshakeError(f"server sent an invalid HTTP answer: {exc}") from exc

    answer = shared_headers(event.headers.raw_items())
    # The usual spellings first: each token check scans and splits every header.
    if (b"upgrade", b"websocket") not in answer and not _has_token(answer, b"upgrade", "websocket"):
        raise HandshakeError("server's 101 answer lacks 'Upgrade: websocket'")
    if (b"connection", b"Upgrade") not in answer and not _has_token(
        answer, b"connection", "upgrade"
    ):
        raise HandshakeError("server's 101 answer lacks 'Connection: Upgrade'")
    accepts = [v for n, v in answer if n == b"sec-websocket-accept"]
    if accepts != [accept_token(key)]:
        raise HandshakeError("server's Sec-WebSocket-Accept does not match our key")
    chosen = _tokens(answer, b"sec-websocket-protocol")
    if len(chosen) > 1 or (chosen and chosen[0] not in (subprotocols or ())):
        raise HandshakeError(f"server chose a subprotocol we did not offer: {chosen}")
    return ClientResult(
        headers=answer,
        subprotocol=chosen[0] if chosen else None,
        extensions=_tokens(answer, b"sec-websocket-extensions"),
        trailing_data=conn.trailing_data[0],
    )


async def _read_body(conn: h11.Connection, stream: trio.abc.Stream, receive_size: int) -> bytes:
    """The body of a rejection, up to ``MAX_REJECT_BODY_SIZE`` bytes."""
    body = bytearray()
    try:
        while len(body) < MAX_REJECT_BODY_SIZE:
            event = await next_event(conn, stream, receive_size)
            if not isinstance(event, h11.Data):
                break
            body += event.data
    except (h11.RemoteProtocolError, PeerGone, trio.BrokenResourceError):
        pass  # keep what arrived; the status code is what matters
    return bytes(body[:MAX_REJECT_BODY_SIZE])


def render_head(start_line: bytes, headers: Headers) -> bytes:
    """An HTTP/1.1 head: *start_line*, then *headers* (checked by normalize_headers)."""
    lines = [start_line]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"
