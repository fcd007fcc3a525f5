"""Differential test: trio_ws's protocol core against a bare wsproto connection.

The same random frame stream, cut at the same random read boundaries, goes
to trio_ws's sans-I/O :class:`~trio_ws.core.protocol.Protocol` and to a bare
:class:`wsproto.connection.Connection` (with wsproto's own
``PerMessageDeflate`` when compression is on), as a server reading a client
and as a client reading a server, a quarter of the time reading as a message
stream does (chunks, joined here). The whole messages, pings, pongs and the
ending (the peer's close code, the violation's close code, or EOF) must be
the same, unless one of the :data:`INTENDED_DIFFERENCES` below explains the
difference. Each entry says why it is intended, and each is shown to occur
by a hand-made stream further down, so the list cannot go stale silently.

The entries do not just excuse the core: each but "reason texts" (where the
codes agree) also requires the core's outcome to be one the independent RFC
model (:func:`tests.fuzz.model.expect`) accepts, which matters most where
wsproto itself is wrong. A difference that
is a trio_ws bug goes into :data:`KNOWN_BUGS` with a strict xfail test until
it is fixed (the one found so far, a fragment's 64-bit length with its top
bit set answered with 1009, is fixed and kept as a plain test).

The default run is derandomized with a bounded number of examples per
property (``TRIO_WS_ORACLE_EXAMPLES``, default 100); ``benchmarks/fuzz_long.py
--property oracle_server`` (and ``oracle_client``, ``oracle_server_deflate``,
``oracle_client_deflate``) runs them for as long as you like.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from hypothesis import event, example, given, settings

from ..fuzz.model import FRAGMENT_LIMIT, MAX_SIZE, Expectation, Inflate, expect, max_fragments
from ..fuzz.properties import settings_kwargs
from ..fuzz.strategies import deflate
from ..support.codec import BINARY, CLOSE, CONT, PING, PONG, TEXT, Frame, close_frame, decode_frames
from .endpoints import Outcome, run_core, run_wsproto
from .streams import LARGE_MAX_SIZE, Stream, streams

EXAMPLES = int(os.environ.get("TRIO_WS_ORACLE_EXAMPLES", "100"))
CI = settings(**settings_kwargs(EXAMPLES, derandomize=True))


@dataclass(frozen=True)
class Run:
    """One stream and what each endpoint made of it."""

    stream: Stream
    core: Outcome
    oracle: Outcome

    @property
    def client(self) -> bool:
        return not self.stream.masked


# ------------------------------------------------- what the differences look like


def _frames_in_stream(run: Run) -> list[tuple[bool, int, int]]:
    """``(fin, rsv, opcode)`` of every complete frame of the stream."""
    frames, _ = decode_frames(run.stream.data)
    return [(f.fin, f.rsv, f.opcode) for f in frames]


def _model_accepts(run: Run, outcome: Outcome | None = None) -> bool:
    """Does the RFC model accept what the core (or *outcome*) made of the stream?"""
    inflate = Inflate() if run.stream.deflate else None
    alternatives = expect(
        run.stream.data, masked=run.stream.masked, max_size=run.stream.max_size, deflate=inflate
    )
    got = run.core if outcome is None else outcome
    return any(_matches(exp, got) for exp in alternatives)


def _matches(exp: Expectation, got: Outcome) -> bool:
    if exp.anything:
        return True
    messages = [(op, p) for kind, op, p in _items(got, "message")]
    pings = [p for _, p in _items(got, "ping")]
    if messages != exp.messages or pings != exp.pings:
        return False
    if got.end == "fail":
        return got.code in exp.violation
    if got.end == "close":
        return exp.close and got.code == (1005 if exp.close_code is None else exp.close_code)
    return exp.eof


def _items(outcome: Outcome, kind: str) -> list[tuple[object, ...]]:
    return [item for item in outcome.events if item[0] == kind]


def _prefix(shorter: list[object], longer: list[object]) -> bool:
    return longer[: len(shorter)] == shorter


def fragment_limit(run: Run) -> bool:
    """The core refused a message in more frames than the documented limit with 1008."""
    if (run.core.end, run.core.code) != ("fail", 1008):
        return False
    count = longest = 0
    for fin, _, opcode in _frames_in_stream(run):
        if opcode in (TEXT, BINARY, CONT):
            count = count + 1 if opcode == CONT else 1
            longest = max(longest, count)
            if fin:
                count = 0
    # The refused frame may be the incomplete last one (its header is enough).
    return (
        longest >= max_fragments(run.stream.max_size)
        and _prefix(run.core.events, run.oracle.events)
        and _model_accepts(run)
    )


def early_message_too_big(run: Run) -> bool:
    """The core failed with 1009 from a frame header announcing too much;
    the oracle, which only counts delivered bytes, was still reading that
    payload: waiting for it, or failing on what it held (invalid UTF-8)."""
    return (
        (run.core.end, run.core.code) == ("fail", 1009)
        and (run.oracle.end == "eof" or (run.oracle.end, run.oracle.code) == ("fail", 1007))
        and run.core.events == run.oracle.events
        and _model_accepts(run)
    )


def header_judged_when_whole(run: Run) -> bool:
    """wsproto failed on the first bytes of a frame header that never
    arrived whole; the core waits for the whole header (with its masking
    key) before judging it, and so met EOF first."""
    if run.core.end != "eof" or run.oracle.end != "fail" or run.core.events != run.oracle.events:
        return False
    data = run.stream.data
    _, complete = decode_frames(data)
    rest = data[complete:]
    if len(rest) < 2:
        return False
    b1 = rest[1]
    header = 2 + {126: 2, 127: 8}.get(b1 & 0x7F, 0) + (4 if b1 & 0x80 else 0)
    if len(rest) >= header:
        return False
    # Without the unfinished header, the oracle agrees with the core.
    before = run_wsproto(
        [data[:complete]] if complete else [],
        client=run.client,
        deflate=run.stream.deflate,
        max_size=run.stream.max_size,
    )
    return before.end == "eof" and before.events == run.core.events and _model_accepts(run)


def wsproto_control_inside_compressed_message(run: Run) -> bool:
    """wsproto bug: a ping or pong between the fragments of a compressed
    message resets its PerMessageDeflate's per-message state (its
    frame_inbound_complete runs for the control frame too), so it reads the
    rest of the message as uncompressed. The core must do what the RFC
    model says instead."""
    compressed = False
    for fin, rsv, opcode in _frames_in_stream(run):
        if opcode in (TEXT, BINARY):
            compressed = bool(rsv & 4) and not fin
        elif opcode == CONT and fin:
            compressed = False
        elif opcode in (PING, PONG, CLOSE) and compressed:
            return _model_accepts(run)
    return False


def two_violations_in_one_header(run: Run) -> bool:
    """Both failed on the same frame header, which breaks two rules at once
    (say a masked frame to a client that also announces too many bytes):
    each reported a different one, and the RFC model accepts both."""
    return (
        run.core.end == run.oracle.end == "fail"
        and run.core.code != run.oracle.code
        and run.core.events == run.oracle.events
        and _model_accepts(run)
        and _model_accepts(run, run.oracle)
    )


def own_reason(run: Run) -> bool:
    """Both failed the connection with the same code after the same events,
    each giving its own reason text."""
    core, oracle = run.core, run.oracle
    return (
        core.end == oracle.end == "fail"
        and core.code == oracle.code
        and core.events == oracle.events
    )


#: Every way the core may differ from the wsproto oracle, and why. The
#: first that applies names the difference.
INTENDED_DIFFERENCES: list[tuple[str, str, Callable[[Run], bool]]] = [
    (
        "reason texts",
        "on a violation trio_ws words its own close reason (what the peer did wrong, how far "
        "past a limit); the code must agree. A peer's own Close reason must agree exactly",
        own_reason,
    ),
    (
        "fragment limit 1008",
        "trio_ws's policy (trio_ws/options.py) caps the frames of one message at "
        "max(MIN_FRAGMENTS, max_message_size // BYTES_PER_FRAGMENT); bare wsproto has no cap",
        fragment_limit,
    ),
    (
        "early 1009",
        "trio_ws refuses a frame whose announced length would take the message past "
        "max_message_size before reading its payload; the oracle can only count bytes delivered",
        early_message_too_big,
    ),
    (
        "header judged when whole",
        "the core's fast branch splits frames only once a whole header (with masking key) is "
        "there; wsproto rejects a bad first two bytes at once. Either ends the connection",
        header_judged_when_whole,
    ),
    (
        "either of two violations",
        "RFC 6455 does not order the checks of one frame header: trio_ws checks the size "
        "limit in the header hook wsproto calls before its masking check, for instance",
        two_violations_in_one_header,
    ),
    (
        "wsproto deflate with control frames",
        "wsproto's PerMessageDeflate forgets a message is compressed after a ping or pong "
        "between its fragments (RFC 6455 5.4 allows them there); the RFC model judges the core",
        wsproto_control_inside_compressed_message,
    ),
]


#: Differences that are trio_ws bugs, each with a strict xfail test below
#: (which starts to pass, and so fails, once the bug is fixed: then the
#: entry goes). The fixes belong to trio_ws/core, not to this test.
KNOWN_BUGS: list[tuple[str, str, Callable[[Run], bool]]] = []


def explain(run: Run) -> str:
    """``same``, or the name of the intended difference; AssertionError otherwise."""
    core, oracle = run.core, run.oracle
    if (core.events, core.end, core.code, core.reason) == (
        oracle.events,
        oracle.end,
        oracle.code,
        oracle.reason,
    ):
        return "same"
    for name, _, applies in KNOWN_BUGS + INTENDED_DIFFERENCES:
        if applies(run):
            return name
    raise AssertionError(
        f"trio_ws's core and wsproto disagree on this stream:\n{run.stream.describe()}\n"
        f"core:    {core.describe()}\nwsproto: {oracle.describe()}"
    )


def run(stream: Stream) -> Run:
    """*stream* through both endpoints."""
    client = not stream.masked
    reads = stream.reads()
    core = run_core(
        reads,
        client=client,
        deflate=stream.deflate,
        max_size=stream.max_size,
        streaming=stream.streaming,
    )
    oracle = run_wsproto(reads, client=client, deflate=stream.deflate, max_size=stream.max_size)
    return Run(stream, core, oracle)


def compare(stream: Stream) -> str:
    """The label :func:`explain` gives *stream*, also recorded as a Hypothesis event."""
    label = explain(run(stream))
    event(label)
    return label


# ------------------------------------------------------------------ the properties


def plain(*items: Frame | bytes, cuts: tuple[int, ...] = (), masked: bool = True) -> Stream:
    return Stream(tuple(items), cuts, masked, False)


M = dict(masked=True)
U = dict(masked=False)


@CI
@given(stream=streams(masked=True, deflate=False))
@example(stream=plain(Frame(TEXT, b"hello", **M), close_frame(1000), cuts=(1, 2, 3, 6)))
@example(stream=plain(Frame(TEXT, b"caf\xc3", fin=False, **M), Frame(CONT, b"\xa9", **M)))
def test_server_core_agrees_with_wsproto(stream: Stream) -> None:
    compare(stream)


@CI
@given(stream=streams(masked=False, deflate=False))
@example(stream=plain(Frame(BINARY, b"x" * 200, **U), close_frame(1001, **U), masked=False))
def test_client_core_agrees_with_wsproto(stream: Stream) -> None:
    compare(stream)


@CI
@given(stream=streams(masked=True, deflate=True))
def test_compressing_server_core_agrees_with_wsproto(stream: Stream) -> None:
    compare(stream)


@CI
@given(stream=streams(masked=False, deflate=True))
def test_compressing_client_core_agrees_with_wsproto(stream: Stream) -> None:
    compare(stream)


# ------------------------------------------- each difference, on a minimal stream


def _compressed_with_a_ping_inside() -> Stream:
    body = deflate(b"hello hello hello")
    items = (
        Frame(TEXT, body[:3], rsv=4, fin=False),
        Frame(PING, b"p"),
        Frame(CONT, body[3:]),
    )
    return Stream(items, (), True, True)


#: A minimal stream for every entry above, with the label it must get.
DEMONSTRATIONS: dict[str, Stream] = {
    "reason texts": plain(Frame(BINARY, b"x" * (MAX_SIZE + 1))),
    "fragment limit 1008": plain(
        Frame(TEXT, b"", fin=False),
        *[Frame(CONT, b"", fin=False)] * FRAGMENT_LIMIT,
        Frame(CONT, b"x"),
    ),
    "early 1009": plain(Frame(BINARY, b"", declared=2**40)),
    # A masked frame to a client, cut inside its masking key.
    "header judged when whole": plain(b"\x81\x85\x01", masked=False),
    # A masked frame to a client that is also longer than the limit.
    "either of two violations": plain(Frame(BINARY, b"x" * (MAX_SIZE + 1)), masked=False),
    "wsproto deflate with control frames": _compressed_with_a_ping_inside(),
}


def test_every_difference_is_demonstrated() -> None:
    names = [name for name, _, _ in KNOWN_BUGS + INTENDED_DIFFERENCES]
    assert sorted(DEMONSTRATIONS) == sorted(names)


@pytest.mark.parametrize("name", sorted(DEMONSTRATIONS))
def test_the_difference_occurs(name: str) -> None:
    assert explain(run(DEMONSTRATIONS[name])) == name


def test_what_each_difference_looks_like() -> None:
    """The outcomes behind the names, spelled out."""
    flood = run(DEMONSTRATIONS["fragment limit 1008"])
    assert flood.core.ending() == "fail 1008" and flood.core.events == []
    assert flood.oracle.events == [("message", TEXT, b"x")]
    early = run(DEMONSTRATIONS["early 1009"])
    assert early.core.ending() == "fail 1009" and early.oracle.ending() == "eof"
    header = run(DEMONSTRATIONS["header judged when whole"])
    assert header.core.ending() == "eof" and header.oracle.ending() == "fail 1002"
    both = run(DEMONSTRATIONS["either of two violations"])
    assert {both.core.ending(), both.oracle.ending()} == {"fail 1009", "fail 1002"}
    inflated = run(DEMONSTRATIONS["wsproto deflate with control frames"])
    assert inflated.core.events == [("ping", b"p"), ("message", TEXT, b"hello hello hello")]
    assert inflated.oracle.events != inflated.core.events


def test_inflating_in_a_worker_thread_agrees() -> None:
    """Two 1 MiB bombs under a 1 MiB limit: the first teaches the core the
    ratio, so the second inflates as a ThreadJob; both endpoints agree."""
    bomb = Frame(BINARY, deflate(b"\0" * LARGE_MAX_SIZE, 9), rsv=4, masked=False)
    stream = Stream((bomb, bomb, close_frame(1000, masked=False)), (), False, True, False)
    both = run(replace(stream, max_size=LARGE_MAX_SIZE))
    assert both.core.jobs >= 1, "the worker-thread path was not taken"
    assert explain(both) == "same"
    assert both.core.events == [("message", BINARY, b"\0" * LARGE_MAX_SIZE)] * 2


def test_a_real_disagreement_is_reported() -> None:
    """The comparison can fail: a core that dropped a message is caught."""
    good = run(plain(Frame(TEXT, b"one"), Frame(TEXT, b"two"), close_frame(1000)))
    assert explain(good) == "same"
    dropped = Outcome(good.core.events[1:], good.core.end, good.core.code)
    with pytest.raises(AssertionError, match="disagree"):
        explain(Run(good.stream, dropped, good.oracle))
    wrong_code = Outcome(good.core.events, "close", 1001)
    with pytest.raises(AssertionError, match="disagree"):
        explain(Run(good.stream, wrong_code, good.oracle))


def test_a_fragment_length_with_its_top_bit_set_is_a_protocol_error() -> None:
    # It got 1009 (the size limit, from the fast branch's fragment path)
    # until fragment_kind() left such frames to wsproto.
    # Wire bytes: 02 ff 80 00 00 00 00 00 00 02 <key> <2 masked bytes>
    result = run(plain(Frame(BINARY, b"ab", fin=False, encoding="64msb")))
    assert result.core.ending() == result.oracle.ending() == "fail 1002"
