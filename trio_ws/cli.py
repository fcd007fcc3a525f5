"""The command line: ``python -m trio_ws``.

``python -m trio_ws URL`` is an interactive client: each line typed is sent
as a text message and every message received is printed. ``python -m trio_ws
serve`` runs an echo server, and ``python -m trio_ws demo`` runs a server and
a client against each other in one process, then exits.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
from collections.abc import Callable, Sequence

import trio

from .client import open_websocket_url
from .connection import WebSocketConnection
from .exceptions import ConnectionClosed, HandshakeError
from .groups import one_error
from .options import (
    CLI_PIPE_LINGER_MAX,
    CLI_QUIET_SECONDS,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_SHUTDOWN_TIMEOUT,
)
from .runner import RunnerConfig, run_runner
from .server import WebSocketRequest, serve_websocket

#: Exit status after Ctrl-C: 128 + SIGINT, as shells report a program the
#: signal stopped. The program exits quietly (no traceback).
EXIT_INTERRUPTED = 130
#: Exit status for a command line that makes no sense (bad URL, bad option).
EXIT_USAGE = 2

DESCRIPTION = """\
A WebSocket client and echo server on the command line.

  python -m trio_ws URL        interactive client: each line typed is sent as
                               a text message; messages received are printed
  python -m trio_ws serve      run an echo server
  python -m trio_ws serve MODULE:HANDLER --workers N
                               serve a handler in N processes on one port
  python -m trio_ws demo       run a server and a client in one process

