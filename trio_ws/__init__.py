"""trio_ws: WebSocket client and server for Trio, with bounded memory.

The public names match trio-websocket's, so ``import trio_ws as
trio_websocket`` works for ordinary programs.
"""

from .broadcast import BroadcastResult, SlowConsumer, broadcast
from .client import (
    connect_websocket,
    connect_websocket_url,
    open_websocket,
    open_websocket_url,
    wrap_client_stream,
)
from .compression import DeflateOptions
from .connection import WebSocketConnection
from .exceptions import (
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    DisconnectionTimeout,
    HandshakeError,
)
from .http import HTTPRequest, HTTPResponse
from .outgoing import PreparedMessage
from .reconnect import reconnecting_websocket
from .rooms import Rooms
from .server import WebSocketRequest, WebSocketServer, serve_websocket, wrap_server_stream
from .values import CloseReason, Endpoint

__version__ = "0.1.0"

__all__ = [
    "BroadcastResult",
    "CloseReason",
    "ConnectionClosed",
    "ConnectionRejected",
    "ConnectionTimeout",
    "DeflateOptions",
    "DisconnectionTimeout",
    "Endpoint",
    "HTTPRequest",
    "HTTPResponse",
    "HandshakeError",
    "PreparedMessage",
    "Rooms",
    "SlowConsumer",
    "WebSocketConnection",
    "WebSocketRequest",
    "WebSocketServer",
    "broadcast",
    "connect_websocket",
    "connect_websocket_url",
    "open_websocket",
    "open_websocket_url",
    "reconnecting_websocket",
    "serve_websocket",
    "wrap_client_stream",
    "wrap_server_stream",
]
