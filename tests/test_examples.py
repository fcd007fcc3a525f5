"""Every example and the command line, run for real against a live peer."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import trio_ws

from .support.peers import http_exchange

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


class Program:
    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.output = b""

    async def read_until(self, pattern: str, seconds: float = 20) -> re.Match[str]:
        assert self.process.stdout is not None
        with trio.fail_after(seconds):
            while not (match := re.search(pattern, self.output.decode())):
                data = await self.process.stdout.receive_some()
                assert data, f"exited before printing {pattern!r}: {self.output!r}"
                self.output += data
        return match


async def start(nursery: trio.Nursery, *args: str, stderr: bool = False) -> Program:
    """Start ``python *args`` with stdin and stdout (and, with *stderr*, stderr) piped."""
    process = await nursery.start(
        lambda task_status: trio.run_process(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE if stderr else None,
            cwd=ROOT,
            check=False,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            # A shell's background job ignores SIGINT, and a Python started
            # that way has no KeyboardInterrupt: give the child the default.
            preexec_fn=_default_sigint,
            task_status=task_status,
        )
    )
    return Program(process)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def run(*args: str, stdin: bytes = b"") -> str:
    with trio.fail_after(60):
        result = await trio.run_process(
            [sys.executable, *args], stdin=stdin, capture_stdout=True, capture_stderr=True, cwd=ROOT
        )
    return result.stdout.decode() + result.stderr.decode()


async def server_port(program: Program) -> int:
    return int((await program.read_until(r"ws://127\.0\.0\.1:(\d+)")).group(1))


async def test_echo_server_and_client(nursery: trio.Nursery) -> None:
    server = await start(nursery, str(EXAMPLES / "echo_server.py"), "--port", "0")
    port = await server_port(server)
    output = await run(str(EXAMPLES / "client.py"), f"ws://127.0.0.1:{port}/", "hello", "again")
    assert output.splitlines() == ["hello", "again"]
    server.process.terminate()


async def test_chat_server_rooms_page_and_slow_clients(nursery: trio.Nursery) -> None:
    server = await start(nursery, str(EXAMPLES / "chat_server.py"), "--port", "0")
    port = await server_port(server)
    page = await http_exchange(port, b"GET /?room=a HTTP/1.1\r\nHost: x\r\n\r\n")
    assert page.startswith(b"HTTP/1.1 200 ") and b"new WebSocket(" in page
    url = f"ws://127.0.0.1:{port}/chat?room=a"
    async with (
        trio_ws.open_websocket_url(url) as alice,
        trio_ws.open_websocket_url(url) as bob,
        trio_ws.open_websocket_url(url, compression=None) as slow,
        trio_ws.open_websocket_url(f"ws://127.0.0.1:{port}/chat?room=b") as elsewhere,
    ):
        await elsewhere.send_message("only room b")
        assert await elsewhere.get_message() == "only room b"
        await alice.send_message("hi all")
        assert await bob.get_message() == "hi all"
        assert await alice.get_message() == "hi all"
        # slow never reads; big incompressible messages fill its buffers.
        for i in range(120):
            await bob.send_message(f"{i} " + os.urandom(50_000).hex())
            await alice.get_message()
            await bob.get_message()
        with trio.fail_after(10):
            with pytest.raises(trio_ws.ConnectionClosed) as info:
                while True:
                    assert "only room b" not in await slow.get_message()
        assert info.value.reason.code == 1013  # try again later: reconnect and resync
    server.process.terminate()


async def test_streaming_upload(nursery: trio.Nursery, tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    server = await start(
        nursery, str(EXAMPLES / "upload.py"), "serve", "--port", "0", "--directory", str(uploads)
    )
    port = await server_port(server)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(3_000_000))  # bigger than max_message_size
    output = await run(
        str(EXAMPLES / "upload.py"), "send", f"ws://127.0.0.1:{port}/upload/big.bin", str(source)
    )
    assert "stored 3000000 bytes" in output
    assert (uploads / "big.bin").read_bytes() == source.read_bytes()
    server.process.terminate()


async def test_health_check_and_auth_hook(nursery: trio.Nursery) -> None:
    server = await start(
        nursery, str(EXAMPLES / "health_and_auth.py"), "--port", "0", "--token", "t0k"
    )
    port = await server_port(server)
    health = await http_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert health.startswith(b"HTTP/1.1 200 ")
    # Probes often add a query string; it must not send them to the auth check.
    probe = await http_exchange(port, b"GET /healthz?probe=k8s HTTP/1.1\r\nHost: x\r\n\r\n")
    assert probe.startswith(b"HTTP/1.1 200 "), probe
    with pytest.raises(trio_ws.ConnectionRejected) as info:
        async with trio_ws.open_websocket_url(f"ws://127.0.0.1:{port}/"):
            pass  # pragma: no cover
    assert info.value.status_code == 401
    async with trio_ws.open_websocket_url(
        f"ws://127.0.0.1:{port}/", extra_headers=[("Authorization", "Bearer t0k")]
    ) as ws:
        await ws.send_message("authorised")
        assert await ws.get_message() == "authorised"
    server.process.terminate()


async def test_plain_http_and_websocket_on_one_port(nursery: trio.Nursery) -> None:
    server = await start(nursery, str(EXAMPLES / "http_and_websocket.py"), "--port", "0")
    port = await server_port(server)
    page = await http_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert page.startswith(b"HTTP/1.1 200 ") and b"new WebSocket(" in page
    health = await http_exchange(port, b"GET /healthz?probe=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert health.startswith(b"HTTP/1.1 200 ") and health.endswith(b"\r\n\r\nok\n")
    missing = await http_exchange(port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert missing.startswith(b"HTTP/1.1 404 ")
    post = await http_exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
    assert post.startswith(b"HTTP/1.1 405 ") and b"\r\nallow: GET\r\n" in post
    async with trio_ws.open_websocket_url(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.send_message("same port")
        assert await ws.get_message() == "same port"
    with pytest.raises(trio_ws.ConnectionRejected) as info:
        async with trio_ws.open_websocket_url(f"ws://127.0.0.1:{port}/elsewhere"):
            pass  # pragma: no cover
    assert info.value.status_code == 404
    server.process.terminate()  # tests/test_cli.py tests its Ctrl-C


async def test_authentication_ticket_cookie_and_first_message(nursery: trio.Nursery) -> None:
    origin = "https://app.example"
    server = await start(
        nursery, str(EXAMPLES / "authentication.py"), "--port", "0", "--origin", origin
    )
    url = f"ws://127.0.0.1:{await server_port(server)}/ws"

    async def rejection(url: str, headers: list[tuple[str, str]] | None = None) -> int:
        with pytest.raises(trio_ws.ConnectionRejected) as info:
            async with trio_ws.open_websocket_url(url, extra_headers=headers):
                pass  # pragma: no cover
        return info.value.status_code

    # A ticket in the query string: the hook finds the user, the handler greets them.
    async with trio_ws.open_websocket_url(url + "?ticket=t1ck3t-bob") as ws:
        assert await ws.get_message() == "hello bob"
        await ws.send_message("hi")
        assert await ws.get_message() == "bob: hi"
    assert await rejection(url + "?ticket=t1ck3t-bob") == 401  # single use
    # A session cookie, from the site's own page and from another site.
    cookie = ("Cookie", "theme=dark; session=s3ss10n-alice")
    async with trio_ws.open_websocket_url(url, extra_headers=[cookie, ("Origin", origin)]) as ws:
        assert await ws.get_message() == "hello alice"
    assert await rejection(url, [cookie, ("Origin", "https://evil.example")]) == 403
    assert await rejection(url, [("Cookie", "session=wrong"), ("Origin", origin)]) == 401
    # No credential in the request: the token is the first message.
    async with trio_ws.open_websocket_url(url) as ws:
        await ws.send_message("s3ss10n-alice")
        assert await ws.get_message() == "hello alice"
    async with trio_ws.open_websocket_url(url) as ws:
        await ws.send_message("wrong")
        with pytest.raises(trio_ws.ConnectionClosed) as closed:
            await ws.get_message()
    assert closed.value.reason.code == 1008
    # Ctrl-C: the connected client gets 1001 and the server exits quietly.
    async with trio_ws.open_websocket_url(url) as ws:
        await ws.send_message("s3ss10n-alice")
        assert await ws.get_message() == "hello alice"
        server.process.send_signal(signal.SIGINT)
        with trio.fail_after(10), pytest.raises(trio_ws.ConnectionClosed) as closed:
            await ws.get_message()
    assert closed.value.reason.code == 1001
    with trio.fail_after(10):
        assert await server.process.wait() == 0  # an exception group would exit 1


async def test_tls_example() -> None:
    assert "hello over TLS" in await run(str(EXAMPLES / "tls.py"))


async def test_graceful_shutdown_on_sigterm(nursery: trio.Nursery) -> None:
    server = await start(nursery, str(EXAMPLES / "graceful_shutdown.py"), "--port", "0")
    port = await server_port(server)
    # It prints its pid, so that the reader knows what to send SIGTERM to.
    assert int((await server.read_until(r"pid (\d+)")).group(1)) == server.process.pid
    async with trio_ws.open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
        await ws.send_message("before")
        assert await ws.get_message() == "before"
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(10), pytest.raises(trio_ws.ConnectionClosed) as info:
            await ws.get_message()
    assert info.value.reason.code == 1001
    await server.read_until("clean exit")
    with trio.fail_after(10):
        assert await server.process.wait() == 0


async def test_cli_demo() -> None:
    output = await run("-m", "trio_ws", "demo")
    assert "received 'trio_ws'" in output and "ping answered" in output


async def test_cli_serve_and_interactive_client(nursery: trio.Nursery) -> None:
    server = await start(nursery, "-m", "trio_ws", "serve", "--port", "0")
    port = await server_port(server)
    output = await run(
        "-m", "trio_ws", f"ws://127.0.0.1:{port}/", "--linger", "1", stdin=b"line one\nline two\n"
    )
    assert "< line one" in output and "< line two" in output
    assert "closed: 1000/NORMAL_CLOSURE" in output
    server.process.terminate()
