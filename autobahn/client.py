"""Echo client for the Autobahn fuzzing server (wstest -m fuzzingserver).

Runs every case the server has, echoing each message back, then asks the
server to write its report. Written only on trio_ws's public API.
"""

from __future__ import annotations

import argparse
import json

import trio

import trio_ws

AGENT = "trio_ws"
MAX_SIZE = 64 * 1024 * 1024  # the suite sends messages of up to 16 MiB


async def run_case(url: str, case: int) -> None:
    try:
        async with trio_ws.open_websocket_url(
            f"{url}/runCase?case={case}&agent={AGENT}",
            max_message_size=MAX_SIZE,
            disconnect_timeout=5,
        ) as ws:
            async for message in ws:
                await ws.send_message(message)
    except (trio_ws.ConnectionClosed, trio_ws.DisconnectionTimeout, trio_ws.HandshakeError):
        pass  # the case decides how the connection ends; the report judges it


async def main(url: str, case_count: int | None) -> None:
    if case_count is None:
        async with trio_ws.open_websocket_url(f"{url}/getCaseCount") as ws:
            count = json.loads(await ws.get_message())
    else:
        count = case_count
    for case in range(1, count + 1):
        await run_case(url, case)
    async with trio_ws.open_websocket_url(f"{url}/updateReports?agent={AGENT}") as ws:
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="ws://127.0.0.1:9001")
    parser.add_argument(
        "--case-count", type=int, help="number of cases; skips asking /getCaseCount"
    )
    args = parser.parse_args()
    trio.run(main, args.url, args.case_count)
