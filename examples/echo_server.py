"""An echo server: every message comes back to its sender.

python examples/echo_server.py --port 8765
"""

from __future__ import annotations

import argparse
import contextlib

import trio

import trio_ws


async def echo(request: trio_ws.WebSocketRequest) -> None:
    ws = await request.accept()
    async for message in ws:  # ends quietly when the client closes normally
        await ws.send_message(message)


async def main(host: str, port: int) -> None:
    # No nursery of our own: server.run() is this task's own call, so Ctrl-C
    # leaves it as a plain KeyboardInterrupt, not in an exception group.
    server = trio_ws.WebSocketServer(echo, await trio.open_tcp_listeners(port, host=host))
    print(f"echo server on ws://{host}:{server.port}/", flush=True)
    await server.run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    # Ctrl-C: clients get 1001 (going away), KeyboardInterrupt comes out as itself.
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main, args.host, args.port)
