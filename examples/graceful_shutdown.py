"""Graceful shutdown on SIGTERM (or Ctrl-C): the way a service is stopped.

On the signal the server stops accepting, closes every connection with 1001
"going away", gives handlers up to 10 seconds to finish, and exits cleanly.

    python examples/graceful_shutdown.py --port 8769 &
    kill -TERM %1        # or: kill -TERM <the pid it printed>
"""

from __future__ import annotations

import argparse
import os
import signal

import trio

import trio_ws


async def echo(request: trio_ws.WebSocketRequest) -> None:
    ws = await request.accept()
    async for message in ws:
        await ws.send_message(message)
    print(f"handler done: {ws.closed}", flush=True)


async def main(host: str, port: int) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(trio_ws.serve_websocket, echo, host, port, None)
            print(f"serving on ws://{host}:{server.port}/ (pid {os.getpid()})", flush=True)
            async for signum in signals:
                print(f"got {signal.Signals(signum).name}: shutting down", flush=True)
                await server.shutdown(timeout=10)
                break
    print("clean exit", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8769)
    args = parser.parse_args()
    trio.run(main, args.host, args.port)
