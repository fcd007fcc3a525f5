"""TCP listeners that several processes may share with SO_REUSEPORT.

:func:`trio.open_tcp_listeners` binds each address once. To run several
worker processes on one port, each worker sets ``SO_REUSEPORT`` before
binding and the kernel spreads new connections over the listening sockets
(by a hash of the addresses, not by load). The option exists on Linux and
the BSDs (macOS included); elsewhere asking for it raises a clear error
rather than silently serving one process.
"""

from __future__ import annotations

import errno
import socket

import trio

__all__ = ["check_reuse_port", "listen_on", "open_reuse_port_listeners", "reserve_port"]

#: Pending connections the kernel queues per listening socket.
BACKLOG = 1024


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
