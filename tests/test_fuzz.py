"""Property-based fuzzing of what a raw peer can send to trio_ws.

Each property runs every example in its own ``trio.run`` (Hypothesis's
``@given`` does not mix with pytest-trio, so these are plain ``def`` tests)
against a fresh trio_ws echo server or client on 127.0.0.1. The model of what
RFC 6455 requires, the generators and the checks live in ``tests/fuzz/``
and are shared with ``benchmarks/fuzz_long.py``, which runs the same
properties for much longer.

Invariants checked for every example:

* only ``ConnectionClosed`` / ``HandshakeError`` reach the application (the
  echo handler, or the code around ``open_websocket``);
* trio_ws logs nothing at ERROR level (the fuzzing never makes the handler
  fail, so any error record is a trio_ws problem);
* the peer gets a correct HTTP status (101, or 400/405/426/431/505), or a
  conforming frame stream ending in a Close frame with the code RFC 6455
  prescribes (1002, 1007, 1009; the echo of a valid Close), or a plain
  EOF when the peer just went away; pings get their pongs; messages before a
  violation are all echoed (server) or delivered (client);
* the server still echoes for a well-behaved client afterwards;
* no file descriptor and no Trio task (handler, reader, ...) is left behind.

The runs are derandomized so that CI is reproducible; set
``TRIO_WS_FUZZ_EXAMPLES`` to run more examples per property.
"""

from __future__ import annotations

import logging
import os

import pytest
import trio
import trio.testing
from hypothesis import event, example, given, settings

import trio_ws

from .fuzz.handshake_cases import (
    ERROR_STATUSES,
    AnswerCase,
    RequestCase,
    answer_cases,
    check_client_heads,
    check_server_heads,
    request_cases,
)
from .fuzz.leaks import live_tasks, run_isolated, settle
from .fuzz.model import FRAGMENT_LIMIT, VALID_CLOSE_CODES, expect, valid_utf8
from .fuzz.properties import settings_kwargs
from .fuzz.raw_peers import (
    Handlers,
    check_client_frames,
    check_server_deflate,
    check_server_frames,
    check_server_stream,
    start_server,
    well_behaved_client,
)
from .fuzz.strategies import INVALID_UTF8, DeflateCase, FrameCase, deflate_cases, frame_cases
from .support.codec import BINARY, CLOSE, CONT, PING, PONG, TEXT, Frame, close_frame
from .support.handshake import upgrade_request
from .support.peers import HOST

EXAMPLES = int(os.environ.get("TRIO_WS_FUZZ_EXAMPLES", "75"))
CI = settings(**settings_kwargs(EXAMPLES, derandomize=True))


def no_logged_errors(caplog: pytest.LogCaptureFixture) -> None:
    errors = [
        r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("trio_ws")
    ]
    assert not errors, [r.getMessage() for r in errors]


def case(*items: Frame | bytes, chunks: tuple[int, ...] = (), pipelined: bool = False) -> FrameCase:
    return FrameCase(tuple(items), chunks, pipelined, False)


M = dict(masked=True)
U = dict(masked=False)

