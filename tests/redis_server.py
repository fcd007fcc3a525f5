"""A real redis-server on a random loopback port, for the Redis bridge tests.

Persistence is off (``--save "" --appendonly no``); :meth:`RedisServer.stop`
can still ask for one explicit snapshot, so that a restart models a server
that keeps its data as well as one that loses it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def require_redis_server() -> str:
    """The redis-server binary; in CI its absence fails, elsewhere it skips."""
    if os.path.exists(REDIS_SERVER):
        return REDIS_SERVER
    why = "redis-server is not installed (apt-get install redis-server)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}, and CI must run the Redis tests")
    pytest.skip(why)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(port: int, *words: str) -> bytes:
    """Send one command in RESP and return the raw reply (tests only)."""
    request = f"*{len(words)}\r\n".encode()
    for word in words:
        request += f"${len(word.encode())}\r\n{word}\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        try:
            return sock.recv(65536)
        except ConnectionResetError:
            return b""


class RedisServer:
    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, attempts: int = 1) -> None:
        """Start the server; with *attempts* > 1, try fresh ports if one is taken."""
        for attempt in range(attempts):
            try:
                return self._start()
            except RuntimeError:
                if attempt == attempts - 1:
                    raise
                self.port = free_port()  # another program took it meanwhile

    def _start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if command(self.port, "PING") == b"+PONG\r\n":
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.process.kill()
                self.process.wait()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self, *, save: bool = False) -> None:
        """Stop the server: killed (its data lost) or, with *save*, after a snapshot."""
        assert self.process is not None
        if save:
            command(self.port, "SHUTDOWN", "SAVE")
        else:
            self.process.kill()
        self.process.wait(10)
        self.process = None

    def restart(self, *, save: bool = False) -> None:
        self.stop(save=save)
        self.start()
