"""A client that reconnects after each loss, with exponential backoff and jitter."""

from __future__ import annotations

import logging
import random
import ssl
from collections.abc import AsyncIterator
from typing import Any

import trio

from .client import connect_websocket_url
from .connection import WebSocketConnection
from .exceptions import ConnectionRejected, ConnectionTimeout, HandshakeError

logger = logging.getLogger("trio_ws.reconnect")


def is_fatal(error: Exception) -> bool:
    """Whether retrying cannot help: a 4xx rejection or a certificate failure."""
    if isinstance(error, ConnectionRejected):
        return 400 <= error.status_code < 500
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__
    return False


async def reconnecting_websocket(
    nursery: trio.Nursery,
    url: str,
    ssl_context: ssl.SSLContext | None = None,
    *,
    initial_delay: float = 1.0,
    max_delay: float = 60.0,
    factor: float = 2.0,
    **options: Any,
) -> AsyncIterator[WebSocketConnection]:
    """Yield a connection to *url*, and a fresh one each time the last is lost.

    Use it as ``async for ws in reconnecting_websocket(nursery, url): ...``;
    when the loop body returns to the top (typically after catching
    :class:`ConnectionClosed`), the previous connection is closed and a new
    one is opened. Failed attempts are retried after a delay that starts at
    *initial_delay*, grows by *factor* up to *max_delay*, and is randomised
    ("full jitter") so that many clients do not return at the same instant;
    a connection that lasted longer than *max_delay* resets the delay.

    Errors that retrying cannot fix end the iteration by raising: a 4xx
    rejection and a TLS certificate failure. *options* are those of
    :func:`connect_websocket_url`; the readers run in *nursery*.
    """
    delay = initial_delay
    while True:
        try:
            connection = await connect_websocket_url(nursery, url, ssl_context, **options)
        except (OSError, HandshakeError, ConnectionTimeout) as exc:
            if is_fatal(exc):
                raise
            logger.info("connecting to %s failed (%s); retrying", url, exc)
        else:
            opened = trio.current_time()
            try:
                yield connection
            finally:
                await connection.aclose()
            if trio.current_time() - opened > max_delay:
                delay = initial_delay
            logger.info("connection to %s ended (%s); reconnecting", url, connection.closed)
        await trio.sleep(random.uniform(0, delay))
        delay = min(delay * factor, max_delay)