Run "python -m trio_ws COMMAND --help" for a command's options.
"""

EPILOG = """\
exit status: 0 after a normal close, 1 if connecting or the connection
failed, 2 for a bad command line or URL, 130 after Ctrl-C (the client closes
with 1001, going away; the server closes its connections with 1001).
"""


async def echo(request: WebSocketRequest) -> None:
    """A handler that sends every message back."""
    ws = await request.accept()
    async for message in ws:
        await ws.send_message(message)


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def _client_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.url.startswith("wss:"):
        return None
    context = ssl.create_default_context(cafile=args.cafile)
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _print_messages(
    ws: WebSocketConnection, out: trio.abc.SendStream, arrived: Callable[[], None]
) -> None:
    async for message in ws:
        arrived()
        text = message if isinstance(message, str) else f"<{len(message)} bytes: {message[:32]!r}>"
        await out.send_all(f"< {text}\n".encode())


async def _wait_for_answers(linger: float | None, last_arrival: list[float]) -> None:
    """After the end of input: sleep *linger* seconds if given; with piped
    input, wait until no message has come for CLI_QUIET_SECONDS (at most
    CLI_PIPE_LINGER_MAX), so the answers to the last lines are printed."""
    if linger is not None:
        await trio.sleep(linger)
        return
    if os.isatty(sys.stdin.fileno()):
        return  # someone typed Ctrl-D: they have seen the answers
    give_up = trio.current_time() + CLI_PIPE_LINGER_MAX
    while True:
        wake = min(last_arrival[0] + CLI_QUIET_SECONDS, give_up)
        if trio.current_time() >= wake:
            return
        await trio.sleep_until(wake)


async def run_client(args: argparse.Namespace) -> int:
    try:  # a bad URL is found here, before any network
        connecting = open_websocket_url(
            args.url,
            _client_context(args),
            subprotocols=args.subprotocol or None,
            extra_headers=args.header,
        )
    except (ValueError, TypeError) as exc:
        print(f"python -m trio_ws: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    stdout = trio.lowlevel.FdStream(os.dup(sys.stdout.fileno()))
    try:
        async with connecting as ws:
            await stdout.send_all(f"connected to {args.url}; Ctrl-D to close\n".encode())
            last_arrival = [trio.current_time()]

            def arrived() -> None:
                last_arrival[0] = trio.current_time()

            with one_error():
                async with trio.open_nursery() as nursery:

                    async def show_then_stop() -> None:
                        await _print_messages(ws, stdout, arrived)
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(show_then_stop)
                    buffered = b""
                    while chunk := await stdin.receive_some():
                        buffered += chunk
                        *lines, buffered = buffered.split(b"\n")
                        for line in lines:
                            await ws.send_message(line.decode(errors="replace"))
                    arrived()  # the quiet time counts from the end of input
                    await _wait_for_answers(args.linger, last_arrival)
                    nursery.cancel_scope.cancel()
        print(f"closed: {ws.closed}", file=sys.stderr)
        return 0
    except (HandshakeError, ConnectionClosed, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await stdin.aclose()
        await stdout.aclose()


async def run_server(args: argparse.Namespace) -> int:
    if args.handler is not None or args.workers != 1:
        try:
            return await run_runner(runner_config(args))
        except (ValueError, ImportError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    context = None
    if args.certfile:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.certfile, args.keyfile)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve_websocket(
                echo,
                args.host,
                args.port,
                context,
                max_message_size=args.max_message_size,
                task_status=task_status,
            )
        )
        for endpoint in server.listeners:
            print(f"echo server listening on {getattr(endpoint, 'url', endpoint)}", flush=True)
    return 0


async def run_demo(args: argparse.Namespace) -> int:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, echo, "127.0.0.1", 0, None)
        url = f"ws://127.0.0.1:{server.port}/demo"
        print(f"echo server listening on {url}")
        async with open_websocket_url(url) as ws:
            for text in ["hello", "from", "trio_ws"]:
                await ws.send_message(text)
                print(f"sent {text!r}, received {await ws.get_message()!r}")
            await ws.ping()
            print("ping answered")
        print(f"client closed: {ws.closed}")
        nursery.cancel_scope.cancel()
    return 0


def runner_config(args: argparse.Namespace) -> RunnerConfig:
    """The runner's settings from ``serve``'s arguments (TLS is not offered there)."""
    if args.certfile:
        raise SystemExit("error: --certfile is not supported with MODULE:HANDLER or --workers")
    return RunnerConfig(
        args.handler or "trio_ws.cli:echo",
        args.host,
        args.port,
        args.workers,
        args.shutdown_timeout,
        args.max_message_size,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trio_ws",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="run an echo server, or MODULE:HANDLER in workers")
    serve.add_argument("handler", nargs="?", help="MODULE:HANDLER to serve (default: echo)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes on one port")
    serve.add_argument("--shutdown-timeout", type=float, default=DEFAULT_SHUTDOWN_TIMEOUT)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--certfile", help="PEM certificate chain: serve wss://")
    serve.add_argument("--keyfile", help="PEM private key, if not in the certificate file")
    serve.add_argument("--max-message-size", type=int, default=DEFAULT_MAX_MESSAGE_SIZE)

    sub.add_parser("demo", help="run a server and a client in one process, then exit")

    client = sub.add_parser(
        "connect", help="interactive client (the default command)", epilog=EPILOG
    )
    client.add_argument("url", help="ws:// or wss:// URL")
    client.add_argument(
        "--header",
        action="append",
        type=_parse_header,
        default=[],
        help="extra request header 'Name: value' (repeatable)",
    )
    client.add_argument("--subprotocol", action="append", help="offer a subprotocol (repeatable)")
    client.add_argument("--cafile", help="trust this CA bundle for wss://")
    client.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the server certificate (testing only)",
    )
    client.add_argument(
        "--linger",
        type=float,
        default=None,
        help=(
            "seconds to keep printing after end of input (default: none when typing; "
            f"with piped input, until no message came for {CLI_QUIET_SECONDS} s, "
            f"at most {CLI_PIPE_LINGER_MAX:g} s)"
        ),
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in ("serve", "demo", "connect", "-h", "--help"):
        argv.insert(0, "connect")  # python -m trio_ws URL
    args = build_parser().parse_args(argv)
    runner = {"serve": run_server, "demo": run_demo, "connect": run_client}.get(args.command)
    if runner is None:
        build_parser().print_help()
        return 2
    try:
        with one_error():
            return trio.run(runner, args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED  # quietly: Ctrl-C is how these programs stop
