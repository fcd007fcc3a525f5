"""A real browser against the chat example: headless Chromium, two pages, one room.

The browser is driven through the DevTools protocol, which is JSON over a
WebSocket: trio_ws itself is the DevTools client. The server runs in this
process so that the test can watch its side of each connection.

In CI (``CI=true``) the test must run: a missing Chromium fails it. Elsewhere
it is skipped, saying why.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio

import trio_ws

from .conftest import HOST

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # the tests may run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
]


def find_chromium() -> str:
    for name in (os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser"):
        if name and (path := shutil.which(name)):
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium); CI runs this test")


def load_chat_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chat_server", ROOT / "examples/chat_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class DevTools:
    """One call at a time over the browser's DevTools WebSocket."""

    def __init__(self, ws: trio_ws.WebSocketConnection) -> None:
        self.ws = ws
        self.last_id = 0

    async def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        self.last_id += 1
        request: dict[str, Any] = {"id": self.last_id, "method": method, "params": params}
        if session is not None:
            request["sessionId"] = session
        await self.ws.send_message(json.dumps(request))
        with trio.fail_after(20):
            while True:  # events come in between; only the answer matters
                answer = json.loads(await self.ws.get_message())
                if answer.get("id") == self.last_id:
                    break
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    async def open_page(self, url: str) -> str:
        target = await self.call("Target.createTarget", url=url)
        attached = await self.call(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        self.targets[attached["sessionId"]] = target["targetId"]
        return str(attached["sessionId"])

    targets: dict[str, str]

    async def evaluate(self, session: str, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", session, expression=expression, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, session: str, expression: str, seconds: float = 20) -> Any:
        with trio.fail_after(seconds):
            while not (value := await self.evaluate(session, expression)):
                await trio.sleep(0.05)
        return value


@pytest.fixture
def chromium() -> str:
    """Synchronous, so that a skip or failure is reported as itself."""
    return find_chromium()


@pytest.fixture
async def devtools(nursery: trio.Nursery, tmp_path: Path, chromium: str) -> AsyncIterator[DevTools]:
    profile = tmp_path / "profile"
    profile.mkdir()
    process = await trio.lowlevel.open_process(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    stderr = process.stderr
    output = b""
    try:
        with trio.fail_after(30):
            while not (found := re.search(rb"DevTools listening on (ws://\S+)", output)):
                data = await stderr.receive_some()
                assert data, f"chromium exited: {output.decode(errors='replace')[-2000:]}"
                output += data

        async def drain() -> None:  # a full pipe would stall the browser
            while await stderr.receive_some():
                pass

        nursery.start_soon(drain)
        async with trio_ws.open_websocket_url(
            found.group(1).decode(), max_message_size=16 * 2**20
        ) as ws:
            tools = DevTools(ws)
            tools.targets = {}
            yield tools
            with trio.move_on_after(5):
                await tools.call("Browser.close")
    finally:
        with trio.move_on_after(10) as waiting:
            await process.wait()
        if waiting.cancelled_caught:
            process.kill()
            await process.wait()


async def test_two_browser_pages_chat_in_one_room(
    nursery: trio.Nursery, devtools: DevTools
) -> None:
    chat = load_chat_example().Chat()
    server = await nursery.start(
        lambda task_status: trio_ws.serve_websocket(
            chat.handler, HOST, 0, None, request_hook=chat.serve_page, task_status=task_status
        )
    )
    url = f"http://{HOST}:{server.port}/?room=browsers"
    alice = await devtools.open_page(url)
    bob = await devtools.open_page(url)
    for page in (alice, bob):
        await devtools.wait_for(page, "window.chat && window.chat.open")
        # The browser's own offer, accepted by the server's defaults.
        extensions = await devtools.evaluate(page, "chat.socket.extensions")
        assert extensions.startswith("permessage-deflate"), extensions
    members = chat.rooms.members("browsers")
    assert len(members) == 2 and len(chat.rooms) == 1
    closes: list[trio_ws.CloseReason | None] = []
    for ws in members:
        ws.add_close_callback(lambda ws: closes.append(ws.closed))

    # Long and compressible, so that compression is used both ways.
    await devtools.evaluate(alice, "chat.send('from alice ' + 'la'.repeat(2000)), 1")
    await devtools.wait_for(bob, "chat.received.includes('from alice ' + 'la'.repeat(2000))")
    await devtools.evaluate(bob, "chat.send('from bob'), 1")
    await devtools.wait_for(alice, "chat.received.includes('from bob')")
    for _ in range(3):  # several, so that each page's inflater keeps its context
        assert chat.rooms.publish("browsers", "from the server " * 100) == 2
    for page in (alice, bob):
        await devtools.wait_for(page, "chat.received.length === 5")
        assert await devtools.evaluate(page, "chat.received") == [
            "from alice " + "la" * 2000,
            "from bob",
            *["from the server " * 100] * 3,
        ]

    # Closing a page closes its WebSocket cleanly: the browser's Close
    # frame (1001, going away) arrives, not a dropped transport (1006).
    await devtools.call("Target.closeTarget", targetId=devtools.targets[alice])
    with trio.fail_after(20):
        while len(server.connections) != 1:
            await trio.sleep(0.05)
    assert len(closes) == 1 and closes[0] is not None
    assert closes[0].code == 1001, closes[0]
    assert len(chat.rooms.members("browsers")) == 1
    assert chat.rooms.publish("browsers", "still here") == 1
    await devtools.wait_for(bob, "chat.received.includes('still here')")
