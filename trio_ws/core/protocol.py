"""The WebSocket protocol state machine, sans-I/O: bytes in, events out; frames out.

:class:`Protocol` is one connection's protocol, whole: it splits the bytes
the transport delivers into frames, decodes them, applies the rules (size
limit, UTF-8, fragmentation, compression bombs, the closing handshake) and
reports what happened as events (:mod:`trio_ws.core.events`). It encodes the
frames to send as ``(header, payload)`` pieces ready for ``writev``. It does
no I/O and knows nothing of Trio: the connection reads, writes, waits and
runs in a worker thread the jobs the core hands it.

Two branches decode frames. The fast branch here handles the frames a
healthy connection sends: whole text and binary messages, compressed or not
(inflated by :mod:`trio_ws.core.deflate`, bomb-safe), binary payloads
longer than one read (gathered piece by piece), fragmented messages,
compressed or not (:mod:`trio_ws.core.fragments`, chunk by chunk) and well-formed
pings, pongs and Close frames. Everything else goes to the general branch,
wsproto's parser (:mod:`trio_ws.core.general`), created only when the first
such frame arrives.

The closing state is one value, :attr:`Protocol.state` (:class:`State`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator
from typing import NoReturn

from ..options import INFLATE_CHUNK_SIZE
from .control import OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG, close_payload, control_event
from .deflate import PerMessageDeflate
from .events import Chunk, Close, Event, ThreadJob, Violation
from .fragments import (
    NEW_DATA,
    START,
    FragmentedMessage,
    fragment_events,
    fragment_kind,
    is_compressed,
    new_data_violation,
)
from .frames import (
    COMPRESSED,
    CONTINUATION,
    OPCODE_BINARY,
    OPCODE_TEXT,
    SIMPLE,
    SIMPLE_OR_COMPRESSED,
    decode_message,
    encode_message,
    frame_extent,
    masking_key,
    payload_copy,
    simple_opcode,
)
from .general import GeneralBranch
from .size_limit import MessageSizeLimit

#: A frame to write: ``(header, payload)``.
Frame = tuple[bytes, bytes | bytearray]

#: Compressed bytes handed to the general branch at a time while a message
#: stream is open, which bounds one chunk to about 1 MiB however well the
#: data compresses.
STREAM_INFLATE_SLICE = 1024

#: First bytes of control frames the fast branch may decode: final, no RSV bit.
_CONTROL = frozenset((0x80 | OPCODE_CLOSE, 0x80 | OPCODE_PING, 0x80 | OPCODE_PONG))


def _over() -> Generator[None, None, NoReturn]:
    """What the parser yields once the input is over (a Close, a violation)."""
    while True:
        yield None


class State(enum.Enum):
    """Where the connection is in its life; the one closing state there is."""

    #: Messages flow both ways.
    OPEN = "open"
    #: We sent a Close frame and wait for the peer's.
    LOCAL_CLOSING = "local closing"
    #: The peer sent a Close frame; ours (the echo) is still to go.
    REMOTE_CLOSING = "remote closing"
    #: Both Close frames are out: the closing handshake is complete.
    CLOSED = "closed"
    #: The peer broke the protocol and we failed the connection.
    FAILED = "failed"


class Protocol:
    """One connection's WebSocket protocol, with no I/O.

    *client*: this side opened the connection (its frames are masked, the
    peer's must not be). *size_limit* bounds every incoming message (after
    decompression); *deflate* is the negotiated permessage-deflate, or
    ``None``. *trailing_data*: bytes that came with the handshake.
    """

    __slots__ = (
        "_deflate",
        "_general",
        "_incoming",
        "_limit",
        "client",
        "close_received",
        "close_sent",
        "encode",
        "next_event",
        "state",
        "streaming",
    )

    def __init__(
        self,
        *,
        client: bool,
        size_limit: MessageSizeLimit,
        deflate: PerMessageDeflate | None = None,
        trailing_data: bytes | bytearray = b"",
    ) -> None:
        self.client = client
        self._limit = size_limit
        self._deflate = deflate if deflate is not None and deflate.enabled() else None
        self.state = State.OPEN
        #: ``(code, reason)`` of the Close frame we sent, once sent.
        self.close_sent: tuple[int, str | None] | None = None
        #: ``(code, reason)`` of the Close frame the peer sent, once received.
        self.close_received: tuple[int, str | None] | None = None
        #: Set by the I/O layer while a message stream is open: the message
        #: then comes as bounded chunks, never whole (see :meth:`set_limit`).
        self.streaming = False
        self._incoming: bytes | bytearray = trailing_data
        self._general: GeneralBranch | None = None  # made when first needed
        #: ``next_event()``: the next event of the bytes received so far, or
        #: ``None`` for "need more". A ``str`` or ``bytes`` is a whole message;
        #: the other events are in :mod:`trio_ws.core.events`. A ThreadJob
        #: must be run (ideally in a worker thread) before the next call.
        #: After a Close or a Violation the answer is always ``None``. Each
        #: call decodes at most one frame's worth of work, so the caller
        #: decides how many events it handles before it yields. (The parser's
        #: own ``__next__``: a C-level call once per message, no partial.)
        self.next_event: Callable[[], Event | None] = self._parse().__next__

    # ------------------------------------------------------------ receiving

    def receive_data(self, data: bytes | bytearray) -> None:
        """Hand the core the next *data* read from the transport (not empty).

        Call it when :meth:`next_event` returned ``None``; the bytes may end
        anywhere, even inside a frame header. At the end of the transport do
        not call it: the connection is lost (1006), which is for the I/O
        layer to report.
        """
        self._incoming = self._incoming + data if self._incoming else data

    def set_limit(self, max_size: int, *, streaming: bool) -> None:
        """Limit the messages that arrive from now on to *max_size* bytes;
        *streaming*: a message stream is open, so chunks, not whole messages."""
        self._limit.max_size = max_size
        self.streaming = streaming

    @property
    def in_message(self) -> bool:
        """Whether the general branch is in the middle of a data message."""
        return self._general is not None and self._general.in_message

    @property
    def general_branch_made(self) -> bool:
        """Whether wsproto's parser has been needed yet (an idle connection,
        or one that only ever saw the frames of the fast branch, has none)."""
        return self._general is not None

    def _general_branch(self) -> GeneralBranch:
        if self._general is None:
            extensions = [self._deflate] if self._deflate is not None else []
            self._general = GeneralBranch(
                client=self.client, extensions=extensions, limit=self._limit
            )
        return self._general

    def _closed_by_peer(self, code: int, reason: str | None) -> Close:
        self.close_received = (code, reason)
        if self.state is State.OPEN:
            self.state = State.REMOTE_CLOSING
        elif self.state is State.LOCAL_CLOSING:
            self.state = State.CLOSED
        return Close(code, reason)

    def _parse(self) -> Generator[Event | None, None, None]:
        """The receive state machine, one frame at a time (see :meth:`next_event`)."""
        data: bytes | bytearray = b""
        pos = 0
        masked = not self.client
        # The size limit sees every frame the general branch decodes: its
        # in_message is whether that branch is in the middle of a message.
        limit = self._limit
        # Whole compressed messages too, unless a message stream is open.
        whole_kinds = SIMPLE_OR_COMPRESSED if self._deflate is not None else SIMPLE
        left = 0  # bytes of the current frame still to give the general branch
        # A simple binary frame longer than one read, unmasked piece by piece:
        # gathered into one message, or handed on as chunks while streaming.
        pieces: list[bytes | bytearray] | None = None
        piece_left = gathered = 0
        key: bytes | None = None
        fragmented: FragmentedMessage | None = None
        frag_left = frag_offset = 0
        frag_fin = False
        # What the last frame was decoded into, reset before the idle wait.
        piece: bytes | bytearray = b""
        message: str | bytes | Violation | None = None
        job: ThreadJob | None = None
        event: Event | None = None  # (an exhausted iterator of events holds none)
        while True:
            if pos == len(data):
                # Idle, keep neither the last read nor what it was decoded into.
                data = piece = b""
                message = job = event = None
                while not self._incoming:
                    yield None
                data, self._incoming = self._incoming, b""
                pos = 0
            if piece_left:
                step = min(piece_left, len(data) - pos)
                piece = payload_copy(memoryview(data)[pos : pos + step], key, gathered)
                pos += step
                gathered += step
                piece_left -= step
                if pieces is None:  # streaming: one chunk per read
                    yield Chunk(bytes(piece), not piece_left)
                else:
                    pieces.append(piece)
                    if not piece_left:
                        message, pieces = b"".join(pieces), None
                        yield message
                continue
            if frag_left:
                assert fragmented is not None
                step = min(frag_left, len(data) - pos)
                piece = payload_copy(memoryview(data)[pos : pos + step], key, frag_offset)
                pos += step
                frag_offset += step
                frag_left -= step
                done = frag_fin and not frag_left
                if not (yield from fragment_events(fragmented, piece, done)):
                    yield from _over()
                if done:
                    fragmented = None
                continue
            if left:
                general = self._general_branch()
                step = len(data) - pos
                if self.streaming and self._deflate is not None:
                    step = min(step, STREAM_INFLATE_SLICE)
                step = min(left, step)
                # A whole-bytes slice is not a copy.
                general.feed(data[pos : pos + step])
                pos += step
                left -= step
                deflate = self._deflate
                if (
                    deflate is not None
                    and min(step * deflate.inflate_ratio, limit.remaining())
                    >= deflate.options.thread_threshold
                ):
                    job = ThreadJob(general.collect)
                    yield job
                    assert job.done, "a ThreadJob must be run before the next event"
                    events = iter(job.result)
                else:
                    events = general.events()
                for event in events:
                    if isinstance(event, Close):
                        yield self._closed_by_peer(event.code, event.reason)
                        yield from _over()
                    yield event
                    if isinstance(event, Violation):
                        yield from _over()
                continue
            extent = frame_extent(data, pos)
            if extent is None:  # the header is split across reads
                rest = data[pos:]
                while not self._incoming:
                    yield None
                data, pos, self._incoming = rest + self._incoming, 0, b""
                continue
            header, size = extent
            end = pos + size
            first = data[pos]
            if fragmented is not None or (first & 0x8F < 0x81 and not limit.in_message):
                # Possibly part of a fragmented message (no FIN, or a continuation).
                kind = fragment_kind(
                    data,
                    pos,
                    header,
                    size,
                    masked=masked,
                    in_progress=fragmented is not None,
                    compressed=self._deflate is not None,
                )
                if kind == NEW_DATA:
                    yield Violation(*new_data_violation())
                    yield from _over()
                if kind is not None:
                    if kind == START:
                        inflater = None
                        if self._deflate is not None and is_compressed(data, pos):
                            inflater = self._deflate.message_inflater(INFLATE_CHUNK_SIZE)
                        fragmented = FragmentedMessage(first & 0x0F, inflater)
                    assert fragmented is not None
                    violation = fragmented.frame(size - header, limit.max_size)
                    if violation is not None:
                        yield Violation(*violation)  # before any payload is read
                        yield from _over()
                    key = masking_key(data, pos, header, masked)
                    frag_fin = bool(first & 0x80)
                    frag_left, frag_offset = size - header, 0
                    pos += header
                    if not frag_left and frag_fin:  # an empty last frame
                        if not (yield from fragment_events(fragmented, b"", True)):
                            yield from _over()
                        fragmented = None
                    continue
            if first in _CONTROL:
                second = data[pos + 1]
                if end <= len(data) and bool(second & 0x80) is masked and second & 0x7F < 126:
                    key = masking_key(data, pos, header, masked)
                    payload = bytes(payload_copy(memoryview(data)[pos + header : end], key))
                    control = control_event(first & 0x0F, payload)
                    if control is not None:
                        pos = end
                        if isinstance(control, Close):
                            yield self._closed_by_peer(control.code, control.reason)
                            yield from _over()
                        yield control
                        continue
                left = size  # incomplete, or wrong: the general branch decides
                continue
            opcode = None
            if fragmented is None and not limit.in_message:
                kinds = SIMPLE if self.streaming else whole_kinds
                opcode = simple_opcode(
                    data, pos, header, end, masked=masked, limit=limit.max_size, kinds=kinds
                )
            message = None
            if opcode is not None and end <= len(data):
                key = masking_key(data, pos, header, masked)
                if opcode & COMPRESSED:
                    message = yield from self._inflate(data, pos + header, end, opcode, key)
                    if isinstance(message, Violation):
                        yield message
                        yield from _over()
                else:
                    message = decode_message(data, pos + header, end, opcode, key)
            elif opcode == OPCODE_TEXT or (
                opcode is not None and opcode & COMPRESSED and self._inflate_here(size - header)
            ):
                # Split across reads (and, if compressed, too small for a
                # thread): decoded as a message of one fragment, its UTF-8
                # checked (and its payload inflated) piece by piece.
                assert opcode is not None
                inflater = None
                if opcode & COMPRESSED:
                    inflater = self._deflate.message_inflater(INFLATE_CHUNK_SIZE)  # type: ignore[union-attr]
                fragmented = FragmentedMessage(opcode & 0x0F, inflater)
                fragmented.frame(size - header, limit.max_size)  # its one fragment
                key = masking_key(data, pos, header, masked)
                frag_fin = True
                frag_left, frag_offset = size - header, 0
                pos += header
                continue
            elif opcode == OPCODE_BINARY:
                # A binary payload has nothing to check: gathered whole, or
                # handed on read by read while a message stream is open.
                key = masking_key(data, pos, header, masked)
                pos += header
                piece_left, gathered = size - header, 0
                pieces = None if self.streaming else []
                continue
            if message is None:
                left = size
                continue
            pos = end
            yield message

    def _inflate_here(self, payload_size: int) -> bool:
        """Whether inflating *payload_size* bytes is work for this thread (the
        last message's ratio guesses it, the size limit caps it)."""
        deflate = self._deflate
        assert deflate is not None
        work = min(payload_size * deflate.inflate_ratio, self._limit.max_size)
        return work < deflate.options.thread_threshold

    def _inflate(
        self, data: bytes | bytearray, start: int, end: int, opcode: int, key: bytes | None
    ) -> Generator[ThreadJob, None, str | bytes | Violation]:
        """Inflate the whole compressed message in *data[start:end]*; big ones
        as a :class:`ThreadJob` (the work guessed from the last ratio)."""
        deflate = self._deflate
        assert deflate is not None  # only frames with RSV1 negotiated get here
        view = memoryview(data)[start:end]
        payload = view if key is None else payload_copy(view, key)
        text = opcode & 0x0F == OPCODE_TEXT
        limit = self._limit.max_size
        if not self._inflate_here(len(payload)):
            job = ThreadJob(deflate.inflate_message, payload, text, limit)
            yield job
            assert job.done, "a ThreadJob must be run before the next event"
            result = job.result
        else:
            result = deflate.inflate_message(payload, text, limit)
        return Violation(*result) if isinstance(result, tuple) else result

    # ------------------------------------------------------------ sending

    def send_deflate(self, payload: bytes, text: bool, compress: bool) -> PerMessageDeflate | None:
        """The compressor for an outgoing message of *payload*, or ``None``
        to send it uncompressed: the sending policy of
        :meth:`~trio_ws.core.deflate.PerMessageDeflate.should_compress`,
        unless *compress* is false or compression was not negotiated."""
        deflate = self._deflate
        if deflate is None or not compress or not deflate.should_compress(payload, text):
            return None
        return deflate

    def compress(self, payload: bytes, text: bool) -> bytes:
        """*payload* compressed as a whole message; a pure step that may run
        in a worker thread (see :meth:`needs_thread`). The result must be
        framed with :meth:`message_frame` and sent before the next one."""
        deflate = self._deflate
        assert deflate is not None
        return deflate.compress_message(payload) if text else deflate.compress_binary(payload)

    def needs_thread(self, size: int) -> bool:
        """Whether compressing *size* bytes should run in a worker thread."""
        deflate = self._deflate
        return deflate is not None and size >= deflate.options.thread_threshold

    def message_frame(self, text: bool, payload: bytes, *, compressed: bool = False) -> Frame:
        """The frame of a whole message whose (maybe compressed) *payload* is given."""
        opcode = OPCODE_TEXT if text else OPCODE_BINARY
        return encode_message(opcode, payload, rsv1=compressed, mask=self.client)

    def fragment_frame(
        self, text: bool, payload: bytes, *, first: bool, fin: bool, deflate: bool
    ) -> Frame:
        """One frame of a message sent in pieces: *first* and *fin* say where
        it stands; with *deflate* the piece is compressed here (a cheap,
        sync-flushed step), and every frame of one message must agree."""
        if deflate:
            assert self._deflate is not None
            payload = self._deflate.compress_fragment(payload, fin)
        opcode = CONTINUATION if not first else OPCODE_TEXT if text else OPCODE_BINARY
        return encode_message(opcode, payload, rsv1=deflate and first, mask=self.client, fin=fin)

    def ping_frame(self, payload: bytes) -> Frame | None:
        """A ping frame with *payload* (at most 125 bytes), or ``None`` unless open."""
        if self.state is not State.OPEN:
            return None
        return encode_message(OPCODE_PING, payload, mask=self.client)

    def pong_frame(self, payload: bytes) -> Frame | None:
        """A pong frame with *payload* (at most 125 bytes), or ``None`` unless open."""
        if self.state is not State.OPEN:
            return None
        return encode_message(OPCODE_PONG, payload, mask=self.client)

    def close_frame(self, code: int, reason: str | None = None) -> Frame | None:
        """Our Close frame with *code* and *reason*, if one may still go out.

        While open it starts the closing handshake (LOCAL_CLOSING); after the
        peer's Close it is the echo that completes it (CLOSED). Otherwise
        (ours went out already, or the connection failed) ``None``. 1005
        goes out as a Close frame without a code; the other codes that may
        not be sent become 1000. The reason is cut to fit the frame.
        """
        if self.state is State.OPEN:
            self.state = State.LOCAL_CLOSING
        elif self.state is State.REMOTE_CLOSING:
            self.state = State.CLOSED
        else:
            return None
        self.close_sent = (code, reason)
        return encode_message(OPCODE_CLOSE, close_payload(code, reason), mask=self.client)

    def fail(self, code: int, reason: str | None) -> Frame | None:
        """Fail the connection for a violation: the Close frame to send, if any.

        The state becomes FAILED whatever it was (unless the handshake was
        complete); the frame is given only once, and only if no Close frame
        of ours went out before.
        """
        frame = None
        if self.state is State.OPEN:
            frame = encode_message(OPCODE_CLOSE, close_payload(code, reason), mask=self.client)
            self.close_sent = (code, reason)
        if self.state is not State.CLOSED:
            self.state = State.FAILED
        return frame
