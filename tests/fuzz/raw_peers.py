"""The fuzzed peers: a raw client against a trio_ws echo server, and a raw
server against a trio_ws client, each checked against the model.

``server_frames_case`` sends a fuzzed frame stream to a trio_ws echo server
(plain, compressing, or echoing through the streaming API);
``client_frames_case`` has a raw server send one to a trio_ws client. Both
then check the answer with :mod:`tests.fuzz.verdict`, that nothing leaked
(:mod:`tests.fuzz.leaks`) and, on the server, that a well-behaved client is
still served.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

import trio_ws
from trio_ws import DeflateOptions
from trio_ws.close_codes import NORMAL_CODES

from ..support.codec import BINARY, CLOSE, TEXT, close_code_of, decode_frames
from ..support.handshake import (
    accept_answer,
    accept_token,
    header_values,
    read_head,
    upgrade_request,
)
from ..support.peers import HOST, converse, one_connection_server
from .leaks import live_tasks, run_isolated, settle
from .model import MAX_SIZE, Inflate, expect, sent_after_close
from .strategies import DeflateCase, FrameCase
from .verdict import Received, judge, parse_frames

#: Seconds the trio_ws side allows for the opening/closing handshakes.
CONNECT_TIMEOUT = 3.0
DISCONNECT_TIMEOUT = 3.0
#: Upper bound of one whole example; running into it means something hung.
CASE_TIMEOUT = 15.0


class Handlers:
    """An echo handler that records every exception it sees."""

    def __init__(self) -> None:
        self.calls = 0
        self.accepted = 0
        self.active = 0
        self.unexpected: list[str] = []
        self.closed_codes: list[int] = []
        self.stopping = False

    async def echo(self, request: trio_ws.WebSocketRequest) -> None:
        """Echo each whole message."""

        async def body(ws: trio_ws.WebSocketConnection) -> None:
            async for message in ws:
                await ws.send_message(message)

        await self._serve(request, body)

    async def stream_echo(self, request: trio_ws.WebSocketRequest) -> None:
        """Echo each message chunk by chunk, with the streaming API both ways."""

        async def body(ws: trio_ws.WebSocketConnection) -> None:
            while True:
                async with ws.get_message_stream() as chunks:
                    await ws.send_message_stream(chunks)

        await self._serve(request, body)

    async def _serve(
        self,
        request: trio_ws.WebSocketRequest,
        body: Callable[[trio_ws.WebSocketConnection], Awaitable[None]],
    ) -> None:
        self.calls += 1
        self.active += 1
        try:
            ws = await request.accept()
            self.accepted += 1
            await body(ws)
        except trio_ws.ConnectionClosed as exc:
            self.closed_codes.append(exc.reason.code)
            raise
        except trio.Cancelled:
            if not self.stopping:
                self.unexpected.append("trio.Cancelled (handler cancelled by trio_ws)")
            raise
        except BaseException as exc:
            self.unexpected.append(repr(exc))
            raise
        finally:
            self.active -= 1

    def check(self) -> None:
        assert not self.unexpected, f"the handler saw unexpected exceptions: {self.unexpected}"


async def start_server(
    nursery: trio.Nursery, handlers: Handlers, *, streaming: bool = False, **kwargs: Any
) -> int:
    options: dict[str, Any] = dict(
        max_message_size=MAX_SIZE,
        connect_timeout=CONNECT_TIMEOUT,
        disconnect_timeout=DISCONNECT_TIMEOUT,
        compression=None,
        ping_interval=None,
    )
    options.update(kwargs)
    handler = handlers.stream_echo if streaming else handlers.echo
    server = await nursery.start(
        partial(trio_ws.serve_websocket, handler, HOST, 0, None, **options)
    )
    return int(server.port)


async def well_behaved_client(port: int) -> None:
    """The server must still serve a normal client after whatever came before."""
    with trio.fail_after(5):
        async with trio_ws.open_websocket(HOST, port, "/ok", use_ssl=False) as ws:
            await ws.send_message("still serving?")
            assert await ws.get_message() == "still serving?"


async def server_frames_case(
    case: FrameCase, offer: bytes | None = None, streaming: bool = False
) -> str:
    """A raw client sends *case* to a trio_ws echo server; check the answer.

    With *offer* (a ``Sec-WebSocket-Extensions`` value), the server runs
    with compression on and the model uses what it negotiated.
    """
    handlers = Handlers()
    async with trio.open_nursery() as nursery:
        if offer is None:
            port = await start_server(nursery, handlers, streaming=streaming)
        else:
            port = await start_server(nursery, handlers, compression=DeflateOptions())
        baseline = len(live_tasks())
        with trio.fail_after(CASE_TIMEOUT):
            stream = await trio.open_tcp_stream(HOST, port)
            async with stream:
                extra = b"" if offer is None else b"Sec-WebSocket-Extensions: " + offer + b"\r\n"
                request = upgrade_request(extra=extra)
                writes = case.writes()
                if case.pipelined:
                    writes[0] = request + writes[0]
                else:
                    await stream.send_all(request)
                output, ending = await converse(stream, writes, case.pause)
            head, sep, rest = output.partition(b"\r\n\r\n")
            assert sep and head.startswith(b"HTTP/1.1 101 "), f"no 101 answer: {output[:200]!r}"
            key = header_values(request, b"sec-websocket-key")[0]
            assert header_values(head, b"sec-websocket-accept") == [accept_token(key)]
            deflate = negotiated(offer, header_values(head, b"sec-websocket-extensions"))
            alternatives = expect(case.data, masked=True, deflate=deflate)
            if streaming:  # an empty message streams no chunk: it comes back as binary
                for exp in alternatives:
                    exp.messages = [(BINARY, b"") if not p else (op, p) for op, p in exp.messages]
            got = parse_frames(rest, masked=False, who="server", inflate=deflate is not None)
            if streaming:  # (both ways: a whole queued empty message yields one empty chunk)
                got.messages = [(BINARY, b"") if not p else (op, p) for op, p in got.messages]
            verdict = partial(
                judge,
                alternatives,
                got,
                who="server",
                messages_exact=False,
                busy=True,
                streaming=streaming,
            )
            if ending == "reset" and sent_after_close(alternatives, case.data):
                # We sent bytes after our own Close: closing the socket with
                # them unread makes the kernel send RST, which is our fault.
                label = "reset-after-close"
                if got.close is not None:
                    verdict()
            else:
                assert ending == "eof", (
                    f"server reset the connection; it sent {got}; {alternatives[0].describe()}"
                )
                label, _ = verdict()
            await settle(baseline, handlers)
            handlers.check()
            assert handlers.calls == 1
            await well_behaved_client(port)
            await settle(baseline, handlers)
            handlers.check()
        handlers.stopping = True
        nursery.cancel_scope.cancel()
    return label


def negotiated(offer: bytes | None, answers: list[bytes]) -> Inflate | None:
    """What the server's extension answer means for the frames we send it."""
    if offer is None or not answers:
        return None
    assert len(answers) == 1, f"several extension answers: {answers}"
    params = dict(_param(p) for p in answers[0].decode().split(";")[1:])
    assert answers[0].decode().split(";")[0].strip() == "permessage-deflate", answers
    offered = dict(_param(p) for p in offer.decode().split(";")[1:])
    bits = params.get("client_max_window_bits") or offered.get("client_max_window_bits") or "15"
    return Inflate(int(bits), "client_no_context_takeover" in params)


