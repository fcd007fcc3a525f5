"""The two endpoints the differential test compares, reduced to one outcome.

:func:`run_core` feeds a stream's reads to trio_ws's sans-I/O
:class:`~trio_ws.core.protocol.Protocol`; :func:`run_wsproto` feeds the same
reads to a bare :class:`wsproto.connection.Connection` with wsproto's own
:class:`~wsproto.extensions.PerMessageDeflate`, the oracle. Both report an
:class:`Outcome`: the whole messages, pings and pongs in order, and how the
stream ended.

A bare wsproto connection has no message size limit, so the oracle applies
the documented one itself, the simple way: it fails with 1009 once the
bytes it has delivered of one message (after decompression) pass
``max_size``. It has no limit on frames per message at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import CloseConnection, Message, Ping, Pong
from wsproto.extensions import Extension, PerMessageDeflate

import trio_ws.core.events as core_events
from trio_ws import DeflateOptions
from trio_ws.core.deflate import PerMessageDeflate as CoreDeflate
from trio_ws.core.protocol import Protocol
from trio_ws.core.size_limit import MessageSizeLimit

from ..support.codec import BINARY, TEXT

#: What the sending side offered (a client) or answered (a server): the
#: same text for both endpoints, so that both negotiate the same thing.
DEFLATE_OFFER = "permessage-deflate"
DEFLATE_ANSWER = "permessage-deflate"

#: An event of an outcome: ``("message", opcode, payload)``, ``("ping",
#: payload)`` or ``("pong", payload)``.
Item = tuple[object, ...]


@dataclass
class Outcome:
    """What an endpoint made of a stream."""

    events: list[Item] = field(default_factory=list)
    #: ``close`` (the peer's Close frame), ``fail`` (a violation) or ``eof``
    #: (the stream ended without either).
    end: str = "eof"
    #: The close code for ``close`` and ``fail``.
    code: int | None = None
    reason: str | None = None
    #: Bytes of the stream fed to the endpoint before it ended.
    fed: int = 0
    #: Worker-thread jobs the core handed out (run inline here).
    jobs: int = 0

    def ending(self) -> str:
        return self.end if self.code is None else f"{self.end} {self.code}"

    def describe(self) -> str:
        shown = []
        for item in self.events:
            kind, *rest = item
            shown.append(f"{kind}{tuple(_short(x) for x in rest)}")
        return f"[{', '.join(shown)}] then {self.ending()} ({self.reason!r})"


def _short(value: object) -> object:
    if isinstance(value, bytes) and len(value) > 24:
        return value[:24] + b"...(%d)" % len(value)
    return value


# ---------------------------------------------------------------- trio_ws


def _core_deflate(client: bool, limit: MessageSizeLimit) -> CoreDeflate:
    ext = CoreDeflate(DeflateOptions(), limit, client=client)
    if client:
        ext.finalize(DEFLATE_ANSWER)
    else:
        assert ext.accept(DEFLATE_OFFER) is not None
    return ext


def run_core(
    reads: list[bytes], *, client: bool, deflate: bool, max_size: int, streaming: bool = False
) -> Outcome:
    """trio_ws's protocol core reading *reads*; worker-thread jobs run inline.

    *streaming* reads as a message stream does (every message in chunks,
    however it arrived), the way the connection sets the core while its
    application has ``get_message_stream()`` open; the chunks are joined.
    """
    limit = MessageSizeLimit(max_size)
    protocol = Protocol(
        client=client, size_limit=limit, deflate=_core_deflate(client, limit) if deflate else None
    )
    protocol.set_limit(max_size, streaming=streaming)
    out = Outcome()
    parts: list[str | bytes] = []
    pending = iter(reads)
    while True:
        event = protocol.next_event()
        if event is None:
            data = next(pending, None)
            if data is None:
                return out
            out.fed += len(data)
            protocol.receive_data(data)
        elif isinstance(event, core_events.ThreadJob):
            out.jobs += 1
            event.run()
        elif isinstance(event, (str, bytes)):
            out.events.append(_message(event))
        elif isinstance(event, core_events.Chunk):
            parts.append(event.data)
            if event.final:
                text = isinstance(parts[0], str)
                joined = "".join(parts) if text else b"".join(parts)  # type: ignore[arg-type]
                out.events.append(_message(joined))
                parts = []
        elif isinstance(event, core_events.Ping):
            out.events.append(("ping", event.payload))
        elif isinstance(event, core_events.Pong):
            out.events.append(("pong", event.payload))
        elif isinstance(event, core_events.Close):
            out.end, out.code, out.reason = "close", event.code, event.reason
            return out
        else:
            assert isinstance(event, core_events.Violation), event
            out.end, out.code, out.reason = "fail", event.code, event.reason
            return out


def _message(data: str | bytes) -> Item:
    if isinstance(data, str):
        return ("message", TEXT, data.encode())
    return ("message", BINARY, bytes(data))


# ---------------------------------------------------------------- wsproto


def _wsproto_deflate(client: bool) -> PerMessageDeflate:
    ext = PerMessageDeflate()
    if client:
        ext.finalize(DEFLATE_ANSWER)
    else:
        assert ext.accept(DEFLATE_OFFER) is not None
    return ext


def run_wsproto(reads: list[bytes], *, client: bool, deflate: bool, max_size: int) -> Outcome:
    """A bare wsproto connection reading *reads*, with the size rule above."""
    extensions: list[Extension] = [_wsproto_deflate(client)] if deflate else []
    kind = ConnectionType.CLIENT if client else ConnectionType.SERVER
    conn = Connection(kind, extensions=extensions)
    out = Outcome()
    parts: list[str | bytes] = []
    size = 0
    for data in reads:
        out.fed += len(data)
        conn.receive_data(data)
        for event in conn.events():
            if isinstance(event, Message):
                piece = event.data
                parts.append(piece)
                size += len(piece.encode()) if isinstance(piece, str) else len(piece)
                if size > max_size:
                    out.end, out.code, out.reason = "fail", 1009, "too big (oracle)"
                    return out
                if event.message_finished:
                    text = isinstance(parts[0], str)
                    joined = "".join(parts) if text else b"".join(parts)  # type: ignore[arg-type]
                    out.events.append(_message(joined))
                    parts, size = [], 0
            elif isinstance(event, Ping):
                out.events.append(("ping", bytes(event.payload)))
            elif isinstance(event, Pong):
                out.events.append(("pong", bytes(event.payload)))
            else:
                assert isinstance(event, CloseConnection), event
                # wsproto reports a violation as a CloseConnection that
                # leaves the state OPEN; a real Close moves it on.
                peer = conn.state is not ConnectionState.OPEN
                out.end = "close" if peer else "fail"
                out.code, out.reason = event.code, event.reason or None
                return out
    return out
