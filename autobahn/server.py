"""Echo server for the Autobahn fuzzing client (wstest -m fuzzingclient).

Written only on trio_ws's public API.
"""

from __future__ import annotations

import argparse

import trio

import trio_ws

MAX_SIZE = 64 * 1024 * 1024  # the suite sends messages of up to 16 MiB


async def echo(request: trio_ws.WebSocketRequest) -> None:
    ws = await request.accept()
    async for message in ws:
        await ws.send_message(message)


async def main(port: int) -> None:
    await trio_ws.serve_websocket(
        echo, "127.0.0.1", port, None, max_message_size=MAX_SIZE, disconnect_timeout=5
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=9002)
    trio.run(main, parser.parse_args().port)
