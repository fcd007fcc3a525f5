"""Streaming file upload: neither side ever holds the whole file in memory.

The server receives each upload as a message stream and writes the chunks to
disk as they arrive, with its own size limit (1 GiB here, far above the
connection's max_message_size); the client sends the file as fragments read
one chunk at a time.

    python examples/upload.py serve --port 8767 --directory /tmp/uploads
    python examples/upload.py send ws://127.0.0.1:8767/upload/name.bin FILE
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import trio

import trio_ws

CHUNK = 64 * 1024
LIMIT = 2**30


async def receive_upload(request: trio_ws.WebSocketRequest, directory: Path) -> None:
    name = Path(request.path).name
    if not request.path.startswith("/upload/") or not name:
        await request.reject(404)
        return
    ws = await request.accept()
    digest = hashlib.sha256()
    size = 0
    async with ws.get_message_stream(max_size=LIMIT) as chunks:
        async with await trio.open_file(directory / name, "wb") as out:
            async for chunk in chunks:
                data = chunk.encode() if isinstance(chunk, str) else chunk
                await out.write(data)
                digest.update(data)
                size += len(data)
    await ws.send_message(f"stored {size} bytes, sha256 {digest.hexdigest()}")


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    async with await trio.open_file(path, "rb") as source:
        while chunk := await source.read(CHUNK):
            yield chunk


async def send(url: str, path: Path) -> None:
    async with trio_ws.open_websocket_url(url) as ws:
        # Already-compressed files gain nothing from compression.
        await ws.send_message_stream(file_chunks(path), text=False, compress=False)
        print(await ws.get_message())


async def serve(host: str, port: int, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)

    async def handler(request: trio_ws.WebSocketRequest) -> None:
        await receive_upload(request, directory)

    server = trio_ws.WebSocketServer(handler, await trio.open_tcp_listeners(port, host=host))
    print(f"upload server on ws://{host}:{server.port}/upload/<name>", flush=True)
    await server.run()  # until Ctrl-C


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve_args = sub.add_parser("serve")
    serve_args.add_argument("--host", default="127.0.0.1")
    serve_args.add_argument("--port", type=int, default=8767)
    serve_args.add_argument("--directory", type=Path, default=Path("uploads"))
    send_args = sub.add_parser("send")
    send_args.add_argument("url")
    send_args.add_argument("file", type=Path)
    args = parser.parse_args()
    # Ctrl-C: clients get 1001 (going away), KeyboardInterrupt comes out as itself.
    with contextlib.suppress(KeyboardInterrupt):
        if args.command == "serve":
            trio.run(serve, args.host, args.port, args.directory)
        else:
            trio.run(send, args.url, args.file)
