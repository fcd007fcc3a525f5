"""Plain-socket reads through the per-thread buffer (trio_ws.sockets)."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import pytest

from trio_ws.sockets import read_socket

from .conftest import HOST


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.create_server((HOST, 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    server.setblocking(False)
    with client, server:
        yield client, server


def read_all(fd: int, want: int, size: int, bulk: bool) -> list[bytes]:
    """Reads of *fd* until *want* bytes came (at most 100 reads, each
    waiting at most 5 s for the socket)."""
    reads: list[bytes] = []
    for _ in range(100):
        if sum(map(len, reads)) >= want:
            return reads
        select.select([fd], [], [], 5)
        reads.append(read_socket(fd, size, bulk))
    raise AssertionError(f"{want} bytes did not come: {reads}")


@pytest.mark.parametrize("bulk", [False, True])
def test_each_read_is_its_own_bytes_of_what_came(
    pair: tuple[socket.socket, socket.socket], bulk: bool
) -> None:
    client, server = pair
    client.sendall(b"first")
    (first,) = read_all(server.fileno(), 5, 64, bulk)
    client.sendall(b"SECOND")
    (second,) = read_all(server.fileno(), 6, 64, bulk)
    # The buffer was reused for the second read; the first result is untouched.
    assert (first, second) == (b"first", b"SECOND")
    assert type(first) is bytes


def test_a_read_takes_at_most_size_bytes(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    client.sendall(bytes(range(256)) * 4)
    reads = read_all(server.fileno(), 1024, 100, bulk=False)
    assert all(len(data) <= 100 for data in reads)
    assert b"".join(reads) == bytes(range(256)) * 4


def test_nothing_to_read_and_the_end(pair: tuple[socket.socket, socket.socket]) -> None:
    client, server = pair
    with pytest.raises(BlockingIOError):
        read_socket(server.fileno(), 64, False)
    client.shutdown(socket.SHUT_WR)
    select.select([server], [], [], 5)
    assert read_socket(server.fileno(), 64, False) == b""
