"""Run a handler in several worker processes that share one port.

``python -m trio_ws serve MODULE:HANDLER --workers N`` lands here. The
runner (the parent process) imports the handler once to fail fast on a
typo, reserves the port, and starts N workers: each is a fresh Python
process running ``serve_websocket(handler, host, port, reuse_port=True)``,
so the kernel spreads new connections over them. The parent only
supervises:

- a worker that exits on its own is restarted after a delay that doubles
  with each further death (logged on ``trio_ws.runner``);
- on SIGTERM or SIGINT every worker is asked to stop (SIGTERM), shuts its
  server down gracefully (clients get 1001, handlers get the shutdown
  timeout) and the runner exits 0;
- a worker whose parent vanishes notices that its stdin pipe closed and
  shuts down the same way, so no orphan keeps serving.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import cast

import trio

from .listeners import reserve_port
from .options import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_SHUTDOWN_TIMEOUT,
    RESTART_INITIAL_DELAY,
    RESTART_MAX_DELAY,
    WORKER_EXIT_GRACE,
)
from .server import Handler, serve_websocket

__all__ = ["RunnerConfig", "load_handler", "run_runner"]

logger = logging.getLogger("trio_ws.runner")

#: What a worker writes on its readiness pipe once it listens.
READY = b"ready\n"


def load_handler(spec: str) -> Handler:
    """Import ``"package.module:name"`` and return the handler it names.

    Raises ``ValueError`` with a one-line reason for a malformed spec, a
    missing attribute or something that is not callable; the module's own
    import errors propagate as themselves.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected MODULE:HANDLER, got {spec!r}")
    target: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"{module_name} has no attribute {attribute!r}") from None
    if not callable(target):
        raise ValueError(f"{spec} is not callable")
    return cast(Handler, target)


@dataclass(frozen=True)
class RunnerConfig:
    """What the runner serves, where, and with how many workers."""

    spec: str
    host: str = "127.0.0.1"
    port: int = 8765
    workers: int = 1
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE

    def worker_command(self, port: int, ready_fd: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "trio_ws.runner",
            self.spec,
            "--host",
            self.host,
            "--port",
            str(port),
            "--shutdown-timeout",
            str(self.shutdown_timeout),
            "--max-message-size",
            str(self.max_message_size),
            "--ready-fd",
            str(ready_fd),
        ]


class _Supervisor:
    def __init__(self, config: RunnerConfig, port: int) -> None:
        self.config = config
        self.port = port
        self.stopping = False
        self.processes: dict[int, trio.Process] = {}
        self.first_ready = trio.Semaphore(0)
        self.failed_first: list[int] = []  # slots whose first start never served
        self.stopped = trio.Event()  # ends restart delays at once

    async def supervise(self, slot: int) -> None:
        """Keep worker *slot* running until the runner stops."""
        delay = RESTART_INITIAL_DELAY
        first = True
        while not self.stopping:
            started = trio.current_time()
            code = await self.run_worker(slot, first)
            first = False
            if self.stopping:
                return
            if trio.current_time() - started > RESTART_MAX_DELAY:
                delay = RESTART_INITIAL_DELAY
            logger.warning("worker %d exited with %s; restarting in %.1f s", slot, code, delay)
            with trio.move_on_after(delay):
                await self.stopped.wait()
            delay = min(delay * 2, RESTART_MAX_DELAY)

    async def run_worker(self, slot: int, first: bool) -> int:
        """Start worker *slot*, wait for it to end, and return its exit status."""
        read_end, write_end = os.pipe()
        try:
            process = await trio.lowlevel.open_process(
                self.config.worker_command(self.port, write_end),
                stdin=subprocess.PIPE,
                pass_fds=(write_end,),
            )
        finally:
            os.close(write_end)
        self.processes[slot] = process
        try:
            logger.info("worker %d started (pid %d)", slot, process.pid)
            async with trio.lowlevel.FdStream(read_end) as ready:
                said = await ready.receive_some()
            if said == READY:
                logger.info("worker %d (pid %d) is serving", slot, process.pid)
            elif first:
                self.failed_first.append(slot)
            if first:
                self.first_ready.release()  # counted even if it failed: never hang
            return await process.wait()
        finally:
            del self.processes[slot]
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()
            if process.stdin is not None:
                await trio.aclose_forcefully(process.stdin)

    async def stop(self) -> None:
        """Ask every worker to stop, and kill those that take too long."""
        self.stopping = True
        self.stopped.set()
        for process in list(self.processes.values()):
            process.send_signal(signal.SIGTERM)
        with trio.move_on_after(self.config.shutdown_timeout + WORKER_EXIT_GRACE):
            while self.processes:
                await trio.sleep(0.05)
        if self.processes:
            logger.warning("workers did not stop in time; killing them")
            self.kill_all()

    def kill_all(self) -> None:
        for process in list(self.processes.values()):
            if process.returncode is None:
                process.kill()


