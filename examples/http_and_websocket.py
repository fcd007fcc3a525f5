"""Plain HTTP and WebSocket on one port: a page, a health check and an echo.

The request hook answers every request that is not a WebSocket upgrade:
``/`` gets a small HTML page whose script connects back to ``/ws``,
``/healthz`` gets "ok", anything else 404. Upgrades to ``/ws`` go on to the
handler; upgrades anywhere else get 404 too.

    python examples/http_and_websocket.py --port 8770
    # then open http://127.0.0.1:8770/ in a browser
"""

from __future__ import annotations

import argparse
import contextlib
from urllib.parse import urlsplit

import trio

import trio_ws

PAGE = b"""<!doctype html>
<meta charset="utf-8">
<title>trio_ws echo</title>
<form id="form"><input id="text" autofocus> <button>send</button></form>
<pre id="log"></pre>
<script>
  const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  ws.onopen = () => log("connected");
  ws.onmessage = (event) => log("< " + event.data);
  ws.onclose = (event) => log("closed: " + event.code);
  document.getElementById("form").onsubmit = (event) => {
    event.preventDefault();
    const input = document.getElementById("text");
    ws.send(input.value);
    input.value = "";
  };
</script>
"""

TEXT = [("Content-Type", "text/plain; charset=utf-8")]


def wants_websocket(request: trio_ws.HTTPRequest) -> bool:
    """Whether *request* asks for a WebSocket upgrade (``Upgrade: websocket``)."""
    tokens = (request.header("Upgrade") or "").lower().split(",")
    return "websocket" in (token.strip() for token in tokens)


async def route(request: trio_ws.HTTPRequest) -> trio_ws.HTTPResponse | None:
    """Answer plain HTTP here; return ``None`` to let an upgrade go on."""
    path = urlsplit(request.path).path  # without the query string
    if wants_websocket(request):
        return None if path == "/ws" else trio_ws.HTTPResponse(404, TEXT, b"no WebSocket here\n")
    if request.method != "GET":
        # The server reads and drops request bodies: this hook answers GET only.
        return trio_ws.HTTPResponse(405, [("Allow", "GET"), *TEXT], b"GET only\n")
    if path == "/":
        return trio_ws.HTTPResponse(200, [("Content-Type", "text/html; charset=utf-8")], PAGE)
    if path == "/healthz":
        return trio_ws.HTTPResponse(200, TEXT, b"ok\n")
    return trio_ws.HTTPResponse(404, TEXT, b"not found\n")


async def echo(request: trio_ws.WebSocketRequest) -> None:
    ws = await request.accept()
    async for message in ws:
        await ws.send_message(message)


async def main(host: str, port: int) -> None:
    listeners = await trio.open_tcp_listeners(port, host=host)
    server = trio_ws.WebSocketServer(echo, listeners, request_hook=route)
    where = f"{host}:{server.port}"
    print(f"page on http://{where}/, WebSocket on ws://{where}/ws", flush=True)
    await server.run()  # until Ctrl-C


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8770)
    args = parser.parse_args()
    # Ctrl-C: clients get 1001 (going away), KeyboardInterrupt comes out as itself.
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main, args.host, args.port)
