"""The leak harness: every fuzzed example runs in a fresh ``trio.run``, and
afterwards no file descriptor, no Trio task and no ERROR log record of
trio_ws's may be left over."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from .raw_peers import Handlers

#: How long we wait for trio_ws's tasks to finish after a connection ended.
SETTLE_TIMEOUT = 5.0


class ErrorLog(logging.Handler):
    """Collects ERROR (and worse) records of trio_ws's loggers during one example."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> ErrorLog:
        logging.getLogger("trio_ws").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("trio_ws").removeHandler(self)

    def text(self) -> str:
        return "; ".join(
            f"{r.name}: {r.getMessage()}" + (f" ({r.exc_info[1]!r})" if r.exc_info else "")
            for r in self.records
        )


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def fd_targets(fds: set[str]) -> list[str]:
    out = []
    for fd in sorted(fds):
        try:
            out.append(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            out.append(fd)
    return out


def run_isolated(fn: Callable[[], Awaitable[str]]) -> str:
    """Run *fn* in a fresh ``trio.run``; check fds and trio_ws's error log around it."""
    before = open_fds()
    with ErrorLog() as log:
        try:
            label = trio.run(fn)
        except BaseExceptionGroup as group:
            leaves = _leaves(group)
            if len(leaves) == 1:  # report a failed check as itself, not in a group
                raise leaves[0] from None
            raise
    leaked = open_fds() - before
    assert not leaked, f"file descriptors left open: {fd_targets(leaked)}"
    assert not log.records, f"trio_ws logged errors: {log.text()}"
    return label


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


#: trio_ws's one keepalive task per Trio run: started by the first
#: connection, it lives as long as the run, so it is no leak.
KEEPALIVE_TIMER = "trio_ws keepalive timer"


def live_tasks() -> list[trio.lowlevel.Task]:
    tasks = []
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        if task is None:
            continue
        if task.name != KEEPALIVE_TIMER:
            tasks.append(task)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return tasks


async def settle(baseline: int, handlers: Handlers | None = None) -> None:
    """Wait until trio_ws's tasks for finished connections are gone."""
    with trio.move_on_after(SETTLE_TIMEOUT):
        while len(live_tasks()) > baseline or (handlers is not None and handlers.active):
            await trio.sleep(0.005)
    tasks = live_tasks()
    assert handlers is None or handlers.active == 0, (
        f"{handlers.active} handlers still running {SETTLE_TIMEOUT} s after the peer left"
    )
    assert len(tasks) <= baseline, (
        f"tasks left behind after {SETTLE_TIMEOUT} s: {sorted(t.name for t in tasks)}"
    )
