"""TLS with a locally generated certificate (needs ``pip install trustme``).

Creates a throwaway certificate authority and a certificate for localhost,
serves ``wss://`` with it, and connects a client that trusts that authority,
with full certificate verification. Use a real certificate in production.

    python examples/tls.py
"""

from __future__ import annotations

import ssl

import trio
import trustme

import trio_ws


async def echo(request: trio_ws.WebSocketRequest) -> None:
    ws = await request.accept()
    async for message in ws:
        await ws.send_message(message)


async def main() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_ws.serve_websocket, echo, "127.0.0.1", 0, server_context)
        url = f"wss://localhost:{server.port}/"
        async with trio_ws.open_websocket_url(url, client_context) as ws:
            await ws.send_message("hello over TLS")
            print(await ws.get_message())
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
