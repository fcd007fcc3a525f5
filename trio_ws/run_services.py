"""One background service per Trio run, started on first use.

The keepalive timer and the broadcast flusher each serve every connection
of a run from a single system task: nothing is spawned per connection, and
a run that never needs a service never starts it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import trio


class Service(Protocol):
    async def run(self) -> None: ...


S = TypeVar("S", bound=Service)


def run_service(var: trio.lowlevel.RunVar[S], make: Callable[[], S], name: str) -> S:
    """The current run's service in *var*; made by *make* and its ``run``
    spawned as a system task (named *name*) when the run has none yet.

    A system task outlives the caller's nurseries and is cancelled only
    when the run ends, so the service never holds a caller's block open.
    """
    try:
        return var.get()
    except LookupError:
        service = make()
        var.set(service)
        trio.lowlevel.spawn_system_task(service.run, name=name)
        return service
