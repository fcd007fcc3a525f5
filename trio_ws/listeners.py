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

from .options import ACCEPT_BATCH, ACCEPT_RETRY_DELAY

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

#: accept() errors about one connection that went wrong before it was
#: accepted (reset, aborted, unreachable): skipped, as trio's own
#: ``SocketListener.accept()`` skips them.
_PASSING_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED",
        "ECONNRESET",
        "EPROTO",
        "EPERM",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "ENOSR",
        "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT",
        "ETIMEDOUT",
    )
    if hasattr(errno, name)
)


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
    A :class:`trio.SocketListener` is drained without a scheduler pass per
    connection (see :func:`_accept_sockets`).
    Running out of file descriptors or memory is logged and retried after
    ``ACCEPT_RETRY_DELAY`` seconds; any other error ends the loop.
    Cancelling it closes the listener.
    """
    async with listener:
        if isinstance(listener, trio.SocketListener) and (own := _duplicate(listener)) is not None:
            with own:
                await _accept_sockets(listener, own, serve, nursery)
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                await _pause_after(exc)
                continue
            await _spawn(nursery, serve, stream)


def _duplicate(listener: trio.SocketListener) -> socket.socket | None:
    """A socket of our own on *listener*'s listening socket, if possible."""
    if os.name != "posix":
        return None
    try:
        return socket.socket(fileno=os.dup(listener.socket.fileno()))
    except OSError:  # out of descriptors, say: accept() one at a time
        return None


async def _accept_sockets(
    listener: trio.SocketListener,
    own: socket.socket,
    serve: Callable[[trio.abc.Stream], Awaitable[object]],
    nursery: trio.Nursery,
) -> None:
    """Accept every connection waiting on *listener*'s socket, then wait.

    ``SocketListener.accept()`` spends a scheduler pass on each connection
    even when the next one is already waiting (and one more to find that
    none is). This loop accepts on *own*, a duplicate of the listening
    socket's descriptor, until the kernel says ``EAGAIN``, starting a task
    for each, and yields every ``ACCEPT_BATCH`` connections so that a flood
    of them cannot starve the connections already open. The streams are the
    :class:`trio.SocketStream` that ``accept()`` would have made. Closing
    the listener's socket meanwhile ends the loop with
    ``trio.ClosedResourceError``, as ``accept()`` would.
    """
    accepted = 0
    while True:
        if listener.socket.fileno() == -1:
            raise trio.ClosedResourceError("the listener was closed")
        try:
            sock, _ = own.accept()
        except BlockingIOError:
            sock = None  # wait below: inside the except, the exception would stay alive
        except OSError as exc:
            if exc.errno not in _PASSING_ERRNOS:
                await _pause_after(exc)
            continue
        if sock is None:
            accepted = 0
            # Waiting on the listener's own socket: closing it wakes us.
            await trio.lowlevel.wait_readable(listener.socket)
            continue
        try:
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        except BaseException:
            sock.close()
            raise
        await _spawn(nursery, serve, stream)
        accepted += 1
        if accepted >= ACCEPT_BATCH:
            accepted = 0
            await trio.lowlevel.checkpoint()


async def _spawn(
    nursery: trio.Nursery,
    serve: Callable[[trio.abc.Stream], Awaitable[object]],
    stream: trio.abc.Stream,
) -> None:
    try:
        nursery.start_soon(serve, stream)
    except BaseException:  # the nursery is closing: the stream is ours to close
        await trio.aclose_forcefully(stream)
        raise


async def _pause_after(exc: OSError) -> None:
    """Re-raise *exc*, unless it says "out of descriptors or memory": then log and wait."""
    if exc.errno not in _RESOURCE_ERRNOS:
        raise exc
    code = errno.errorcode.get(exc.errno, str(exc.errno))
    logger.error(
        "accept() failed with %s (%s); retrying in %s s",
        code,
        os.strerror(exc.errno),
        ACCEPT_RETRY_DELAY,
    )
    await trio.sleep(ACCEPT_RETRY_DELAY)


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
