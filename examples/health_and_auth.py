"""A request hook: health checks, token authentication and a redirect.

The hook sees every HTTP request before the WebSocket upgrade, including
plain HTTP ones, and may answer it itself.

    python examples/health_and_auth.py --port 8768 --token s3cret
    curl http://127.0.0.1:8768/healthz
    python -m trio_ws ws://127.0.0.1:8768/ --header 'Authorization: Bearer s3cret'
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import trio

import trio_ws

Hook = Callable[[trio_ws.HTTPRequest], Awaitable[trio_ws.HTTPResponse | None]]


def make_hook(token: str) -> Hook:
    expected = f"Bearer {token}"

    async def hook(request: trio_ws.HTTPRequest) -> trio_ws.HTTPResponse | None:
        # request.path is the whole request target: compare the path alone,
        # so that "/healthz?probe=1" is still the health check.
        path = urlsplit(request.path).path
        if path == "/healthz":
            return trio_ws.HTTPResponse(200, [("Content-Type", "text/plain")], b"ok\n")
        if path == "/chat":
            return trio_ws.HTTPResponse(301, [("Location", "/")])
        given = request.header("Authorization") or ""
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return trio_ws.HTTPResponse(401, [("WWW-Authenticate", "Bearer")], b"token needed\n")
        return None  # go on with the upgrade

    return hook


async def echo(request: trio_ws.WebSocketRequest) -> None:
    ws = await request.accept()
    async for message in ws:
        await ws.send_message(message)


async def main(host: str, port: int, token: str) -> None:
    listeners = await trio.open_tcp_listeners(port, host=host)
    server = trio_ws.WebSocketServer(echo, listeners, request_hook=make_hook(token))
    print(f"listening on ws://{host}:{server.port}/ (health: /healthz)", flush=True)
    await server.run()  # until Ctrl-C


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8768)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    # Ctrl-C: clients get 1001 (going away), KeyboardInterrupt comes out as itself.
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main, args.host, args.port, args.token)
