"""Listening sockets: the server's accept loop, and SO_REUSEPORT listeners.

:func:`accept_forever` is the server's accept loop: one task per listener
that hands each new stream to a task of its own.

:func:`trio.open_tcp_listeners` binds each address once. To run several
worker processes on one port, each worker sets ``SO_REUSEPORT`` before
binding and the kernel spreads new connections over the listening sockets
(by a hash of the addresses, not by load). The option exists on Linux and
the BSDs (macOS included); elsewhere asking for it raises a clear error
rather than silently serving one process.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Awaitable, Callable

import trio

from .options import ACCEPT_RETRY_DELAY

__all__ = [
    "accept_forever",
    "check_reuse_port",
    "listen_on",
    "open_reuse_port_listeners",
    "reserve_port",
]

logger = logging.getLogger("trio_ws.server")

#: Pending connections the kernel queues per listening socket.
BACKLOG = 1024

#: accept() errors that say "no file descriptors or memory left for now":
#: the server goes on and retries later instead of stopping.
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


async def accept_forever(
    listener: trio.abc.Listener[trio.abc.Stream],
    serve: Callable[[trio.abc.Stream], Awaitable[object]],
    nursery: trio.Nursery,
) -> None:
    """Accept on *listener* until cancelled; each stream is served in *nursery*.

    ``serve(stream)`` owns the stream and must close it. This replaces
    :func:`trio.serve_listeners` for the server because that one wraps every
    connection in a task frame of its own that closes the stream once more
    with :func:`trio.aclose_forcefully`, a cancel scope and a scheduler pass
    per connection (measured: about 0.2 KiB of memory per open connection).
    Running out of file descriptors or memory is logged and retried after
    ``ACCEPT_RETRY_DELAY`` seconds; any other error ends the loop.
    Cancelling it closes the listener.
    """
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _RESOURCE_ERRNOS:
                    raise
                code = errno.errorcode.get(exc.errno, str(exc.errno))
                logger.error(
                    "accept() failed with %s (%s); retrying in %s s",
                    code,
                    os.strerror(exc.errno),
                    ACCEPT_RETRY_DELAY,
                )
                await trio.sleep(ACCEPT_RETRY_DELAY)
                continue
            try:
                nursery.start_soon(serve, stream)
            except BaseException:  # the nursery is closing: the stream is ours to close
                await trio.aclose_forcefully(stream)
                raise


def check_reuse_port() -> int:
    """Return the ``SO_REUSEPORT`` constant, or raise if the platform has none."""
    option = getattr(socket, "SO_REUSEPORT", None)
    if option is None:
        raise OSError(
            errno.ENOPROTOOPT,
            "reuse_port=True needs SO_REUSEPORT, which this platform does not have; "
            "run one worker, or put a load balancer in front of several ports",
        )
    return int(option)


def _shared_socket(family: int, type_: int, proto: int, option: int) -> trio.socket.SocketType:
    sock = trio.socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, option, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


async def listen_on(
    sock: trio.socket.SocketType, address: object, backlog: int
) -> trio.SocketListener:
    """Bind *sock* to *address* and listen; the socket is closed if either fails."""
    try:
        await sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def open_reuse_port_listeners(
    port: int, *, host: str | bytes | None = None, backlog: int = BACKLOG
) -> list[trio.SocketListener]:
    """Listen on every address of *host*:*port* with ``SO_REUSEPORT`` set.

    Like :func:`trio.open_tcp_listeners`, but other sockets (in this or
    another process of the same user) may listen on the same port. With
    port 0 each call gets a port of its own; to share a free port, bind one
    with :func:`~trio_ws.listeners.reserve_port` first and pass its number. Cancelling it
    closes whatever it had opened.
    """
    option = check_reuse_port()
    addresses = await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    listeners: list[trio.SocketListener] = []
    try:
        for family, type_, proto, _, address in addresses:
            listeners.append(
                await listen_on(_shared_socket(family, type_, proto, option), address, backlog)
            )
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        raise
    return listeners


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (without listening) a ``SO_REUSEPORT`` socket on *host*:*port*.

    A socket that never listens receives no connections, but it keeps the
    port (port 0: a free one, see ``getsockname()``) from being taken by a
    program that does not share it, for as long as it stays open. The
    runner holds one while its workers come and go.
    """
    option = check_reuse_port()
    family, type_, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, option, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock
