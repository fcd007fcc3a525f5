"""The command line and Ctrl-C, run as real subprocesses (every wait bounded)."""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path

import pytest
import trio

import trio_ws

from .conftest import HOST
from .test_examples import ROOT, Program, server_port, start

#: Exit status the command line documents for Ctrl-C.
EXIT_INTERRUPTED = 130


async def spawn(nursery: trio.Nursery, *args: str) -> Program:
    """Start ``python *args`` with stdin, stdout and stderr piped."""
    return await start(nursery, *args, stderr=True)


async def interrupt(program: Program) -> tuple[int, str]:
    """Send SIGINT; return the exit status and everything on stderr."""
    program.process.send_signal(signal.SIGINT)
    assert program.process.stderr is not None
    errors = b""
    with trio.fail_after(20):
        while data := await program.process.stderr.receive_some():
            errors += data
        status = await program.process.wait()
    return status, errors.decode()


async def run_cli(*args: str, stdin: bytes = b"") -> tuple[int, str]:
    """Run ``python -m trio_ws *args``; return the exit status and all output."""
    with trio.fail_after(60):
        result = await trio.run_process(
            [sys.executable, "-m", "trio_ws", *args],
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=ROOT,
        )
    return result.returncode, result.stdout.decode() + result.stderr.decode()


async def _close_code(ws: trio_ws.WebSocketConnection) -> int:
    with trio.fail_after(20), pytest.raises(trio_ws.ConnectionClosed) as caught:
        await ws.get_message()
    return caught.value.reason.code


async def test_ctrl_c_stops_the_cli_server_quietly(nursery: trio.Nursery) -> None:
    server = await spawn(nursery, "-m", "trio_ws", "serve", "--port", "0")
    url = f"ws://{HOST}:{await server_port(server)}/"
    async with trio_ws.open_websocket_url(url) as ws:
        await ws.send_message("hello")
        assert await ws.get_message() == "hello"
        status, errors = await interrupt(server)
        assert await _close_code(ws) == 1001  # going away, not a normal closure
    assert "Traceback" not in errors and "ExceptionGroup" not in errors, errors
    assert status == EXIT_INTERRUPTED


