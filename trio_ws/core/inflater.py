"""Inflating one compressed fragmented message piece by piece (RFC 7692).

:class:`~trio_ws.core.deflate.PerMessageDeflate` makes a
:class:`MessageInflater` on its connection's decompressor for each
compressed message that arrives in fragments; the protocol core feeds it
each fragment's payload as it comes.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator

from ..close_codes import INVALID_FRAME_PAYLOAD_DATA, MESSAGE_TOO_BIG

TAIL = b"\x00\x00\xff\xff"  # RFC 7692 7.2.1: removed by senders, restored here


def stream_ended() -> tuple[int, str]:
    """Compressed data after a BFINAL block ended the peer's deflate stream:
    nothing can follow on it (wsproto says 1007 too; dropping it loses data)."""
    return INVALID_FRAME_PAYLOAD_DATA, "compressed data after the end of the deflate stream"


class MessageInflater:
    """One compressed fragmented message, inflated piece by piece.

    The streaming counterpart of
    :meth:`~trio_ws.core.deflate.PerMessageDeflate.inflate_message`,
    for a message whose first frame had RSV1 and no FIN: the reader hands
    over its payload as it arrives (frame boundaries do not matter to
    deflate), and :meth:`chunks` inflates each piece lazily into chunks of
    at most *chunk_size* bytes, so a piece that expands 1000-fold still
    costs one chunk of memory at a time, and a consumer that stops taking
    chunks stops the inflating too. Output past the message's size limit
    is refused after at most one byte too many.
    """

    __slots__ = ("_chunk_size", "_decompressor", "_ended", "_wire", "finished", "size")

    def __init__(
        self,
        decompressor: zlib._Decompress,
        chunk_size: int,
        ended: Callable[[int, int], object],
    ) -> None:
        self._decompressor = decompressor
        self._ended = ended  # told (compressed size, inflated size) at the end
        self._chunk_size = max(1, chunk_size)
        self._wire = 0  # compressed bytes taken
        #: Bytes inflated so far (the message's size once it has ended).
        self.size = 0
        #: Whether the last chunk :meth:`chunks` gave ended the message.
        self.finished = False

    def chunks(
        self, data: bytes | bytearray | memoryview, final: bool, max_size: int
    ) -> Iterator[bytes | tuple[int, str]]:
        """Inflate *data*, the next piece of the compressed payload (*final*:
        its last), in chunks, the last of them with :attr:`finished` set.

        Yields ``(close code, reason)`` and stops for corrupt data (1007) or
        once the message would grow past *max_size* bytes (1009). Pieces
        that inflate to nothing yet yield nothing, except that the final
        piece always yields one (perhaps empty) last chunk.
        """
        decompressor = self._decompressor
        self._wire += len(data)
        pending: bytes | bytearray | memoryview = data
        tail_due = final  # the 4 bytes senders strip (RFC 7692 7.2.1)
        while True:
            # One byte more than the budget reveals an overflow.
            budget = min(self._chunk_size, max_size - self.size + 1)
            if decompressor.eof:  # a BFINAL block ended the stream: no tail needed
                if pending and pending is not TAIL:
                    yield stream_ended()
                    return
                pending, tail_due, output = b"", False, b""
            else:
                try:
                    output = decompressor.decompress(pending, budget)
                except zlib.error as exc:
                    yield INVALID_FRAME_PAYLOAD_DATA, f"invalid compressed data: {exc}"
                    return
                if decompressor.unused_data and pending is not TAIL:
                    yield stream_ended()
                    return
            self.size += len(output)
            if self.size > max_size:
                yield MESSAGE_TOO_BIG, f"message inflates past the limit of {max_size} bytes"
                return
            pending = decompressor.unconsumed_tail
            # A full chunk may leave output inside zlib even with no input left.
            if not pending and len(output) < budget:
                if tail_due:
                    pending, tail_due = TAIL, False
                elif final:
                    self.finished = True
                    self._ended(self._wire, self.size)
                    yield output
                    return
                else:
                    if output:
                        yield output
                    return
            if output:
                yield output