# Examples that must always be covered, whatever Hypothesis draws.
SERVER_EXAMPLES = [
    case(Frame(TEXT, b"hello", **M), close_frame(1000)),
    case(
        Frame(TEXT, b"he", fin=False, **M),
        Frame(PING, b"p", **M),
        Frame(CONT, b"llo", **M),
        close_frame(1000),
    ),
    case(
        Frame(TEXT, b"a\xe2", fin=False, **M),
        Frame(CONT, b"\x82\xac", **M),
        close_frame(3000, b"bye"),
    ),
    case(Frame(TEXT, b"\xe2\x82", fin=False, **M), Frame(CONT, b"(", **M)),  # 1007 across fragments
    case(Frame(TEXT, b"ok\xed\xa0\x80", **M)),  # surrogate: 1007
    case(Frame(BINARY, b"x" * 257, **M)),  # 1009 from the header
    case(
        Frame(BINARY, b"x" * 200, fin=False, **M), Frame(CONT, b"y" * 57, **M)
    ),  # 1009 running total
    case(Frame(BINARY, b"", declared=2**63 - 1, **M)),  # 1009 before any payload
    case(Frame(BINARY, b"abc", encoding="16", **M)),  # non-minimal length: 1002
    case(Frame(BINARY, b"x" * 200, encoding="64", **M)),
    case(Frame(BINARY, b"", encoding="64msb", declared=70000, **M)),
    case(Frame(0x3, b"reserved", **M)),
    case(Frame(0xB, b"reserved control", **M)),
    case(Frame(TEXT, b"rsv", rsv=4, **M)),
    case(Frame(TEXT, b"unmasked", masked=False)),
    case(Frame(CONT, b"orphan", **M)),
    case(Frame(TEXT, b"a", fin=False, **M), Frame(BINARY, b"b", **M)),
    case(Frame(PING, b"x" * 126, **M)),
    case(Frame(PING, b"frag", fin=False, **M)),
    case(Frame(CLOSE, b"\x03", **M)),  # 1-byte close payload
    case(close_frame(1005)),
    case(close_frame(999)),
    case(close_frame(2999)),
    case(close_frame(5000)),
    case(close_frame(1000, b"\xff\xfe")),  # invalid UTF-8 reason: 1007
    case(close_frame(None), Frame(TEXT, b"after close", **M)),
    case(Frame(PONG, b"unsolicited", **M), Frame(PING, b"", **M), close_frame(4999)),
    case(b"\x81"),  # truncated header, then EOF
    case(Frame(TEXT, b"hello", **M), chunks=(1, 1, 1, 1, 1, 1), pipelined=True),
    # Simple frames (decoded by trio_ws) next to frames wsproto decodes.
    case(
        Frame(TEXT, b"a", fin=False, **M),
        Frame(CONT, b"b", **M),
        Frame(TEXT, b"simple after fragments", **M),
        Frame(PING, b"p", **M),
        Frame(BINARY, b"simple after a ping", **M),
        close_frame(1000),
        pipelined=True,
    ),
    case(
        Frame(BINARY, b"x" * 130, **M),
        Frame(TEXT, b"header split across reads", **M),
        close_frame(1000),
        chunks=(140, 1, 3, 2),
        pipelined=True,
    ),
    case(Frame(TEXT, b"ok", **M), Frame(TEXT, b"\xff", **M), Frame(TEXT, b"never", **M)),
]


@CI
@given(frames=frame_cases(masked=True))
def test_server_survives_fuzzed_frames(caplog: pytest.LogCaptureFixture, frames: FrameCase) -> None:
    caplog.clear()
    event(check_server_frames(frames))
    no_logged_errors(caplog)


for _example in SERVER_EXAMPLES:
    test_server_survives_fuzzed_frames = example(frames=_example)(
        test_server_survives_fuzzed_frames
    )


CLIENT_EXAMPLES = [
    case(Frame(TEXT, b"hello", **U), close_frame(1000, **U)),
    case(
        Frame(TEXT, b"hel", fin=False, **U),
        Frame(PING, b"p", **U),
        Frame(CONT, b"lo", **U),
        close_frame(1001, **U),
    ),
    case(Frame(TEXT, b"masked", masked=True)),
    case(Frame(TEXT, b"\xc3", **U)),
    case(Frame(BINARY, b"", declared=1000, **U)),
    case(Frame(CLOSE, b"\x03\xe8\xc3", **U)),
    case(close_frame(None, **U)),
    case(close_frame(3001, b"app", **U)),
    case(close_frame(1015, **U)),
    case(Frame(PING, b"x" * 125, **U), Frame(TEXT, b"x", **U)),
    case(Frame(TEXT, b"eof before close", **U)),
]


@CI
@given(frames=frame_cases(masked=False))
def test_client_survives_fuzzed_frames(caplog: pytest.LogCaptureFixture, frames: FrameCase) -> None:
    caplog.clear()
    event(check_client_frames(frames))
    no_logged_errors(caplog)


for _example in CLIENT_EXAMPLES:
    test_client_survives_fuzzed_frames = example(frames=_example)(
        test_client_survives_fuzzed_frames
    )


