"""Every default and limit of trio_ws, in one place.

Each public function that opens or accepts a connection takes the same
keyword arguments: they are declared once here (the ``*Keywords`` typed
dicts, which the public functions take as ``**options``), and
:func:`connection_options` turns them into a :class:`ConnectionOptions`, so
names, defaults and validation live in exactly one module.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypedDict, cast

#: The version of trio_ws (``trio_ws.__version__``; setup.cfg reads it from here).
VERSION = "0.1.0"

#: The ``User-Agent`` header a client sends and the ``Server`` header a
#: server answers with. A client leaves it out if ``extra_headers`` has
#: ``("User-Agent", None)``; a server takes ``server_header=None``.
DEFAULT_USER_AGENT = f"trio_ws/{VERSION}"
DEFAULT_SERVER_HEADER = DEFAULT_USER_AGENT

KiB = 1024
MiB = 1024 * KiB

#: How many complete messages may wait in a connection's queue before the
#: background reader stops reading the socket.
DEFAULT_MESSAGE_QUEUE_SIZE = 1

#: Largest message (in bytes, after decompression) that ``get_message()``
#: will assemble; a bigger one closes the connection with 1009.
DEFAULT_MAX_MESSAGE_SIZE = 1 * MiB

#: Upper bound on the bytes requested from the transport in one read.
DEFAULT_RECEIVE_BUFFER_SIZE = 64 * KiB

#: Seconds allowed for TCP connect, TLS and the HTTP upgrade together.
DEFAULT_CONNECT_TIMEOUT = 60.0

#: Seconds allowed for the closing handshake before the transport is dropped.
DEFAULT_DISCONNECT_TIMEOUT = 60.0

#: Seconds a close that is itself cancelled (or a connection torn down by
#: cancellation) still spends writing its Close frame, shielded, before the
#: transport is dropped: enough for a frame the socket can take at once, and
#: short, because the caller asked to stop.
CANCELLED_CLOSE_GRACE = 0.5


@dataclass(frozen=True)
class DeflateOptions:
    """Settings for permessage-deflate; pass ``compression=None`` to disable it.

    The window bits (9 to 15) bound the LZ77 window each side compresses
    with; zlib's memory for a compressor is about ``2 ** (bits + 2) +
    2 ** (mem_level + 9)`` bytes and for a decompressor ``2 ** bits`` bytes
    plus 7 KiB. The defaults trade a little compression ratio for a small
    per-connection footprint; ``docs/topics/compression.rst`` has the
    measured table.
    """

    #: Window of the server's compressor. A server announces it; a client
    #: asks the server for it.
    server_max_window_bits: int = 12
    #: Window of the client's compressor. A server asks for it when the
    #: client allows (browsers do); a client compresses with at most this.
    client_max_window_bits: int = 12
    #: Reset the server's compressor after each message.
    server_no_context_takeover: bool = False
    #: Reset the client's compressor after each message.
    client_no_context_takeover: bool = False
    #: zlib compression level, 0 (none) to 9 (best); -1 is zlib's default.
    level: int = 6
    #: zlib memory level, 1 to 9: memory for the compressor's internal state.
    mem_level: int = 5
    #: Messages of this many bytes or more are compressed in a worker thread,
    #: and so are reads expected to inflate to this much (judged by the last
    #: message's ratio), so the Trio thread keeps serving others meanwhile.
    thread_threshold: int = 256 * 1024
    #: Messages shorter than this are sent uncompressed (RFC 7692 allows it
    #: per message): below it deflate saves at most about 20 bytes, less
    #: than the TCP/IP headers of the segment carrying them, for a few
    #: microseconds of CPU on each side (and random data grows).
    min_size: int = 32
    #: A binary message is sent uncompressed when deflate would keep more
    #: than this fraction of it (random, encrypted or already compressed
    #: data), judged on a probe of its first ``probe_size`` bytes.
    incompressible_ratio: float = 0.9
    #: Bytes of a binary message compressed by a small throw-away
    #: compressor to judge it, while the last binary message did not compress.
    probe_size: int = 1024
    #: After binary data that did not compress, this many binary messages go
    #: out uncompressed without a probe; then the next one is probed again.
    reprobe_interval: int = 16

    def __post_init__(self) -> None:
        for bits in (self.server_max_window_bits, self.client_max_window_bits):
            if not 9 <= bits <= 15:
                raise ValueError("window bits must be between 9 and 15 (zlib cannot do 8)")
        if not -1 <= self.level <= 9 or not 1 <= self.mem_level <= 9:
            raise ValueError("level must be -1..9 and mem_level 1..9")
        if self.min_size < 0 or self.probe_size < 1 or self.reprobe_interval < 0:
            raise ValueError("min_size, probe_size and reprobe_interval must be >= 0 (probe >= 1)")
        if not 0.0 < self.incompressible_ratio <= 1.0:
            raise ValueError("incompressible_ratio must be in (0, 1]")


#: permessage-deflate settings; ``None`` turns compression off.
DEFAULT_COMPRESSION: DeflateOptions | None = DeflateOptions()

#: A message may arrive in at most one frame per this many bytes of its size
#: limit (16,384 frames for 1 MiB), and at least MIN_FRAGMENTS; more closes
#: the connection with 1008.
BYTES_PER_FRAGMENT = 64
MIN_FRAGMENTS = 1024

#: Largest chunk a compressed fragmented message is inflated into at a
#: time: the memory one piece of it costs however well it compresses, and
#: the most a message stream's consumer is handed at once.
INFLATE_CHUNK_SIZE = 64 * KiB

#: The reader yields to other tasks after this many frames from one read, so
#: a read full of tiny frames cannot monopolise the Trio thread.
FRAMES_PER_YIELD = 256

#: Bytes a connection may have queued for writing before senders wait for
#: the writer task to catch up (one message may take it past this).
WRITE_BUFFER_SIZE = 64 * KiB

#: Messages ``try_send_message`` (and so a broadcast) may leave waiting
#: behind a message being sent as a stream, per connection; with at most
#: WRITE_BUFFER_SIZE bytes of payload among them (unless there is one).
DEFERRED_MESSAGES = 16

#: The writer lets other ready tasks queue frames first, so that a burst
#: shares one system call: while each pass (or the one before) adds frames,
#: for at most CORK_PASSES scheduler passes and CORK_SECONDS, and only while
#: fewer than CORK_BYTES are waiting. The time limit keeps a busy program,
#: whose passes are long, from holding frames back for long.
CORK_PASSES = 32
CORK_SECONDS = 0.001
CORK_BYTES = 64 * KiB

#: A pass that took longer than this means heavy work between frames (say,
#: compressing on the Trio thread): the writer writes instead of waiting for
#: more, since a batch would save little next to the delay.
CORK_LONG_PASS = 0.0002

#: A task that sends many messages without waiting gets a scheduler pass at
#: least every this many frames.
CORK_FRAMES = 32

#: Right after a broadcast, the frames try_send_message (and so a broadcast)
#: queues on an idle plain socket wait in the write buffer for company: the
#: first frame queued on that connection in a later scheduler pass writes
#: them all with one system call, and so does the flusher task after
#: FLUSH_PASSES passes (see trio_ws.flusher). Past BATCH_BYTES waiting they
#: are written at once. BATCH_BYTES is far below WRITE_BUFFER_SIZE, so that
#: waiting never makes a connection look full.
FLUSH_PASSES = 3
BATCH_BYTES = 16 * KiB

#: Queued frames smaller than this are joined into one write; bigger ones
#: are written as they are, without a copy.
WRITE_JOIN_LIMIT = 64 * KiB

#: A message of at least this many bytes that was just compressed is written
#: at once if the writer is idle, not held for other frames to join it: its
#: compression took far longer than a system call, and a sender compressing
#: its next message meanwhile would leave the peer waiting.
WRITE_NOW_AFTER_COMPRESSING = 16 * KiB

#: A reader whose reads never have to wait (data keeps arriving) yields to
#: other tasks after this many of them.
READS_PER_YIELD = 16

#: Seconds between keepalive pings; ``None`` disables keepalive.
DEFAULT_PING_INTERVAL: float | None = 20.0

#: Seconds a keepalive ping may wait for its pong before the connection is
#: closed with 1011; ``None`` waits forever (pings still measure latency).
DEFAULT_PING_TIMEOUT: float | None = 20.0

#: Seconds a server's graceful shutdown waits for handlers before cancelling them.
DEFAULT_SHUTDOWN_TIMEOUT = 10.0

#: Seconds a server waits before accepting again when accept() failed for
#: want of file descriptors or memory (EMFILE, ENFILE, ENOMEM, ENOBUFS).
ACCEPT_RETRY_DELAY = 0.1

#: A server's accept loop takes every connection waiting on a socket
#: listener in one go, but yields to other tasks after this many in a row.
ACCEPT_BATCH = 64

#: With piped (not interactive) input, the command-line client waits after
#: the end of input until no message has arrived for CLI_QUIET_SECONDS, and
#: at most CLI_PIPE_LINGER_MAX seconds, so the answers to the last lines print.
CLI_QUIET_SECONDS = 0.5
CLI_PIPE_LINGER_MAX = 10.0

#: Largest HTTP request or response head (request line and headers) accepted
#: during the opening handshake; a server answers a bigger one with 431.
MAX_HANDSHAKE_HEAD_SIZE = 16 * KiB

#: Most headers accepted in one HTTP request; a server answers more with 431.
MAX_HEADER_COUNT = 100

#: Largest body of a non-101 handshake answer kept in ``ConnectionRejected``.
MAX_REJECT_BODY_SIZE = 64 * KiB

#: Handshake header pairs remembered for sharing between connections (see
#: ``handshake.shared_headers``), and the longest value shared.
SHARED_HEADERS = 256
SHARED_HEADER_VALUE_SIZE = 256


class DefaultType:
    """The type of :data:`DEFAULT`: "use the connection's setting"."""

    def __repr__(self) -> str:
        return "DEFAULT"


#: Marks an argument left at the connection's own setting.
DEFAULT = DefaultType()


class SessionKeywords(TypedDict, total=False):
    """Options of a connection over a stream whose buffers the caller sized.

    Only :func:`~trio_ws.wrap_server_stream` takes exactly these (it takes
    the buffer sizes positionally, as trio-websocket did). The reference
    describes each option once, under "Connection options"; the defaults are
    those of :class:`ConnectionOptions`.
    """

    disconnect_timeout: float
    compression: DeflateOptions | None
    ping_interval: float | None
    ping_timeout: float | None


class StreamKeywords(SessionKeywords, total=False):
    """Options of a connection over a stream that is already connected."""

    message_queue_size: int
    max_message_size: int
    receive_buffer_size: int


class ConnectionKeywords(StreamKeywords, total=False):
    """Options of a connection that trio_ws connects or accepts itself."""

    connect_timeout: float


#: The names in each set of keywords (a typed dict's keys include its bases').
SESSION_KEYWORDS = frozenset(SessionKeywords.__annotations__)
STREAM_KEYWORDS = frozenset(StreamKeywords.__annotations__)
CONNECTION_KEYWORDS = frozenset(ConnectionKeywords.__annotations__)


@dataclass(frozen=True, kw_only=True)
class ConnectionOptions:
    """The per-connection settings shared by clients and servers, checked.

    Its fields are the keys of :class:`ConnectionKeywords` (a test holds them
    equal), with their defaults. The reference documentation describes each
    field once, under "Connection options". Build it with
    :func:`connection_options` from a public function's keywords.
    """

    message_queue_size: int = DEFAULT_MESSAGE_QUEUE_SIZE
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT
    compression: DeflateOptions | None = DEFAULT_COMPRESSION
    ping_interval: float | None = DEFAULT_PING_INTERVAL
    ping_timeout: float | None = DEFAULT_PING_TIMEOUT

    def __post_init__(self) -> None:
        if self.message_queue_size < 0:
            raise ValueError("message_queue_size must be >= 0")
        if self.max_message_size < 1:
            raise ValueError("max_message_size must be >= 1")
        if self.receive_buffer_size < 1:
            raise ValueError("receive_buffer_size must be >= 1")
        if self.connect_timeout <= 0 or self.disconnect_timeout <= 0:
            raise ValueError("timeouts must be > 0 seconds")
        for value in (self.ping_interval, self.ping_timeout):
            if value is not None and value <= 0:
                raise ValueError("ping_interval and ping_timeout must be > 0 or None")

    @property
    def memory_bound(self) -> int:
        """Upper bound, in bytes, of received message data one connection holds.

        The queue holds ``message_queue_size`` messages and the reader
        assembles one more; joining that message's fragments briefly needs a
        second copy of it; one read's worth of bytes is in flight and at most
        one more waits unparsed inside the frame decoder. The sending side
        is bounded separately: see :data:`WRITE_BUFFER_SIZE`.
        """
        messages = (self.message_queue_size + 2) * self.max_message_size
        return messages + 2 * self.receive_buffer_size


_FIELDS = frozenset(field.name for field in fields(ConnectionOptions))
_DEFAULTS = ConnectionOptions()


def connection_options(
    function: str, keywords: Mapping[str, object], accepted: Collection[str] = CONNECTION_KEYWORDS
) -> ConnectionOptions:
    """The checked :class:`ConnectionOptions` of a call to public *function*.

    *keywords* are the ``**options`` it was given; *accepted* are the names
    it takes. A name it does not take is a :class:`TypeError` naming it, as
    Python's own would be, and a bad value a :class:`ValueError`, both
    before any network traffic. Names in *accepted* that are not connection
    options (say, ``proxy``) are the caller's to use.
    """
    for name in keywords:
        if name not in accepted:
            raise TypeError(f"{function}() got an unexpected keyword argument {name!r}")
    chosen = {name: value for name, value in keywords.items() if name in _FIELDS}
    if not chosen:
        return _DEFAULTS  # frozen: every connection with the defaults can share one
    return ConnectionOptions(**cast("dict[str, Any]", chosen))


#: reconnecting_websocket() waits a random part of a delay that starts at
#: RECONNECT_INITIAL_DELAY seconds and grows by RECONNECT_FACTOR after each
#: failed attempt, up to RECONNECT_MAX_DELAY.
RECONNECT_INITIAL_DELAY = 1.0
RECONNECT_MAX_DELAY = 60.0
RECONNECT_FACTOR = 2.0

#: The runner restarts a worker that died after this many seconds, doubling
#: the delay on each further death up to RESTART_MAX_DELAY; a worker that
#: stayed up for RESTART_MAX_DELAY resets the delay.
RESTART_INITIAL_DELAY = 0.5
RESTART_MAX_DELAY = 30.0

#: Seconds the runner waits, beyond the shutdown timeout, for a worker to
#: exit after SIGTERM before it kills the worker.
WORKER_EXIT_GRACE = 5.0

#: Broker events (messages and gap signals) that may wait for the task that
#: delivers them to rooms; more are dropped, and the gap is signalled.
BROKER_BUFFER_SIZE = 10_000

#: Seconds before reconnecting to the broker: a random delay up to this at
#: first, doubling on each failure up to BROKER_MAX_DELAY.
BROKER_INITIAL_DELAY = 0.1
BROKER_MAX_DELAY = 10.0

#: Entries kept in each room's Redis stream (``XADD ... MAXLEN ~``): how far
#: behind a worker may fall, or how long it may be away, and still resume
#: without loss.
REDIS_STREAM_MAXLEN = 10_000

#: Entries one XREAD asks for (at most the cap), and how long it blocks.
REDIS_STREAM_BATCH = 500
REDIS_STREAM_BLOCK = 0.25

#: Seconds allowed to connect to Redis.
REDIS_CONNECT_TIMEOUT = 5.0
