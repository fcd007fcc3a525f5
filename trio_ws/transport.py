"""Reaching the server: TCP, a unix socket or an HTTP CONNECT proxy, then TLS.

Every failure after TCP is connected is reported as a HandshakeError that
names its cause, at once: a proxy's refusal, a broken TLS handshake.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
from urllib.parse import unquote, urlsplit

import h11
import trio

from .exceptions import HandshakeError
from .groups import leaves
from .handshake import PeerGone, next_event
from .options import MAX_HANDSHAKE_HEAD_SIZE
from .values import format_host, ip_version


def proxy_from_environment(host: str, is_ssl: bool) -> str | None:
    """The proxy the standard environment variables choose for *host*, if any.

    ``https_proxy`` serves ``wss://`` and ``http_proxy`` serves ``ws://``
    (upper-case names work too); ``no_proxy`` lists hosts to reach directly.
    """
    # Three lookups, where urllib.request.getproxies_environment() scans the
    # whole environment on every connection.
    url = _variable("https_proxy" if is_ssl else "http_proxy")
    if url is None or _bypassed(host, _variable("no_proxy") or ""):
        return None
    return url


def _variable(name: str) -> str | None:
    """A proxy variable: lower case first, as curl and urllib read them.

    Like urllib, ignore ``HTTP_PROXY`` in a CGI script, where a client can
    set it through a ``Proxy:`` request header ("httpoxy").
    """
    value = os.environ.get(name)
    if not value:
        value = os.environ.get(name.upper())
        # Asked only when HTTP_PROXY is set: one look-up fewer per connection.
        if value and name == "http_proxy" and "REQUEST_METHOD" in os.environ:
            value = None
    return value or None


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (``*``, or hosts and domain suffixes) covers *host*."""
    host = host.lower().strip("[]")
    for entry in (e.strip().lower().lstrip(".") for e in no_proxy.split(",")):
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return True
    return False


async def open_stream(
    host: str,
    port: int,
    tls: ssl.SSLContext | None,
    *,
    proxy: str | None = None,
    unix_socket: str | None = None,
) -> trio.abc.Stream:
    """A stream to the server, with TLS already negotiated when *tls* is given."""
    if unix_socket is not None:
        raw: trio.abc.Stream = await trio.open_unix_socket(unix_socket)
    elif proxy is not None:
        raw = await open_tunnel(proxy, host, port)
    else:
        raw = await open_tcp(host, port)
    if tls is None:
        return raw
    stream = trio.SSLStream(raw, tls, server_hostname=host)
    try:
        # Handshake now, so a TLS failure is reported as such, at once.
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        await trio.aclose_forcefully(stream)
        raise HandshakeError(f"TLS handshake with {host}:{port} failed: {exc.__cause__}") from exc
    return stream


async def open_tcp(host: str, port: int) -> trio.SocketStream:
    """A TCP stream to *host*:*port*, failing with an OSError that has an errno.

    An IP address is connected to directly: ``trio.open_tcp_stream``
    resolves the name and races the addresses it gets (happy eyeballs) in a
    nursery of its own, and for an address there is nothing to resolve or
    race (skipping it halved the CPU time of a loopback connect). Its
    failure is the socket's own OSError, errno included. Cancelling the call
    closes the socket.

    A host name goes through ``trio.open_tcp_stream``. When every address
    fails, Trio raises an OSError without an errno whose cause is a group of
    the errors of each attempt: a program checking ``errno == ECONNREFUSED``
    (or catching ``ConnectionRefusedError``) would miss it. The errno of the
    first attempt (the preferred address) is raised instead, with every
    attempt in the message and Trio's error as the cause.
    """
    version = ip_version(host)
    if version is not None:
        family = socket.AF_INET6 if version == 6 else socket.AF_INET
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        try:
            await sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return trio.SocketStream(sock)
    try:
        return await trio.open_tcp_stream(host, port)
    except OSError as exc:
        if exc.errno is not None or exc.__cause__ is None:
            raise
        attempts = [e for e in leaves(exc.__cause__) if isinstance(e, OSError) and e.errno]
        if not attempts:
            raise
        details = "; ".join(str(e) for e in attempts)
        # OSError(errno, ...) is the matching subclass, e.g. ConnectionRefusedError.
        raise OSError(attempts[0].errno, f"cannot connect to {host}:{port}: {details}") from exc


async def open_tunnel(proxy: str, host: str, port: int) -> trio.abc.Stream:
    """A TCP stream to *host*:*port* through the HTTP proxy at URL *proxy*.

    Credentials in the proxy URL (``http://user:secret@proxy:3128``) are sent
    with Basic authentication.
    """
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only http:// proxies are supported, not {proxy!r}")
    target = f"{format_host(host)}:{port}".encode()
    headers = [(b"host", target)]
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        token = base64.b64encode(credentials.encode())
        headers.append((b"proxy-authorization", b"Basic " + token))
    stream = await open_tcp(parts.hostname, parts.port or 80)
    try:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HANDSHAKE_HEAD_SIZE)
        await stream.send_all(
            conn.send(h11.Request(method="CONNECT", target=target, headers=headers))
        )
        try:
            response = await next_event(conn, stream, 4096)
        except (h11.RemoteProtocolError, PeerGone) as exc:
            raise HandshakeError(f"proxy {parts.hostname} gave no valid answer") from exc
        if not isinstance(response, h11.Response) or not 200 <= response.status_code < 300:
            status = getattr(response, "status_code", "?")
            raise HandshakeError(
                f"proxy {parts.hostname} refused to connect to {host}:{port}: HTTP {status}"
            )
        return stream
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
