"""A client: send each argument as a message and print the answers.

python examples/client.py ws://127.0.0.1:8765/ hello world
"""

from __future__ import annotations

import argparse
import contextlib

import trio

import trio_ws


async def main(url: str, messages: list[str]) -> None:
    async with trio_ws.open_websocket_url(url) as ws:
        for text in messages:
            await ws.send_message(text)
            print(await ws.get_message())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("messages", nargs="+")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C closes with 1001, quietly
        trio.run(main, args.url, args.messages)