async def run_runner(config: RunnerConfig) -> int:
    """Serve *config* with its workers until SIGTERM or SIGINT; return 0.

    Returns 1 at once if a worker fails before serving for the first time.

    The handler is imported here first, so that a bad spec fails at once
    with ``ValueError`` or the import error. Progress is logged to stderr
    unless the program configured logging itself. Cancelling this kills
    the workers rather than shutting them down gracefully.
    """
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    load_handler(config.spec)
    if config.workers < 1:
        raise ValueError("--workers must be at least 1")
    reservation = reserve_port(config.host, config.port)
    port = reservation.getsockname()[1]
    supervisor = _Supervisor(config, port)
    stop = trio.Event()
    startup = trio.CancelScope()
    status = 0
    with reservation, trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_obey_signals, signals, stop, startup, supervisor)
            for slot in range(1, config.workers + 1):
                nursery.start_soon(supervisor.supervise, slot)
            with startup:  # a signal meanwhile cuts this short
                for _ in range(config.workers):
                    await supervisor.first_ready.acquire()
                if supervisor.failed_first:
                    # Failing before serving even once is a setup error (the
                    # handler's import, the port): restarting would repeat it.
                    slot = supervisor.failed_first[0]
                    logger.error("worker %d failed to start; stopping", slot)
                    status = 1
                    stop.set()
                else:
                    host = f"[{config.host}]" if ":" in config.host else config.host
                    print(
                        f"serving {config.spec} on ws://{host}:{port}/ "
                        f"with {config.workers} workers",
                        flush=True,
                    )
            await stop.wait()
            await supervisor.stop()
            nursery.cancel_scope.cancel()
    logger.info("all workers stopped")
    return status


async def _obey_signals(
    signals: AsyncIterator[int],
    stop: trio.Event,
    startup: trio.CancelScope,
    supervisor: _Supervisor,
) -> None:
    """The first SIGTERM/SIGINT stops gracefully, another one kills the workers.

    It reads signals until cancelled, so that none is left pending when the
    receiver closes (Trio would deliver it again, to the default handler).
    """
    async for signum in signals:
        name = signal.Signals(signum).name
        if not stop.is_set():
            logger.info("got %s: stopping the workers", name)
            stop.set()
            startup.cancel()
        else:
            logger.warning("got %s again: killing the workers", name)
            supervisor.kill_all()


async def _watch_parent(stop: trio.Event) -> None:
    """Set *stop* when the runner's end of our stdin closes: the runner is gone."""
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stdin:
        while await stdin.receive_some():
            pass
    stop.set()


async def _note_signals(signals: AsyncIterator[int], stop: trio.Event) -> None:
    """Set *stop* on SIGTERM/SIGINT, and keep reading them until cancelled.

    A worker often gets two (Ctrl-C reaches the whole process group, then
    the runner sends SIGTERM); one left pending would be delivered again,
    to the default handler, when the receiver closes.
    """
    async for _ in signals:
        stop.set()


async def run_worker(args: argparse.Namespace) -> int:
    """One worker: serve with SO_REUSEPORT until told to stop, then shut down.

    The handler object may carry two optional attributes: ``request_hook``
    (given to :func:`serve_websocket`, e.g. to answer ``/metrics``) and
    ``lifespan``, a callable returning an async context manager that is
    entered before serving and left after the shutdown (per-worker state
    such as a broker connection lives there).
    """
    handler = load_handler(args.spec)
    lifespan = getattr(handler, "lifespan", None)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
            if lifespan is not None:
                await stack.enter_async_context(lifespan())
            server = await nursery.start(
                lambda task_status: serve_websocket(
                    handler,
                    args.host,
                    args.port,
                    None,
                    reuse_port=True,
                    request_hook=getattr(handler, "request_hook", None),
                    max_message_size=args.max_message_size,
                    task_status=task_status,
                )
            )
            if args.ready_fd is not None:
                os.write(args.ready_fd, READY)
                os.close(args.ready_fd)
            stop = trio.Event()
            nursery.start_soon(_note_signals, signals, stop)
            nursery.start_soon(_watch_parent, stop)
            await stop.wait()
            await server.shutdown(timeout=args.shutdown_timeout)
            nursery.cancel_scope.cancel()
    return 0


def _worker_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trio_ws.runner")
    parser.add_argument("spec")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--shutdown-timeout", type=float, default=DEFAULT_SHUTDOWN_TIMEOUT)
    parser.add_argument("--max-message-size", type=int, default=DEFAULT_MAX_MESSAGE_SIZE)
    parser.add_argument("--ready-fd", type=int)
    return parser


def worker_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a worker process (started by the runner, not by hand)."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = _worker_parser().parse_args(argv)
    return trio.run(run_worker, args)


if __name__ == "__main__":
    sys.exit(worker_main())