def _param(text: str) -> tuple[str, str | None]:
    name, _, value = text.strip().partition("=")
    return name.strip(), value.strip() or None


def check_server_frames(case: FrameCase) -> str:
    return run_isolated(partial(server_frames_case, case))


def check_server_stream(case: FrameCase) -> str:
    return run_isolated(partial(server_frames_case, case, streaming=True))


def check_server_deflate(case: DeflateCase) -> str:
    return run_isolated(partial(server_frames_case, case.frames, case.offer))


# ============================================================ client_frames


class RawServer:
    """Answers the handshake, sends the fuzzed bytes, records what the client says."""

    def __init__(
        self,
        answer: Callable[[bytes], bytes],
        writes: list[bytes],
        pause: bool,
        pipelined: bool = True,
    ) -> None:
        self.answer = answer
        self.pipelined = pipelined
        self.writes = writes
        self.pause = pause
        self.received = bytearray()
        self.ending = "eof"
        self.request = b""

    async def __call__(self, stream: trio.SocketStream) -> None:
        buffer = bytearray()
        self.request = await read_head(stream, buffer)
        self.received += buffer
        writes = list(self.writes)
        first = self.answer(self.request)
        if writes and self.pipelined:
            writes = [first + writes[0], *writes[1:]]
        else:
            writes = [first, *writes]
        sent = trio.Event()

        async def send() -> None:
            try:
                for data in writes:
                    await stream.send_all(data)
                    if self.pause:
                        await trio.sleep(0.001)
                await stream.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            sent.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            try:
                while data := await stream.receive_some(65536):
                    self.received += data
                    # RFC 6455 7.1.1: the server closes TCP once it has the client's Close.
                    if _has_close(bytes(self.received)):
                        await sent.wait()
                        break
            except trio.BrokenResourceError:
                self.ending = "reset"
            await sent.wait()


