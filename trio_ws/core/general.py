"""The general branch: wsproto's frame parser, for every frame the fast branch leaves.

The fast branch (:mod:`trio_ws.core.protocol`) decodes the common frames
itself. Everything else (compressed fragments, compressed messages split
across reads while a message stream is open, and every frame that breaks a
rule) is fed to wsproto's :class:`~wsproto.frame_protocol.FrameProtocol`,
which stays the authority on what is wrong with a frame. Only its frame
parser is used, never wsproto's ``Connection``: the closing state belongs to
the core alone, so the parser can be created late, when the first frame for
it arrives, and an idle connection never pays for it.

It is only ever handed whole frames (a long one in pieces), so it always
resumes at a frame boundary after frames the fast branch decoded; the fast
branch in turn never decodes a data frame while a message fed here is in
progress (:attr:`GeneralBranch.in_message`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from wsproto.extensions import Extension
from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed

from ..close_codes import MESSAGE_TOO_BIG, POLICY_VIOLATION
from .events import Chunk, Close, Ping, Pong, Violation
from .size_limit import MessageSizeLimit

#: What the general branch reports (whole messages come as final chunks).
GeneralEvent = Chunk | Ping | Pong | Close | Violation


class GeneralBranch:
    """wsproto's frame parser for one connection, with trio_ws's extensions."""

    __slots__ = ("_extensions", "_limit", "_parser")

    def __init__(
        self, *, client: bool, extensions: Sequence[Extension], limit: MessageSizeLimit
    ) -> None:
        # The limit goes last, so that it counts payload after decompression.
        self._parser = FrameProtocol(client, [*extensions, limit])
        self._extensions = extensions
        self._limit = limit

    @property
    def in_message(self) -> bool:
        """Whether a data message fed here has begun and not yet ended."""
        return self._limit.in_message

    def feed(self, data: bytes | bytearray) -> None:
        """Hand wsproto the next bytes of the frame stream."""
        # wsproto takes a bytearray as well as bytes.
        self._parser.receive_bytes(data)  # type: ignore[arg-type]

    def events(self) -> Iterator[GeneralEvent]:
        """The events the bytes fed so far make, decoded lazily one at a time.

        Ends after a :class:`Close` or a :class:`Violation`; nothing
        may be fed after either.
        """
        try:
            for frame in self._parser.received_frames():
                opcode, payload = frame.opcode, frame.payload
                if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                    assert not isinstance(payload, tuple)
                    data = payload if isinstance(payload, (str, bytes)) else bytes(payload)
                    yield Chunk(data, frame.message_finished)
                elif opcode is Opcode.PING:
                    assert isinstance(payload, (bytes, bytearray))
                    yield Ping(bytes(payload))
                elif opcode is Opcode.PONG:
                    assert isinstance(payload, (bytes, bytearray))
                    yield Pong(bytes(payload))
                elif opcode is Opcode.CLOSE:
                    assert isinstance(payload, tuple)
                    code, reason = payload
                    yield Close(int(code), reason or None)
                    return
        except ParseFailed as exc:
            reason = str(exc)
            if exc.code in (MESSAGE_TOO_BIG, POLICY_VIOLATION) and self._limit.violation:
                reason = self._limit.violation  # says which limit, and by how much
            else:  # wsproto says only "error in extension": ours say what was wrong
                said = [getattr(e, "violation", None) for e in self._extensions]
                reason = next((text for text in said if text), reason)
            yield Violation(int(exc.code), reason)

    def collect(self) -> list[GeneralEvent]:
        """All of :meth:`events` at once: the form a worker thread runs."""
        return list(self.events())
