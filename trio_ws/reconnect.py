"""A client that reconnects after each loss, with exponential backoff and jitter.

It is an async context manager around the iteration, not an async generator:
leaving the ``async with`` block closes the current connection whatever way
the loop ended (``break``, ``return``, an exception, cancellation), so there
is no cleanup for the user to forget and no generator left for the garbage
collector to finalise (which is what emitted a ResourceWarning). It owns the
nursery its connections' readers run in, so its errors come out as
themselves, never in an exception group.
"""

from __future__ import annotations

import contextlib
import logging
import random
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING

import trio

from .client import ClientKeywords, check_client_keywords, connect_websocket_url
from .close_codes import NORMAL_CLOSURE, leaving_code
from .connection import WebSocketConnection
from .exceptions import ConnectionRejected, ConnectionTimeout, HandshakeError
from .groups import one_error
from .options import RECONNECT_FACTOR, RECONNECT_INITIAL_DELAY, RECONNECT_MAX_DELAY

if sys.version_info >= (3, 11):  # resolvable at run time too, for the docs
    from typing import Unpack
elif TYPE_CHECKING:
    from typing_extensions import Unpack

logger = logging.getLogger("trio_ws.reconnect")


def is_fatal(error: Exception) -> bool:
    """Whether retrying cannot help.

    Any HTTP answer other than 101 below 500 is fatal: a 4xx rejection, and
    also a 2xx or 3xx answer (an ordinary web server, not a WebSocket
    endpoint: it will answer the same way next time). A TLS certificate
    failure is fatal too. A 5xx answer, a refused or lost connection and a
    timeout are retried.
    """
    if isinstance(error, ConnectionRejected):
        return error.status_code < 500
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__
    return False


class Reconnector:
    """The connections of :func:`reconnecting_websocket`, one after another.

    ``async for ws in reconnector`` waits for a connection and yields it; when
    the loop comes back for the next one, the previous connection is closed
    first. Only :func:`reconnecting_websocket` creates it.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        url: str,
        ssl_context: ssl.SSLContext | None,
        initial_delay: float,
        max_delay: float,
        factor: float,
        options: ClientKeywords,
    ) -> None:
        self._nursery = nursery
        self._url = url
        self._ssl_context = ssl_context
        self._initial_delay = initial_delay
        self._max_delay = max_delay
        self._factor = factor
        self._options = options
        self._delay = initial_delay
        self._current: WebSocketConnection | None = None
        self._opened = 0.0

    @property
    def current(self) -> WebSocketConnection | None:
        """The connection last yielded, until the next one is sought."""
        return self._current

    def __aiter__(self) -> Reconnector:
        return self

    async def __anext__(self) -> WebSocketConnection:
        """Close the previous connection, then connect, retrying with backoff.

        Raises the error when retrying cannot help (see :func:`is_fatal`).
        Cancelling it while it waits or connects leaves nothing open.
        """
        if self._current is not None:
            await self.aclose()
            if trio.current_time() - self._opened > self._max_delay:
                self._delay = self._initial_delay  # it lasted: start afresh
            await self._back_off()
        while True:
            try:
                connection = await connect_websocket_url(
                    self._nursery, self._url, self._ssl_context, **self._options
                )
            except (OSError, HandshakeError, ConnectionTimeout) as exc:
                if is_fatal(exc):
                    raise
                logger.info("connecting to %s failed (%s); retrying", self._url, exc)
                await self._back_off()
            else:
                self._current, self._opened = connection, trio.current_time()
                return connection

    async def aclose(self, code: int = NORMAL_CLOSURE) -> None:
        """Close the current connection, if any, with *code*.

        Leaving the ``async with`` block does this, with 1000, or with 1011
        when the block raised (1001 when cancelled or interrupted).
        """
        connection, self._current = self._current, None
        if connection is not None:
            await connection.aclose(code)
            logger.info("connection to %s ended (%s)", self._url, connection.closed)

    async def _back_off(self) -> None:
        """Sleep a random part of the delay ("full jitter"), then grow it."""
        await trio.sleep(random.uniform(0, self._delay))
        self._delay = min(self._delay * self._factor, self._max_delay)


def reconnecting_websocket(
    url: str,
    ssl_context: ssl.SSLContext | None = None,
    *,
    initial_delay: float = RECONNECT_INITIAL_DELAY,
    max_delay: float = RECONNECT_MAX_DELAY,
    factor: float = RECONNECT_FACTOR,
    **options: Unpack[ClientKeywords],
) -> AbstractAsyncContextManager[Reconnector]:
    """Connect to *url*, and again each time the connection is lost.

    Use it as::

        async with reconnecting_websocket(url) as connections:
            async for ws in connections:
                ...

    Each turn of the loop gets a fresh connection; when the loop comes back
    to the top (typically after catching :class:`ConnectionClosed`), the
    previous connection is closed and a new one is opened. Leaving the
    ``async with`` block, by ``break``, return, exception or cancellation,
    closes the current connection. Failed attempts are retried after a delay
    that starts at *initial_delay*, grows by *factor* up to *max_delay*, and
    is randomised ("full jitter") so that many clients do not return at the
    same instant; a connection that lasted longer than *max_delay* resets
    the delay.

    Errors that retrying cannot fix end the loop by raising, as themselves
    (never in an exception group): a non-101 HTTP answer below 500 (a 4xx
    rejection, or a 2xx/3xx answer from something that is not a WebSocket
    server) and a TLS certificate failure. *options* are those of
    :func:`connect_websocket_url` (see :ref:`connection-options`), checked
    here, before the first attempt.
    """
    if not isinstance(url, str):
        raise TypeError(
            "reconnecting_websocket() takes the URL first and runs its own nursery: "
            "use `async with reconnecting_websocket(url) as connections:`"
        )
    check_client_keywords("reconnecting_websocket", options)
    return _reconnecting(
        partial(
            Reconnector,
            url=url,
            ssl_context=ssl_context,
            initial_delay=initial_delay,
            max_delay=max_delay,
            factor=factor,
            options=options,
        )
    )


@asynccontextmanager
async def _reconnecting(
    make: Callable[[trio.Nursery], Reconnector],
) -> AsyncIterator[Reconnector]:
    with one_error():
        async with trio.open_nursery() as nursery:  # the connections' readers
            reconnector = make(nursery)
            try:
                yield reconnector
            except BaseException as exc:
                # Closing in a cancelled scope raises Cancelled at once: the
                # block's own exception is the one to go on (Trio issue 1559).
                with contextlib.suppress(trio.Cancelled):
                    await reconnector.aclose(leaving_code(exc))
                raise
            await reconnector.aclose()