def _has_close(data: bytes) -> bool:
    return any(wire.opcode == CLOSE for wire in decode_frames(data)[0])


@dataclass
class ClientApp:
    """What the client application saw."""

    messages: list[tuple[int, bytes]] = field(default_factory=list)
    closed: int | None = None  # code of the ConnectionClosed that ended it
    handshake_error: BaseException | None = None
    unexpected: list[str] = field(default_factory=list)
    normal_end: bool = False

    async def run(self, port: int) -> None:
        try:
            async with trio_ws.open_websocket(
                HOST,
                port,
                "/",
                use_ssl=False,
                max_message_size=MAX_SIZE,
                connect_timeout=CONNECT_TIMEOUT,
                disconnect_timeout=DISCONNECT_TIMEOUT,
                compression=None,
                ping_interval=None,
            ) as ws:
                async for message in ws:
                    if isinstance(message, str):
                        self.messages.append((TEXT, message.encode()))
                    else:
                        self.messages.append((BINARY, message))
                self.normal_end = True
        except trio_ws.ConnectionClosed as exc:
            self.closed = exc.reason.code
        except trio_ws.HandshakeError as exc:
            self.handshake_error = exc
        except BaseException as exc:
            self.unexpected.append(repr(exc))
            if not isinstance(exc, Exception):
                raise

    async def run_against(self, raw: RawServer) -> None:
        """Run the client against *raw* (the only connection it serves)."""
        with trio.fail_after(CASE_TIMEOUT):
            async with trio.open_nursery() as nursery:
                port = await nursery.start(one_connection_server, raw)
                await self.run(port)
        assert not self.unexpected, (
            f"the client application saw unexpected exceptions: {self.unexpected}"
        )


async def client_frames_case(case: FrameCase) -> str:
    alternatives = expect(case.data, masked=False)
    raw = RawServer(accept_answer, case.writes(), case.pause, case.pipelined)
    app = ClientApp()
    baseline = len(live_tasks())
    await app.run_against(raw)
    assert app.handshake_error is None, f"handshake failed: {app.handshake_error!r}"
    got = parse_frames(bytes(raw.received), masked=True, who="client")
    assert raw.ending == "eof", f"client reset the connection; it sent {got}"
    # The application reads every message, so the client must deliver them all.
    app_got = Received(messages=app.messages, pongs=got.pongs, close=got.close)
    label, exp = judge(alternatives, app_got, who="client", messages_exact=True)
    code = close_code_of(got.close)
    if label.startswith("fail-"):  # the client failed the connection
        assert app.closed == code, f"app saw {app.closed}/{app.normal_end}, client sent {code}"
    elif label == "close-echo":
        peer = 1005 if exp.close_code is None else exp.close_code
        if peer in NORMAL_CODES:  # these end `async for` quietly
            assert app.normal_end, f"normal close {peer} raised ConnectionClosed({app.closed})"
        else:
            assert app.closed == peer, f"app saw {app.closed}, server closed with {peer}"
    else:
        assert app.closed == 1006 or (label.startswith("eof-close") and app.normal_end), (
            f"app saw {app.closed}/{app.normal_end} after EOF"
        )
    await settle(baseline)
    return label


def check_client_frames(case: FrameCase) -> str:
    return run_isolated(partial(client_frames_case, case))
