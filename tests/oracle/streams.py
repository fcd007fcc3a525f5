"""Random frame streams for the differential test, and where to cut them.

The frames come from the fuzzing's generators (:mod:`tests.fuzz.strategies`):
mostly a valid conversation with at most one bad item in it, sometimes any
mix of good and bad. Each stream is then cut into reads at random offsets
(inside headers, masking keys and payloads alike), or fed one byte at a
time, because a decoder's state between two reads is where bugs hide.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import strategies as st

from ..fuzz import strategies as gen
from ..fuzz.model import MAX_SIZE
from ..support.codec import Frame, close_frame

#: Streams up to this long may be fed one byte per read.
BYTEWISE_LIMIT = 2048
#: A limit the bombs fit in, for compressed streams now and then: after one
#: has inflated, the core's ratio guess sends the next inflating into a
#: ThreadJob (the worker-thread path), which the small limit never reaches.
LARGE_MAX_SIZE = 1 << 20


@dataclass(frozen=True)
class Stream:
    """Bytes one peer sends after the handshake, and the reads they arrive in."""

    items: tuple[Frame | bytes, ...]
    cuts: tuple[int, ...]  # offsets where one read ends and the next begins
    #: The frames were masked (a client sent them, a server reads them).
    masked: bool
    #: The sender compressed (permessage-deflate was negotiated).
    deflate: bool
    #: trio_ws reads through a message stream (chunks, never whole messages).
    streaming: bool = False
    #: ``max_message_size`` of the reader.
    max_size: int = MAX_SIZE

    @property
    def data(self) -> bytes:
        return b"".join(bytes(item) for item in self.items)

    def reads(self) -> list[bytes]:
        data = self.data
        bounds = [0, *sorted(c for c in set(self.cuts) if 0 < c < len(data)), len(data)]
        return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]

    def describe(self) -> str:
        """The stream as hex, one item a line, and where it was cut."""
        lines = [bytes(item).hex(" ") for item in self.items]
        how = ", read as a message stream" if self.streaming else ""
        return "\n".join(lines) + f"\ncut at {sorted(set(self.cuts))}{how}"


_PLAIN_GOOD = [gen.messages, gen.messages, gen.messages, gen.control_between]
_PLAIN_BAD = [
    gen.invalid_utf8_messages,
    gen.close_frames,
    gen.control_frames,
    gen.wild_frames,
    gen.raw_bytes,
    gen.oversized,
    gen.fragment_floods,
]
_DEFLATE_GOOD = [gen.compressed_messages, gen.compressed_messages, *_PLAIN_GOOD]
_DEFLATE_BAD = [gen.bad_deflate, gen.bombs, *_PLAIN_BAD]


@st.composite
def streams(draw: st.DrawFn, *, masked: bool, deflate: bool) -> Stream:
    """A frame stream from a client (*masked*) or a server, compressing or not."""
    good = _DEFLATE_GOOD if deflate else _PLAIN_GOOD
    bad = _DEFLATE_BAD if deflate else _PLAIN_BAD
    if draw(st.integers(0, 4)):
        kinds = draw(st.lists(st.sampled_from(good), max_size=5))
        groups = [draw(kind(masked)) for kind in kinds]
        if draw(st.integers(0, 3)):
            where = draw(st.integers(0, len(groups)))
            groups.insert(where, draw(draw(st.sampled_from(bad))(masked)))
    else:
        kinds = draw(st.lists(st.sampled_from(good + bad), min_size=1, max_size=6))
        groups = [draw(kind(masked)) for kind in kinds]
    items: list[Frame | bytes] = [item for group in groups for item in group]
    if draw(st.booleans()) or not items:
        items.append(close_frame(1000, masked=masked))
    size = sum(len(bytes(item)) for item in items)
    if size <= BYTEWISE_LIMIT and draw(st.integers(0, 4)) == 0:
        cuts = tuple(range(1, size))
    else:
        cuts = tuple(draw(st.lists(st.integers(1, max(1, size - 1)), max_size=12)))
    streaming = draw(st.integers(0, 3)) == 0
    large = deflate and draw(st.integers(0, 4)) == 0
    return Stream(
        tuple(items), cuts, masked, deflate, streaming, LARGE_MAX_SIZE if large else MAX_SIZE
    )
