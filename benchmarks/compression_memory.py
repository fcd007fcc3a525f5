"""Memory per connection for each permessage-deflate setting.

Opens N client/server connection pairs in this process for each setting,
echoes one message on each (compressible, short, or none at all), and
reports the Python-traced memory per connection side
(zlib allocates through Python's allocator, so tracemalloc sees it). Not a
test: run it by hand,

    python benchmarks/compression_memory.py [--connections 200]
"""

from __future__ import annotations

import argparse
import tracemalloc

import trio

import trio_ws
from trio_ws import DeflateOptions

SETTINGS: list[tuple[str, DeflateOptions | None]] = [
    ("compression off", None),
    ("default: 12 bits, mem_level 5", DeflateOptions()),
    ("15 bits, mem_level 8 (zlib defaults)", DeflateOptions(15, 15, mem_level=8)),
    ("15 bits, mem_level 5", DeflateOptions(15, 15)),
    ("10 bits, mem_level 3", DeflateOptions(10, 10, mem_level=3)),
    (
        "12 bits, no context takeover",
        DeflateOptions(server_no_context_takeover=True, client_no_context_takeover=True),
    ),
]


#: What each connection echoes once: a compressible message (so both sides'
#: zlib streams exist), a short one (under min_size: sent uncompressed), or
#: nothing (idle).
MESSAGES = {
    "after a 1 KiB message": "a fairly ordinary JSON-ish message {'id': 1, 'ok': true} " * 20,
    "after a 16 B message": "short message 16",
    "idle": None,
}


async def per_connection(options: DeflateOptions | None, count: int, message: str | None) -> float:
    async def hold(request: trio_ws.WebSocketRequest) -> None:
        ws = await request.accept()
        if message is not None:
            await ws.send_message(await ws.get_message())
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: trio_ws.serve_websocket(
                hold, "127.0.0.1", 0, None, compression=options, task_status=task_status
            )
        )
        url = f"ws://127.0.0.1:{server.port}/"
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        clients = []
        for _ in range(count):
            ws = await trio_ws.connect_websocket_url(nursery, url, compression=options)
            if message is not None:
                await ws.send_message(message)
                await ws.get_message()
            clients.append(ws)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        nursery.cancel_scope.cancel()
    return (after - before) / (2 * count)  # a client side and a server side each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    args = parser.parse_args()
    print(f"traced memory per connection side (KiB), {args.connections} connection pairs")
    print(f"{'setting':38} " + " ".join(f"{name:>22}" for name in MESSAGES))
    for label, options in SETTINGS:
        sizes = [
            trio.run(per_connection, options, args.connections, message)
            for message in MESSAGES.values()
        ]
        print(f"{label:38} " + " ".join(f"{size / 1024:22.1f}" for size in sizes))


if __name__ == "__main__":
    main()