@CI
@given(case=request_cases())
@example(RequestCase(upgrade_request(), frozenset([101])))
@example(RequestCase(upgrade_request().replace(b"GET", b"PUT"), frozenset([405])))
@example(RequestCase(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\r\n\r\n", ERROR_STATUSES))
@example(RequestCase(upgrade_request(extra=b"X-Big: " + b"a" * 30000 + b"\r\n"), frozenset([431])))
@example(RequestCase(upgrade_request()[:40], frozenset([None, 400]), eof=True))
@example(
    RequestCase(
        upgrade_request().replace(b"Version: 13", b"Version: 8"),
        frozenset([426]),
        version_mismatch=True,
    )
)
def test_server_answers_fuzzed_requests(
    caplog: pytest.LogCaptureFixture, case: RequestCase
) -> None:
    caplog.clear()
    event(check_server_heads(case))
    no_logged_errors(caplog)


@CI
@given(case=answer_cases())
@example(
    AnswerCase(
        b"HTTP/1.1 101 Switching Protocols",
        ((b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"), (b"Sec-WebSocket-Accept", None)),
        None,
        bytes(Frame(TEXT, b"hello", masked=False)),
        "open",
        101,
    )
)
@example(AnswerCase(b"HTTP/1.1 403 Forbidden", (), None, b"", "rejected", 403))
@example(AnswerCase(b"garbage", (), None, b"", "error", None))
def test_client_handles_fuzzed_answers(caplog: pytest.LogCaptureFixture, case: AnswerCase) -> None:
    caplog.clear()
    event(check_client_heads(case))
    no_logged_errors(caplog)


# -------------------------------------------------- slow and silent peers


def test_slow_and_silent_handshakes_are_dropped_without_leaks() -> None:
    """Half a request, or nothing at all, is dropped at ``connect_timeout``."""

    async def main() -> str:
        handlers = Handlers()
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, handlers, connect_timeout=0.3)
            baseline = len(live_tasks())
            with trio.fail_after(10):
                streams = [await trio.open_tcp_stream(HOST, port) for _ in range(10)]
                for i, stream in enumerate(streams):
                    await stream.send_all(upgrade_request()[: i * 7])
                await well_behaved_client(port)  # served meanwhile
                for stream in streams:
                    assert await stream.receive_some(100) == b""  # dropped, no answer
                    await stream.aclose()
                await settle(baseline, handlers)
            assert handlers.calls == 1  # the well-behaved client only
            handlers.stopping = True
            nursery.cancel_scope.cancel()
        return "ok"

    run_isolated(main)


def test_fuzz_model_sanity() -> None:
    """The RFC model itself, on hand-made cases (so the fuzzing checks the right thing)."""
    [e] = expect(bytes(Frame(TEXT, b"hi")) + bytes(close_frame(1000)), masked=True)
    assert e.messages == [(TEXT, b"hi")] and e.close and e.close_code == 1000
    [e] = expect(bytes(Frame(TEXT, b"\xe2\x82", fin=False)) + bytes(Frame(PING, b"")), masked=True)
    assert not e.violation and e.eof and e.pings == [b""]
    e = expect(bytes(Frame(TEXT, b"\xe2\x82(", fin=False)), masked=True)[0]
    assert e.violation == {1007}
    [e] = expect(bytes(Frame(BINARY, b"", declared=2**40)), masked=True)
    assert e.violation == {1009} and not e.eof
    [e] = expect(bytes(Frame(BINARY, b"x", masked=False)), masked=True)
    assert e.violation == {1002}
    [e] = expect(bytes(close_frame(1013)), masked=True)
    assert e.close and e.violation == {1002}  # either is fine
    # Invalid UTF-8 in a first fragment: fail at once, or by the end of the message.
    stream = [Frame(TEXT, b"\xed\xa0", fin=False), Frame(PING, b"1"), Frame(CONT, b"\x80")]
    alternatives = expect(b"".join(map(bytes, stream)), masked=True)
    strict, last = alternatives[0], alternatives[-1]
    assert all(e.violation == {1007} for e in alternatives)
    assert strict.pings == [] and last.pings == [b"1"]
    assert valid_utf8("€𝄞".encode()) and not valid_utf8(b"\xf4\x90\x80\x80")
    for bad in INVALID_UTF8:
        assert not valid_utf8(b"a" + bad + b"z")


def test_close_constants_match_rfc() -> None:
    assert 1004 not in VALID_CLOSE_CODES and 1005 not in VALID_CLOSE_CODES
    assert trio_ws.ConnectionClosed  # the public names the fuzzing relies on


@CI
@given(case=deflate_cases())
def test_compressing_server_survives_fuzzed_frames(
    caplog: pytest.LogCaptureFixture, case: DeflateCase
) -> None:
    caplog.clear()
    event(check_server_deflate(case))
    no_logged_errors(caplog)


# ------------------------------------------------ bugs found by the fuzzing

# Found by test_client_survives_fuzzed_frames; fixed in 757d9a8. trio_ws used
# to answer a CONTINUATION frame that follows a complete message with 1009
# instead of 1002 when the previous message's size plus this frame's length
# exceeded max_message_size: MessageSizeLimit._received was reset only when a
# new message started, never when one ended. RFC 6455 5.4 makes a
# continuation outside a fragmented message a protocol error (7.4.1: 1002).


def test_orphan_continuation_after_a_long_message_fails_with_1002_on_the_server() -> None:
    # Wire bytes: 82 fe 00 fa <key> <250 masked bytes>   (binary message, 250 bytes)
    #             80 88 <key> <8 masked bytes>          (FIN continuation, no message open)
    # With max_message_size=256 the server used to send Close 1009 "message of at
    # least 258 bytes exceeds limit of 256".
    frames = case(Frame(BINARY, b"z" * 250, **M), Frame(CONT, b"12345678", **M))
    assert check_server_frames(frames) == "fail-1002"


def test_orphan_continuation_after_a_long_message_fails_with_1002_on_the_client() -> None:
    # Same frames, unmasked, from a server: 82 7e 00 fa <250 bytes> 80 08 <8 bytes>.
    frames = case(Frame(BINARY, b"z" * 250, **U), Frame(CONT, b"12345678", **U))
    assert check_client_frames(frames) == "fail-1002"


def test_orphan_continuation_alone_fails_with_1002() -> None:
    """The same frame without a long message before it is reported correctly."""
    assert check_server_frames(case(Frame(CONT, b"12345678", **M))) == "fail-1002"
    assert check_client_frames(case(Frame(CONT, b"12345678", **U))) == "fail-1002"


@CI
@given(frames=frame_cases(masked=True))
def test_streaming_server_survives_fuzzed_frames(
    caplog: pytest.LogCaptureFixture, frames: FrameCase
) -> None:
    """The same, with a handler that echoes through get_message_stream/send_message_stream."""
    caplog.clear()
    event(check_server_stream(frames))
    no_logged_errors(caplog)


# Found by test_server_survives_fuzzed_frames (fragment floods sent in pieces);
# fixed in 6f5d975. The per-message fragment limit (1008 beyond max_fragments)
# counted a frame twice when its masking key arrived in a later read than its
# first two bytes: wsproto's FrameDecoder.parse_header calls the extensions'
# frame_inbound_header before reading the masking key, rolls back, and calls it
# again once the key is there. A valid 600-fragment message (limit 1024) sent
# as 81 00 | <key> | 00 00 | <key> ... was refused with 1008 after 513 frames.


async def send_fragments(split: bool, count: int = 600) -> str | trio_ws.CloseReason:
    """A text message of *count* empty fragments and a final "x", to a server
    whose limit is 1024 fragments; *split* delivers every frame in two reads."""
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        await client.send_all(upgrade_request())
        request = await trio_ws.wrap_server_stream(
            nursery, server, max_message_size=256, compression=None, ping_interval=None
        )
        ws = await request.accept()
        await client.receive_some(65536)  # the 101 answer
        frames = [Frame(TEXT, b"", fin=False)]
        frames += [Frame(CONT, b"", fin=False)] * (count - 2) + [Frame(CONT, b"x")]
        if split:
            for f in frames:  # 81 80 <key> | 00 80 <key> ...: header, then the key
                data = bytes(f)
                await client.send_all(data[:2])
                await trio.testing.wait_all_tasks_blocked()
                await client.send_all(data[2:])
                await trio.testing.wait_all_tasks_blocked()
        else:
            await client.send_all(b"".join(map(bytes, frames)))
        try:
            with trio.fail_after(5):
                result: str | trio_ws.CloseReason = await ws.get_message()  # type: ignore[assignment]
        except trio_ws.ConnectionClosed as exc:
            result = exc.reason
        nursery.cancel_scope.cancel()
    return result


def test_600_fragments_in_one_read_are_accepted() -> None:
    assert FRAGMENT_LIMIT == 1024
    assert trio.run(send_fragments, False) == "x"


def test_600_fragments_split_between_header_and_mask_key_are_accepted() -> None:
    result = trio.run(send_fragments, True)
    assert result == "x", f"a valid 600-fragment message was refused: {result}"