SERVE_FOREVER = """
import sys, trio, trio_ws
from trio_ws.cli import echo
try:
    trio.run(trio_ws.serve_websocket, echo, "127.0.0.1", int(sys.argv[1]), None)
except KeyboardInterrupt as exc:
    print("caught", type(exc).__name__, flush=True)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


async def test_ctrl_c_leaves_trio_run_serve_websocket_as_keyboard_interrupt(
    nursery: trio.Nursery,
) -> None:
    # The README's server: trio.run(serve_websocket, ...) with no nursery of
    # the user's. Before the fix: nested BaseExceptionGroups around the
    # KeyboardInterrupt, which no `except KeyboardInterrupt` matches.
    port = _free_port()
    server = await spawn(nursery, "-c", SERVE_FOREVER, str(port))
    url = f"ws://{HOST}:{port}/"
    with trio.fail_after(20):
        while True:  # until the server listens
            try:
                await (await trio.open_tcp_stream(HOST, port)).aclose()
                break
            except OSError:
                await trio.sleep(0.05)
    async with trio_ws.open_websocket_url(url) as ws:
        await ws.send_message("hello")
        assert await ws.get_message() == "hello"
        status, errors = await interrupt(server)
        assert await _close_code(ws) == 1001
    assert "caught KeyboardInterrupt" in await _rest(server), errors
    assert status == 0 and "Traceback" not in errors, errors


async def _rest(program: Program) -> str:
    """What *program* printed on stdout and was not read yet."""
    assert program.process.stdout is not None
    rest = b""
    with trio.fail_after(20):
        while data := await program.process.stdout.receive_some():
            rest += data
    return program.output.decode() + rest.decode()


@pytest.mark.parametrize(
    ("example", "path"),
    [
        (["echo_server.py", "--port", "0"], "/"),
        (["chat_server.py", "--port", "0"], "/chat"),
        (["health_and_auth.py", "--port", "0", "--token", "secret"], "/"),
        (["upload.py", "serve", "--port", "0", "--directory", "{tmp}"], "/upload/x"),
        (["http_and_websocket.py", "--port", "0"], "/ws"),
    ],
)
async def test_ctrl_c_stops_the_example_servers_quietly(
    nursery: trio.Nursery, example: list[str], path: str, tmp_path: Path
) -> None:
    args = [arg.format(tmp=tmp_path) for arg in example]
    server = await spawn(nursery, str(ROOT / "examples" / args[0]), *args[1:])
    port = await server_port(server)
    auth = [("Authorization", "Bearer secret")]  # for health_and_auth.py
    async with trio_ws.open_websocket_url(f"ws://{HOST}:{port}{path}", extra_headers=auth) as ws:
        await trio.sleep(0.1)  # let the server's handler start
        status, errors = await interrupt(server)
        assert await _close_code(ws) == 1001
    assert "Traceback" not in errors and "ExceptionGroup" not in errors, errors
    assert status == 0


async def test_ctrl_c_quits_the_interactive_client_with_1001(nursery: trio.Nursery) -> None:
    codes: list[int] = []

    async def record(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            async for message in ws:
                await ws.send_message(message)
        except trio_ws.ConnectionClosed as exc:
            codes.append(exc.reason.code)
        else:
            assert ws.closed is not None
            codes.append(ws.closed.code)

    server = await nursery.start(trio_ws.serve_websocket, record, HOST, 0, None)
    client = await spawn(nursery, "-m", "trio_ws", f"ws://{HOST}:{server.port}/")
    await client.read_until("connected to")
    status, errors = await interrupt(client)  # stdin stays open: the client waits on it
    assert "Traceback" not in errors and "ExceptionGroup" not in errors, errors
    assert status == EXIT_INTERRUPTED
    with trio.fail_after(10):
        while not codes:
            await trio.sleep(0.01)
    assert codes == [1001]


async def test_piped_input_waits_for_the_answers(nursery: trio.Nursery) -> None:
    # Issue 13 item 15: with --linger defaulting to 0, piped input exited
    # before the answers came. This server answers each line 0.05 s late
    # (the client waits for 0.5 s without a message, so a loaded machine has margin).
    async def slow_echo(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        async for message in ws:
            await trio.sleep(1.0 if message == "slow" else 0.05)
            await ws.send_message(message)

    server = await nursery.start(trio_ws.serve_websocket, slow_echo, HOST, 0, None)
    url = f"ws://{HOST}:{server.port}/"
    status, output = await run_cli(url, stdin=b"hello\nworld\n")
    assert status == 0, output
    assert "< hello" in output and "< world" in output, output
    # --linger still decides when given: 0 does not wait for an answer 1 s late.
    status, output = await run_cli(url, "--linger", "0", stdin=b"slow\n")
    assert status == 0 and "< slow" not in output, output


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:8765/", "scheme must be ws or wss"),
        ("ws://127.0.0.1:99999/", "invalid port"),
        ("ws://127.0.0.1:port/", "invalid port"),
    ],
)
async def test_bad_url_is_a_one_line_usage_error(url: str, message: str) -> None:
    status, output = await run_cli(url, stdin=b"")
    assert status == 2
    assert len(output.strip().splitlines()) == 1 and message in output, output


async def test_help_is_plain_text() -> None:
    status, output = await run_cli("--help")
    assert status == 0
    assert "``" not in output and "exit status" in output, output
    assert "python -m trio_ws serve" in output


async def test_refused_connection_is_a_one_line_error() -> None:
    with socket.socket() as probe:  # bound, never listening: refused
        probe.bind((HOST, 0))
        status, output = await run_cli(f"ws://{HOST}:{probe.getsockname()[1]}/")
    assert status == 1 and output.startswith("error:") and "Connection refused" in output, output
