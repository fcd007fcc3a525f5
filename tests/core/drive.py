"""Driving the sans-I/O core in tests: bytes in, events out, no sockets.

:func:`events_of` feeds a byte string to a fresh :class:`Protocol` in pieces
of a given size, runs any :class:`ThreadJob` inline (the core does not mind
which thread), and returns what came out. :func:`normalised` joins the
chunks of a message into one ``("message", data)`` item, so that the same
bytes cut at different read boundaries can be compared.
"""

from __future__ import annotations

import zlib

from trio_ws.core.deflate import PerMessageDeflate
from trio_ws.core.events import Chunk, Event, ThreadJob, Violation
from trio_ws.core.protocol import Protocol
from trio_ws.core.size_limit import MessageSizeLimit
from trio_ws.options import DeflateOptions

MiB = 1 << 20


def make(
    *, client: bool = False, max_size: int = MiB, deflate: bool = False, **deflate_options: object
) -> Protocol:
    """A protocol core as a server (or *client*) gets it after the handshake."""
    limit = MessageSizeLimit(max_size)
    extension = None
    if deflate:
        extension = PerMessageDeflate(
            DeflateOptions(**deflate_options),  # type: ignore[arg-type]
            limit,
            client=client,
        )
        if client:
            extension.finalize("permessage-deflate")
        else:
            assert extension.accept("permessage-deflate") is not None
    return Protocol(client=client, size_limit=limit, deflate=extension)


def feed(core: Protocol, data: bytes, cut: int | None = None) -> list[Event]:
    """Hand *data* to *core* in pieces of *cut* bytes (all at once by default)
    and collect every event until it needs more; jobs are run and not listed."""
    out: list[Event] = []
    pieces = [data] if cut is None else [data[i : i + cut] for i in range(0, len(data), cut)]
    for piece in pieces:
        if piece:
            core.receive_data(piece)
        while (event := core.next_event()) is not None:
            if isinstance(event, ThreadJob):
                event.run()
            else:
                out.append(event)
    return out


def events_of(data: bytes, cut: int | None = None, **options: object) -> list[Event]:
    """The events a fresh core (made with *options*, see :func:`make`) reports for *data*."""
    return feed(make(**options), data, cut)  # type: ignore[arg-type]


def normalised(events: list[Event]) -> list[object]:
    """*events* with each message's chunks joined: ``("message", data)``, or
    ``("partial", data)`` for what came of a message before a violation."""
    out: list[object] = []
    parts: list[str | bytes] = []
    for event in events:
        if isinstance(event, Chunk):
            parts.append(event.data)
            if event.final:
                out.append(("message", parts[0][:0].join(parts)))  # type: ignore[arg-type]
                parts = []
        elif isinstance(event, (str, bytes)):
            out.append(("message", event))
        else:
            if isinstance(event, Violation) and parts:  # what came of the message
                out.append(("partial", parts[0][:0].join(parts)))  # type: ignore[arg-type]
                parts = []
            out.append(event)
    if parts:
        out.append(("partial", parts[0][:0].join(parts)))  # type: ignore[arg-type]
    return out


def deflated(data: bytes) -> bytes:
    """*data* compressed as permessage-deflate sends a message (tail removed)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]
