"""Who is connecting: the three ways a browser can prove it.

Browsers cannot set headers on a WebSocket, so the credential travels
another way, and this server accepts each of them:

* a single-use ticket in the query string, ``/ws?ticket=...``;
* a ``session`` cookie, trusted only from the site's own pages (``Origin``);
* no credential in the request: the handler waits for the token as the
  first message.

The request hook checks the first two before the upgrade and stores the user
in ``request.state["user"]``; the handler finds the same dict as
``WebSocketRequest.state``.

    python examples/authentication.py --port 8771
    python -m trio_ws 'ws://127.0.0.1:8771/ws?ticket=t1ck3t-bob'
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Awaitable, Callable, Collection
from http.cookies import CookieError, SimpleCookie

import trio

import trio_ws

#: Session tokens a login page would have issued (as a cookie, say).
SESSIONS = {"s3ss10n-alice": "alice"}
#: Single-use tickets; a real server hands them out over HTTPS to a page
#: that is already logged in, just before it opens the WebSocket.
TICKETS = {"t1ck3t-bob": "bob"}
#: How long a connection without credentials may take to send its token.
FIRST_MESSAGE_TIMEOUT = 5

Hook = Callable[[trio_ws.HTTPRequest], Awaitable[trio_ws.HTTPResponse | None]]
UNAUTHORIZED = trio_ws.HTTPResponse(401, [("Content-Type", "text/plain")], b"not logged in\n")


def cookie(request: trio_ws.HTTPRequest, name: str) -> str | None:
    """The value of cookie *name* in the request's ``Cookie`` header, or ``None``."""
    try:
        morsel = SimpleCookie(request.header("Cookie") or "").get(name)
    except CookieError:
        return None
    return morsel.value if morsel is not None else None


def make_hook(origins: Collection[str]) -> Hook:
    async def authenticate(request: trio_ws.HTTPRequest) -> trio_ws.HTTPResponse | None:
        if (ticket := request.query.get("ticket")) is not None:
            user = TICKETS.pop(ticket, None)  # single use: gone once tried
            if user is None:
                return UNAUTHORIZED
            request.state["user"] = user
        elif (session := cookie(request, "session")) is not None:
            # Any web page can open a WebSocket to this server, and the
            # browser attaches the cookie: trust it from our own pages only.
            if request.header("Origin") not in origins:
                return trio_ws.HTTPResponse(403, body=b"cross-site request\n")
            if (user := SESSIONS.get(session)) is None:
                return UNAUTHORIZED
            request.state["user"] = user
        return None  # go on; without a user the handler asks for a token

    return authenticate


async def first_message_user(ws: trio_ws.WebSocketConnection) -> str | None:
    """Wait briefly for a session token as the first message; its user or ``None``."""
    with trio.move_on_after(FIRST_MESSAGE_TIMEOUT):
        try:
            token = await ws.get_message()
        except trio_ws.ConnectionClosed:
            return None  # gone before saying who it is
        return SESSIONS.get(token) if isinstance(token, str) else None
    return None  # too slow


async def chat(request: trio_ws.WebSocketRequest) -> None:
    user: str | None = request.state.get("user")  # set by the hook, or not
    ws = await request.accept()
    if user is None and (user := await first_message_user(ws)) is None:
        await ws.aclose(1008, "authentication required")
        return
    await ws.send_message(f"hello {user}")
    async for message in ws:
        if isinstance(message, str):  # a text chat: binary messages are ignored
            await ws.send_message(f"{user}: {message}")


async def main(host: str, port: int, origins: list[str]) -> None:
    listeners = await trio.open_tcp_listeners(port, host=host)
    server = trio_ws.WebSocketServer(chat, listeners, request_hook=make_hook(origins))
    print(f"listening on ws://{host}:{server.port}/ws", flush=True)
    await server.run()  # until Ctrl-C


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8771)
    parser.add_argument(
        "--origin",
        action="append",
        default=None,
        help="an origin whose pages may use the session cookie (repeatable)",
    )
    args = parser.parse_args()
    origins = args.origin or ["http://localhost:8771"]
    # Ctrl-C: clients get 1001 (going away), KeyboardInterrupt comes out as itself.
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main, args.host, args.port, origins)
