"""An echo server: every message comes back to its sender.

python examples/echo_server.py --port 8765
"""

from __future__ import annotations

import argparse

import trio

import trio_ws


async def echo(request: trio_ws.WebSocketRequest) -> None:
    ws = await request.accept()
    async for message in ws:  # ends quietly when the client closes normally
        await ws.send_message(message)


async def main(host: str, port: int) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_ws.serve_websocket, echo, host, port, None)
        print(f"echo server on ws://{host}:{server.port}/", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    trio.run(main, args.host, args.port)
