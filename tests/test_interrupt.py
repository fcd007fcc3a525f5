"""Ctrl-C that arrives just after a handshake: the client must still get 1001.

Trio raises KeyboardInterrupt wherever unprotected code happens to run, so a
signal that landed in ``accept()`` after the 101 went out (but before the
connection existed) left the client with 1006. The server's own tasks are
KI-protected, which moves the interrupt to the main task's next checkpoint.
"""

from __future__ import annotations

import trio

import trio_ws

from .conftest import HOST
from .test_cli import interrupt, spawn
from .test_examples import EXAMPLES, server_port

#: Each round opens a connection and interrupts the server at once; before
#: the fix about a third of the rounds saw 1006.
ROUNDS = 8


async def test_ctrl_c_right_after_a_handshake_closes_with_1001() -> None:
    codes = []
    for _ in range(ROUNDS):
        async with trio.open_nursery() as nursery:
            server = await spawn(nursery, str(EXAMPLES / "echo_server.py"), "--port", "0")
            port = await server_port(server)
            async with trio_ws.open_websocket(HOST, port, "/", use_ssl=False) as ws:
                status, errors = await interrupt(server)
                try:
                    with trio.fail_after(10):
                        await ws.get_message()
                except trio_ws.ConnectionClosed as exc:
                    codes.append(exc.reason.code)
            assert status == 0, errors
            assert "Traceback" not in errors, errors
    assert codes == [1001] * ROUNDS
