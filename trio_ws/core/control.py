"""Control frames (RFC 6455 5.5): the Close frame's payload, both ways, and
the events of well-formed pings, pongs and Close frames.

The fast branch decodes a control frame here only when nothing about it is
doubtful; anything else (a Close frame with a code a peer may not send, or
a reason that is not UTF-8) is left to the general branch, which says what
is wrong with it.
"""

from __future__ import annotations

from ..close_codes import (
    ABNORMAL_CLOSURE,
    MAX_REASON_BYTES,
    NO_STATUS_RCVD,
    NORMAL_CLOSURE,
    TLS_HANDSHAKE_FAILED,
    receivable,
)
from .events import Close, Ping, Pong

OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA


def close_payload(code: int, reason: str | None) -> bytes:
    """A Close frame's payload: the code and the reason, cut at a character
    boundary to fit (RFC 6455 5.5.1). 1005 means no code at all."""
    if code == NO_STATUS_RCVD:
        return b""
    if code in (ABNORMAL_CLOSURE, TLS_HANDSHAKE_FAILED):
        code = NORMAL_CLOSURE  # local conditions, never sent
    text = (reason or "").encode()
    if len(text) > MAX_REASON_BYTES:
        text = text[:MAX_REASON_BYTES].decode(errors="ignore").encode()
    return code.to_bytes(2, "big") + text


def control_event(opcode: int, payload: bytes) -> Ping | Pong | Close | None:
    """The event of a well-formed control frame, or ``None`` if the general
    branch should judge it (a Close frame with a bad code or reason)."""
    if opcode == OPCODE_PING:
        return Ping(payload)
    if opcode == OPCODE_PONG:
        return Pong(payload)
    if not payload:
        return Close(NO_STATUS_RCVD, None)
    code = int.from_bytes(payload[:2], "big")
    if len(payload) < 2 or not receivable(code):
        return None
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        return None
    return Close(code, reason or None)
