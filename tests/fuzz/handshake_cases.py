"""Fuzzed opening handshakes: upgrade requests against a trio_ws server
(``server_heads``) and handshake answers against a trio_ws client
(``client_heads``), each with the statuses or outcomes HTTP and RFC 6455
allow."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio
from hypothesis import strategies as st

import trio_ws
import trio_ws.options

from ..support.codec import TEXT, Frame, close_code_of, close_frame
from ..support.handshake import accept_token, header_values, parse_response, request_key
from ..support.peers import HOST, converse
from .leaks import live_tasks, run_isolated, settle
from .raw_peers import (
    CASE_TIMEOUT,
    ClientApp,
    Handlers,
    RawServer,
    start_server,
    well_behaved_client,
)
from .verdict import parse_frames

#: trio_ws's documented bounds on a request head: its size and header count.
HEAD_LIMIT: int = trio_ws.options.MAX_HANDSHAKE_HEAD_SIZE
HEADER_COUNT_LIMIT: int = trio_ws.options.MAX_HEADER_COUNT
#: Every HTTP error status a server may fairly answer a bad upgrade with.
ERROR_STATUSES = frozenset([400, 405, 426, 431, 505])


@dataclass(frozen=True)
class RequestCase:
    """One upgrade request and what the server may answer (None: just close)."""

    data: bytes
    expected: frozenset[int | None]
    version_mismatch: bool = False
    eof: bool = False  # send EOF right after (truncated requests)
    chunks: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()


class Picker:
    """Draws each field of a head good, except the few chosen to be mutated."""

    def __init__(self, draw: st.DrawFn, fields: list[str], max_mutations: int = 2) -> None:
        self.draw = draw
        self.mutate = (
            draw(st.sets(st.sampled_from(fields), max_size=max_mutations)) if fields else set()
        )

    def __call__(self, name: str, good: list[Any], bad: list[Any]) -> tuple[Any, bool]:
        """A good value, or a bad one if *name* is mutated; True if good."""
        if name in self.mutate:
            return self.draw(st.sampled_from(bad)), False
        return self.draw(st.sampled_from(good)), True


TOKEN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"
VALUE = "".join(chr(c) for c in range(0x21, 0x7F))


@st.composite
def request_cases(draw: st.DrawFn) -> RequestCase:
    if draw(st.integers(0, 9)) == 0:
        garbage = draw(st.binary(max_size=300))
        eof = not garbage.endswith(b"\r\n\r\n") and draw(st.booleans())
        if not eof:
            garbage += b"\r\n\r\n"
        return RequestCase(garbage, ERROR_STATUSES | {None}, eof=True, notes=("garbage",))

    # Often a valid request with only harmless variations, else up to two
    # fields broken (and maybe more trouble below).
    valid = draw(st.integers(0, 9)) < 4
    fields = ["method", "version", "host", "upgrade", "connection", "key", "ws_version"]
    pick = Picker(draw, [] if valid else fields)
    hard: list[set[int]] = []  # each violation: the statuses that report it
    soft: list[set[int]] = []  # things that may or may not be refused
    notes: list[str] = []

    def bad(note: str, statuses: set[int], *, maybe: bool = False) -> None:
        notes.append(note)
        (soft if maybe else hard).append(statuses)

    method, ok = pick(
        "method", [b"GET"], [b"POST", b"PUT", b"HEAD", b"OPTIONS", b"DELETE", b"get", b"G3T"]
    )
    if not ok:
        bad(f"method {method!r}", {405, 400})
    version, ok = pick(
        "version",
        [b"HTTP/1.1"],
        [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.2", b"HTTP/1", b"http/1.1", b"HTTP/11", b"HTTPS/1.1"],
    )
    if version == b"HTTP/1.2":  # RFC 6455 says "HTTP/1.1 or higher"; HTTP/1.2 does not exist
        bad("version 1.2", {400, 505, 101}, maybe=True)
    elif not ok:
        bad(f"version {version!r}", {400, 426, 505})
    target = draw(st.sampled_from([b"/", b"/chat?room=1", b"/a/b/c", b"/%7Euser"]))
    headers: list[tuple[bytes, bytes]] = []
    key = base64.b64encode(draw(st.binary(min_size=16, max_size=16)))

    host, ok = pick("host", [[b"localhost"], [b"127.0.0.1:80"]], [[], [b"a", b"b"]])
    headers += [(b"Host", h) for h in host]
    if not ok and version == b"HTTP/1.1":
        bad("no or two Host headers", {400})
    elif not ok:
        bad("no or two Host headers", {400, 101}, maybe=True)

    upgrade, ok = pick(
        "upgrade",
        [[b"websocket"], [b"WebSocket"], [b"websocket, h2c"], [b"h2c, WEBSOCKET"]],
        [
            [],
            [b"h2c"],
            [b""],
            [b"web socket"],
            [b"websocket", b"websocket"],
            [b"h2c", b"websocket"],
        ],
    )
    headers += [(b"Upgrade", u) for u in upgrade]
    if len(upgrade) == 2:
        bad("two Upgrade headers", {101, 400, 426}, maybe=True)
    elif not ok:
        bad(f"Upgrade {upgrade!r}", {426, 400})

    connection, ok = pick(
        "connection",
        [[b"Upgrade"], [b"upgrade"], [b"keep-alive, Upgrade"], [b"Upgrade, keep-alive"]],
        [
            [],
            [b"keep-alive"],
            [b"close"],
            [b""],
            [b"Upgrade", b"Upgrade"],
            [b"keep-alive", b"Upgrade"],
        ],
    )
    headers += [(b"Connection", c) for c in connection]
    if len(connection) == 2:
        bad("two Connection headers", {101, 400}, maybe=True)
    elif not ok:
        bad(f"Connection {connection!r}", {400, 426})

    keys, ok = pick(
        "key",
        [[key], [b" " + key + b" "]],
        [
            [],
            [b""],
            [base64.b64encode(b"x" * 15)],
            [base64.b64encode(b"x" * 17)],
            [key.rstrip(b"=")],
            [b"!" * 24],
            [key, base64.b64encode(b"y" * 16)],
            [key, key],
        ],
    )
    headers += [(b"Sec-WebSocket-Key", k) for k in keys]
    if not ok:
        bad(f"Sec-WebSocket-Key {keys!r}", {400})

    versions, ok = pick(
        "ws_version",
        [[b"13"]],
        [[], [b"8"], [b"12"], [b"14"], [b""], [b"13, 8"], [b"13", b"13"], [b"013"]],
    )
    headers += [(b"Sec-WebSocket-Version", v) for v in versions]
    version_mismatch = not ok
    if not ok:
        bad(f"Sec-WebSocket-Version {versions!r}", {426, 400})

    if draw(st.integers(0, 3)) == 0:
        headers.append(
            (b"Sec-WebSocket-Protocol", draw(st.sampled_from([b"chat", b"a, b", b"", b"x" * 50])))
        )
    if draw(st.integers(0, 3)) == 0:
        offer = draw(
            st.sampled_from(
                [
                    b"permessage-deflate",
                    b"permessage-deflate; client_max_window_bits",
                    b"permessage-deflate; server_max_window_bits=7",
                    b"x-unknown",
                    b"permessage-deflate; foo=bar, permessage-deflate",
                    b";;;",
                ]
            )
        )
        headers.append((b"Sec-WebSocket-Extensions", offer))

    size_kind = draw(st.integers(0, 5)) if not valid else draw(st.sampled_from([0, 3]))
    if size_kind == 1:  # many small headers
        count = draw(st.one_of(st.integers(0, 20), st.integers(85, 105), st.integers(900, 1600)))
        headers += [(b"X-H%d" % i, b"v" * 8) for i in range(count)]
    elif size_kind == 2:  # one big header
        headers.append(
            (b"X-Big", b"b" * draw(st.one_of(st.integers(1000, 8000), st.integers(15000, 30000))))
        )
    elif size_kind == 3:  # some random ones
        for _ in range(draw(st.integers(0, 8))):
            name = draw(st.text(TOKEN, min_size=1, max_size=12)).encode()
            value = draw(st.text(VALUE, max_size=40)).encode()
            headers.append((b"X-" + name, value))
    headers = draw(st.permutations(headers)) if draw(st.booleans()) else headers
    if draw(st.booleans()):
        headers = [(n.lower() if draw(st.booleans()) else n.upper(), v) for n, v in headers]

    newline = b"\r\n"
    if not valid and draw(st.integers(0, 5)) == 0:
        newline = b"\n"
        bad("bare LF line ends", {400}, maybe=True)
    lines = [method + b" " + target + b" " + version] + [n + b": " + v for n, v in headers]
    if not valid and draw(st.integers(0, 5)) == 0:
        junk = draw(
            st.sampled_from(
                [b"no colon here", b"X-Nul: a\x00b", b"X-Cr: a\rb", b": empty name", b"Bad Name: x"]
            )
        )
        lines.insert(draw(st.integers(1, len(lines))), junk)
        bad(f"malformed header line {junk!r}", {400})
    data = newline.join(lines) + newline + newline

    if len(headers) > HEADER_COUNT_LIMIT:
        bad(f"{len(headers)} headers", {431})
    # Servers count the head in their own way (with CRLF line ends, say):
    # near the limit, both answers are fine.
    size = len(data) + (len(lines) if newline == b"\n" else 0)
    if size > HEAD_LIMIT + 1024:
        bad("head too large", {431})
    elif size > HEAD_LIMIT - 1024:
        bad("head near the size limit", {431}, maybe=True)

    if hard:
        expected: set[int | None] = set().union(*hard, *soft) - {101}
    elif soft:
        expected = set().union(*soft) | {101}
    else:
        expected = {101}

    eof = False
    if not valid and draw(st.integers(0, 5)) == 0:
        data = data[: draw(st.integers(0, len(data) - 1))]
        expected = {None, 400, 431}
        eof = True
        notes.append("truncated")
    chunks = tuple(draw(st.lists(st.integers(1, 200), max_size=3)))
    return RequestCase(data, frozenset(expected), version_mismatch, eof, chunks, tuple(notes))


async def server_heads_case(case: RequestCase) -> str:
    handlers = Handlers()
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, handlers)
        baseline = len(live_tasks())
        with trio.fail_after(CASE_TIMEOUT):
            stream = await trio.open_tcp_stream(HOST, port)
            async with stream:
                status = await _exchange_head(stream, case)
            context = f"request {case.data[:300]!r} ({', '.join(case.notes)})"
            assert status in case.expected, (
                f"server answered {status}, expected one of "
                f"{sorted(case.expected, key=str)}; {context}"
            )
            await settle(baseline, handlers)
            handlers.check()
            assert handlers.accepted == (1 if status == 101 else 0), f"handler ran for {status}"
            await well_behaved_client(port)
            await settle(baseline, handlers)
            handlers.check()
        handlers.stopping = True
        nursery.cancel_scope.cancel()
    return "status-" + str(status)


async def _exchange_head(stream: trio.SocketStream, case: RequestCase) -> int | None:
    data, writes = case.data, []
    for size in case.chunks:
        writes.append(data[:size])
        data = data[size:]
    writes.append(data)
    for piece in writes:
        if piece:
            await stream.send_all(piece)
    if case.eof:
        await stream.send_eof()
    buffer = bytearray()
    try:
        while b"\r\n\r\n" not in buffer:
            data = await stream.receive_some(65536)
            if not data:
                assert not buffer, f"server sent a partial head: {bytes(buffer)!r}"
                return None
            buffer += data
    except trio.BrokenResourceError:
        raise AssertionError(
            f"server reset the connection; it had sent {bytes(buffer)[:200]!r}"
        ) from None
    status, head, rest = parse_response(bytes(buffer))
    if status == 101:
        key = request_key(case.data)
        assert header_values(head, b"sec-websocket-accept") == [accept_token(key)]
        assert b"websocket" in b",".join(header_values(head, b"upgrade")).lower()
        assert b"upgrade" in b",".join(header_values(head, b"connection")).lower()
        await stream.send_all(bytes(Frame(TEXT, b"after fuzz")))
        while not parse_frames(bytes(rest), masked=False, who="server").messages:
            data = await stream.receive_some(65536)
            assert data, f"server closed instead of echoing: {bytes(rest)!r}"
            rest += data
        output, ending = await converse(stream, [bytes(close_frame(1000))], False)
        assert ending == "eof", "server reset the connection after the handshake"
        got = parse_frames(bytes(rest) + output, masked=False, who="server")
        assert got.messages == [(TEXT, b"after fuzz")] and close_code_of(got.close) == 1000, got
        return status
    # An error answer: a complete one, then the server closes.
    try:
        while data := await stream.receive_some(65536):
            rest += data
    except trio.BrokenResourceError:
        raise AssertionError(f"server reset the connection after answering {status}") from None
    lengths = header_values(head, b"content-length")
    assert lengths and int(lengths[0]) == len(rest), f"body of {len(rest)} bytes, head {head!r}"
    if status == 426:
        assert header_values(head, b"upgrade"), "426 without an Upgrade header (RFC 7231 6.5.15)"
        if case.version_mismatch:
            assert b"13" in b",".join(header_values(head, b"sec-websocket-version")), (
                "426 for a bad version must list Sec-WebSocket-Version: 13 (RFC 6455 4.2.2)"
            )
    if status == 405:
        assert header_values(head, b"allow"), "405 without an Allow header (RFC 7231 6.5.5)"
    return status


def check_server_heads(case: RequestCase) -> str:
    return run_isolated(partial(server_heads_case, case))


# ============================================================= client_heads


@dataclass(frozen=True)
class AnswerCase:
    """A handshake answer for the raw server to send, with the expected outcome."""

    status_line: bytes
    headers: tuple[tuple[bytes, bytes | None], ...]  # None: the correct accept token
    junk_line: bytes | None
    trailing: bytes  # frames sent in the same write as the answer
    outcome: str  # "open", "rejected", "error", or "either"
    status: int | None
    notes: tuple[str, ...] = ()

    def render(self, request: bytes) -> bytes:
        key = request_key(request)
        lines = [self.status_line]
        for name, value in self.headers:
            lines.append(name + b": " + (accept_token(key) if value is None else value))
        if self.junk_line is not None:
            lines.insert(1, self.junk_line)
        return b"\r\n".join(lines) + b"\r\n\r\n"


@st.composite
def answer_cases(draw: st.DrawFn) -> AnswerCase:
    valid = draw(st.integers(0, 9)) < 4
    pick = Picker(draw, [] if valid else ["upgrade", "connection", "accept"])
    hard: list[str] = []
    soft: list[str] = []
    statuses = [101] * 6 + [100, 200, 204, 301, 400, 403, 404, 426, 500, 503]
    status = 101 if valid else draw(st.sampled_from(statuses))
    versions = [b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/2", b"ICY", b"HTTP/1.1 "]
    version = b"HTTP/1.1" if valid else draw(st.sampled_from(versions))
    status_line = (
        version + b" %d " % status + draw(st.sampled_from([b"Switching Protocols", b"", b"OK"]))
    )
    malformed = version in (b"HTTP/2", b"ICY")
    if version == b"HTTP/1.0":
        soft.append("HTTP/1.0 answer")
    elif version == b"HTTP/1.1 ":
        soft.append("double space in status line")
    headers: list[tuple[bytes, bytes | None]] = []

    upgrade, ok = pick(
        "upgrade", [[b"websocket"], [b"WebSocket"]], [[], [b"h2c"], [b"websocket", b"websocket"]]
    )
    headers += [(b"Upgrade", u) for u in upgrade]
    (soft if len(upgrade) == 2 else hard if not ok else []).append(f"Upgrade {upgrade!r}")
    connection, ok = pick(
        "connection",
        [[b"Upgrade"], [b"upgrade, keep-alive"]],
        [[], [b"close"], [b"Upgrade", b"Upgrade"]],
    )
    headers += [(b"Connection", c) for c in connection]
    (soft if len(connection) == 2 else hard if not ok else []).append(f"Connection {connection!r}")
    accepts, ok = pick(
        "accept",
        [[None]],
        [
            [],
            [b""],
            [b"dGhlIHNhbXBsZSBub25jZQ=="],
            [None, None],
            [None, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="],
        ],
    )
    headers += [(b"Sec-WebSocket-Accept", a) for a in accepts]
    (soft if accepts == [None, None] else hard if not ok else []).append(f"Accept {accepts!r}")
    if not valid and draw(st.integers(0, 5)) == 0:
        headers.append((b"Sec-WebSocket-Protocol", b"chat"))
        hard.append("subprotocol not offered")
    if not valid and draw(st.integers(0, 5)) == 0:
        headers.append(
            (b"Sec-WebSocket-Extensions", draw(st.sampled_from([b"permessage-deflate", b"x-foo"])))
        )
        hard.append("extension not offered")
    for _ in range(draw(st.integers(0, 3))):
        headers.append((b"X-" + draw(st.text(TOKEN, min_size=1, max_size=8)).encode(), b"v"))
    if draw(st.booleans()):
        headers = list(draw(st.permutations(headers)))
    junk = None
    if not valid and draw(st.integers(0, 5)) == 0:
        junk = draw(st.sampled_from([b"no colon", b"X: a\x00b", b": x"]))
        malformed = True
    trailing = b""
    if draw(st.booleans()):
        trailing = bytes(Frame(TEXT, b"hello", masked=False))

    if malformed:
        outcome = "error"
    elif status != 101:
        outcome = "rejected" if status >= 200 and not soft else "error"
    elif hard:
        outcome = "error"
    elif soft:
        outcome = "either"
    else:
        outcome = "open"
    return AnswerCase(
        status_line, tuple(headers), junk, trailing, outcome, status, tuple(hard + soft)
    )


async def client_heads_case(case: AnswerCase) -> str:
    app = ClientApp()
    tail = [case.trailing + bytes(close_frame(1000, masked=False))]

    def answer(request: bytes) -> bytes:
        return case.render(request)

    raw = RawServer(answer, tail if case.outcome != "error" else [], False)
    baseline = len(live_tasks())
    await app.run_against(raw)
    context = f"answer {case.render(raw.request)!r} ({', '.join(case.notes)})"
    opened = app.handshake_error is None
    if case.outcome == "open":
        assert opened, f"client refused a valid answer: {app.handshake_error!r}; {context}"
    elif case.outcome in ("error", "rejected"):
        assert not opened, f"client accepted an invalid answer; {context}"
    if case.outcome == "rejected" and isinstance(app.handshake_error, trio_ws.ConnectionRejected):
        assert app.handshake_error.status_code == case.status
    elif case.outcome == "rejected":
        raise AssertionError(f"expected ConnectionRejected, got {app.handshake_error!r}; {context}")
    if opened:
        expected = [(TEXT, b"hello")] if case.trailing else []
        assert app.messages == expected and app.normal_end, (app.messages, app.closed)
    await settle(baseline)
    return "opened" if opened else type(app.handshake_error).__name__


def check_client_heads(case: AnswerCase) -> str:
    return run_isolated(partial(client_heads_case, case))
