"""Plain sockets: which streams are one, and where their reads land.

A plain TCP or unix socket is read (``os.read``) and written (``os.writev``)
directly, without trio's stream layer and its scheduler pass per call.
Its reads land in one buffer per thread, not in a new object per read:
``os.read(fd, 65536)`` makes a 64 KiB object, reads into it and shrinks it
to what came. Most reads bring far less (a small message, a ping), and the
shrunk objects of thousands of connections pit the heap with holes that the
process keeps resident: measured, about 3 KiB of server RSS per connection
after ten 2 KiB echoes. So a read lands in a buffer that this thread keeps
(and reuses for every connection it serves) and only what came is copied
out. A connection that is receiving in bulk (its last read filled the whole
buffer) reads as ``os.read`` does: its reads come back full, so nothing is
shrunk, and the copy would cost about 2 µs per 64 KiB.
"""

from __future__ import annotations

import os
import threading

import trio


def plain_socket(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The socket of a plain TCP or unix socket stream on POSIX, else ``None``.

    Such a socket may be read and written directly (``os.read``,
    ``os.writev``). Callers keep the socket, not its number, and ask for the
    number at each use: a closed socket answers -1, where a stale number
    could by then belong to another connection.
    """
    if isinstance(stream, trio.SocketStream) and os.name == "posix":
        return stream.socket
    return None


#: A frame, or part of one, as written.
Piece = bytes | bytearray | memoryview


def write_nowait(sock: trio.socket.SocketType, pieces: tuple[Piece, ...]) -> tuple[Piece, ...]:
    """Write what *sock* takes of *pieces* now (one ``writev``); return the rest.

    Nothing is written while the socket is full (*pieces* come back as they
    are). Raises ``trio.BrokenResourceError`` for a socket reset by the peer
    or closed under us (its number is then -1: EBADF). At most IOV_MAX
    pieces at a time (the caller slices).
    """
    try:
        written = os.writev(sock.fileno(), pieces)
    except BlockingIOError:
        return pieces
    except OSError as exc:
        raise trio.BrokenResourceError(str(exc)) from exc
    rest: list[Piece] = []
    for piece in pieces:
        if written >= len(piece):
            written -= len(piece)
        else:
            rest.append(memoryview(piece)[written:] if written else piece)
            written = 0
    return tuple(rest)


# Per thread: a read releases the GIL, and Trio runs may live in several threads.
_local = threading.local()


def read_socket(fd: int, size: int, bulk: bool) -> bytes:
    """Read at most *size* bytes from *fd* (non-blocking), as ``os.read`` does.

    Raises what ``os.read`` raises (``BlockingIOError`` when nothing waits).
    *bulk*: the connection's last read filled *size* bytes.
    """
    if bulk:
        return os.read(fd, size)
    view: memoryview | None = getattr(_local, "view", None)
    if view is None or len(view) < size:
        view = _local.view = memoryview(bytearray(size))
    return bytes(view[: os.readv(fd, (view[:size],))])


# -- the opening handshake: one read or write of a head, on either side


async def receive(
    stream: trio.abc.Stream, sock: trio.socket.SocketType | None, size: int
) -> bytes | bytearray:
    """The next bytes of a handshake head from *stream*; empty at its end.

    *sock*, the stream's plain socket if it has one, is read directly and
    waited on only when empty: ``receive_some()`` would spend a scheduler
    pass even when the bytes are there already, as a request usually is by
    the time the server accepts the connection. Cancelling it while it waits
    takes no bytes.
    """
    if sock is None:
        return await stream.receive_some(size)
    while True:
        try:
            # Into this thread's read buffer, not a new object of *size*
            # bytes; a closed socket answers -1: EBADF.
            return read_socket(sock.fileno(), size, False)
        except BlockingIOError:
            pass
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        await trio.lowlevel.wait_readable(sock)


async def send_head(stream: trio.abc.Stream, head: bytes) -> None:
    """Send *head* (a handshake's request or answer) on *stream*.

    A plain socket is written directly: a head almost always fits in the
    socket's buffer, and ``send_all()`` would spend a scheduler pass on it.
    It is a checkpoint only if the task is already cancelled (then nothing
    is sent) or the socket is full. Raises ``trio.BrokenResourceError`` (or
    ``ClosedResourceError``) as ``send_all`` does; cancelled while waiting
    for room, part of *head* may have gone.
    """
    sock = plain_socket(stream)
    if sock is None:
        await stream.send_all(head)
        return
    await trio.lowlevel.checkpoint_if_cancelled()
    rest: tuple[Piece, ...] = (head,)
    while rest := write_nowait(sock, rest):
        await trio.lowlevel.wait_writable(sock)
