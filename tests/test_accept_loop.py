"""The server's accept loop (trio_ws.listeners.accept_forever)."""

from __future__ import annotations

import errno
import logging

import pytest
import trio
import trio.testing

from trio_ws.listeners import accept_forever
from trio_ws.options import ACCEPT_RETRY_DELAY


class ScriptedListener(trio.abc.Listener[trio.abc.Stream]):
    """accept() raises or returns what the script says, then waits forever."""

    def __init__(self, script: list[OSError | trio.abc.Stream]) -> None:
        self.script = script
        self.closed = False

    async def accept(self) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        if not self.script:
            await trio.sleep_forever()
        step = self.script.pop(0)
        if isinstance(step, OSError):
            raise step
        return step

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


def memory_stream() -> trio.abc.Stream:
    return trio.testing.memory_stream_pair()[0]


async def test_running_out_of_descriptors_is_logged_and_retried(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = memory_stream(), memory_stream()
    listener = ScriptedListener(
        [first, OSError(errno.EMFILE, "too many"), OSError(errno.ENOBUFS, "no"), second]
    )
    served: list[tuple[trio.abc.Stream, float]] = []

    async def serve(stream: trio.abc.Stream) -> None:
        served.append((stream, trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_forever, listener, serve, nursery)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert [stream for stream, _ in served] == [first, second]
    # Two failures, each followed by a pause before the next accept().
    assert served[1][1] - served[0][1] == pytest.approx(2 * ACCEPT_RETRY_DELAY)
    failures = [r for r in caplog.records if r.name == "trio_ws.server"]
    assert [r.levelno for r in failures] == [logging.ERROR, logging.ERROR]
    assert "EMFILE" in failures[0].getMessage()
    assert "ENOBUFS" in failures[1].getMessage()
    assert listener.closed  # cancelling the loop closed the listener


async def test_other_accept_errors_end_the_loop_and_close_the_listener() -> None:
    listener = ScriptedListener([OSError(errno.EBADF, "bad file descriptor")])

    async def serve(stream: trio.abc.Stream) -> None:
        raise AssertionError("nothing was accepted")

    async with trio.open_nursery() as nursery:
        with pytest.raises(OSError) as caught:
            await accept_forever(listener, serve, nursery)
    assert caught.value.errno == errno.EBADF
    assert listener.closed


async def test_a_stream_accepted_while_the_nursery_closes_is_closed() -> None:
    stream, peer = trio.testing.memory_stream_pair()
    listener = ScriptedListener([stream])

    async def serve(stream: trio.abc.Stream) -> None:
        raise AssertionError("the nursery was closed: nothing may run")

    async with trio.open_nursery() as closed_nursery:
        pass
    with pytest.raises(RuntimeError):
        await accept_forever(listener, serve, closed_nursery)
    with pytest.raises(trio.BrokenResourceError):
        await peer.send_all(b"anyone there?")  # our end was closed
    assert listener.closed
