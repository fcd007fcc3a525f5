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
