"""A chat server with rooms, and the chat page for a browser.

Open http://127.0.0.1:8766/?room=lobby in two browser tabs and type. The
request hook serves the page (plain HTML and JavaScript) to plain HTTP
requests; the page's WebSocket goes to /chat?room=lobby. Every message sent
to a room goes to every member of the room, the sender included, through
``Rooms.publish``: it never waits on anyone, so one slow client cannot stall
the others. A client too slow to keep up is closed with 1013 ("try again
later"), and the page reconnects after a pause, as any client should.

    python examples/chat_server.py --port 8766
"""

from __future__ import annotations

import argparse
import contextlib
from urllib.parse import parse_qs, urlsplit

import trio

import trio_ws

PAGE = b"""<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>trio_ws chat</title>
<style>
  body { font: 16px sans-serif; max-width: 40em; margin: 2em auto; }
  #log { border: 1px solid #ccc; height: 20em; overflow-y: auto; padding: .5em; }
  #status { color: #666; }
</style>
<h1>Room <span id="room"></span></h1>
<p id="status">connecting</p>
<div id="log"></div>
<form id="form"><input id="text" autocomplete="off" size="50"> <button>Send</button></form>
<script>
"use strict";
const room = new URLSearchParams(location.search).get("room") || "lobby";
const chat = { received: [], socket: null, open: false };
window.chat = chat;
document.getElementById("room").textContent = room;

function show(text) {
  const line = document.createElement("div");
  line.textContent = text;
  const log = document.getElementById("log");
  log.append(line);
  log.scrollTop = log.scrollHeight;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/chat?room=${encodeURIComponent(room)}`);
  chat.socket = socket;
  socket.onopen = () => {
    chat.open = true;
    document.getElementById("status").textContent = "connected";
  };
  socket.onmessage = (event) => {
    chat.received.push(event.data);
    show(event.data);
  };
  socket.onclose = (event) => {
    chat.open = false;
    document.getElementById("status").textContent = `closed (${event.code})`;
    // 1013: the server dropped us for falling behind; come back and resync.
    if (event.code === 1013) setTimeout(connect, 1000 + Math.random() * 2000);
  };
}

chat.send = (text) => chat.socket.send(text);
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  if (chat.open && input.value) chat.send(input.value);
  input.value = "";
};
connect();
</script>
</html>
"""


def room_of(path: str) -> str:
    """The room named in *path*'s query (``?room=name``), ``lobby`` by default."""
    return parse_qs(urlsplit(path).query).get("room", ["lobby"])[0]


class Chat:
    """The rooms of one server, its handler and its request hook."""

    def __init__(self) -> None:
        self.rooms = trio_ws.Rooms()

    async def serve_page(self, request: trio_ws.HTTPRequest) -> trio_ws.HTTPResponse | None:
        """Answer plain HTTP requests for the page; let upgrades through."""
        if (request.header("upgrade") or "").lower() == "websocket":
            return None
        if urlsplit(request.path).path == "/":
            headers = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")]
            return trio_ws.HTTPResponse(200, headers, PAGE)
        return trio_ws.HTTPResponse(404, [("Content-Type", "text/plain")], b"not found\n")

    async def handler(self, request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        room = room_of(ws.path)
        self.rooms.join(room, ws)  # it leaves on its own when it closes
        async for message in ws:  # ends quietly on 1000 or 1001
            self.rooms.publish(room, message if isinstance(message, str) else message.hex())


async def main(host: str, port: int) -> None:
    chat = Chat()
    listeners = await trio.open_tcp_listeners(port, host=host)
    server = trio_ws.WebSocketServer(chat.handler, listeners, request_hook=chat.serve_page)
    print(f"chat server on ws://{host}:{server.port}/chat", flush=True)
    print(f"chat page at http://{host}:{server.port}/?room=lobby", flush=True)
    await server.run()  # until Ctrl-C


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    # Ctrl-C: clients get 1001 (going away), KeyboardInterrupt comes out as itself.
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main, args.host, args.port)
