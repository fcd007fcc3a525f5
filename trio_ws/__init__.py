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
from .connection import WebSocketConnection
from .exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    ConnectionRejected,
    ConnectionTimeout,
    DisconnectionTimeout,
    HandshakeError,
    MessageTypeError,
)
from .http import HTTPRequest, HTTPResponse
from .options import VERSION, DeflateOptions
from .outgoing import PreparedMessage
from .reconnect import Reconnector, reconnecting_websocket
from .rooms import Rooms
from .server import WebSocketRequest, WebSocketServer, serve_websocket, wrap_server_stream
from .values import CloseReason, Endpoint

__version__ = VERSION

__all__ = [
    "BroadcastResult",
    "CloseReason",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "ConnectionRejected",
    "ConnectionTimeout",
    "DeflateOptions",
    "DisconnectionTimeout",
    "Endpoint",
    "HTTPRequest",
    "HTTPResponse",
    "HandshakeError",
    "MessageTypeError",
    "PreparedMessage",
    "Reconnector",
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
