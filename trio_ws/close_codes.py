"""WebSocket close codes (RFC 6455 section 7.4) and the rules about them."""

from __future__ import annotations

import enum

from .core.frames import MAX_CONTROL_PAYLOAD

NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
UNSUPPORTED_DATA = 1003
NO_STATUS_RCVD = 1005
ABNORMAL_CLOSURE = 1006
INVALID_FRAME_PAYLOAD_DATA = 1007
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
MANDATORY_EXT = 1010
INTERNAL_ERROR = 1011
SERVICE_RESTART = 1012
#: IANA-registered: "try again later". Sent to a consumer too slow for a
#: broadcast, which should reconnect (after a pause) and resynchronise.
TRY_AGAIN_LATER = 1013
TLS_HANDSHAKE_FAILED = 1015


class _Registered(enum.IntEnum):
    """The codes with a registered name (RFC 6455 7.4.1 and IANA), as
    trio-websocket names them; 1014 has none there, so none here."""

    NORMAL_CLOSURE = NORMAL_CLOSURE
    GOING_AWAY = GOING_AWAY
    PROTOCOL_ERROR = PROTOCOL_ERROR
    UNSUPPORTED_DATA = UNSUPPORTED_DATA
    NO_STATUS_RCVD = NO_STATUS_RCVD
    ABNORMAL_CLOSURE = ABNORMAL_CLOSURE
    INVALID_FRAME_PAYLOAD_DATA = INVALID_FRAME_PAYLOAD_DATA
    POLICY_VIOLATION = POLICY_VIOLATION
    MESSAGE_TOO_BIG = MESSAGE_TOO_BIG
    MANDATORY_EXT = MANDATORY_EXT
    INTERNAL_ERROR = INTERNAL_ERROR
    SERVICE_RESTART = SERVICE_RESTART
    TRY_AGAIN_LATER = TRY_AGAIN_LATER
    TLS_HANDSHAKE_FAILED = TLS_HANDSHAKE_FAILED


#: Codes that end a connection quietly: ``async for`` stops without an error.
#: 1005 is what a Close frame without a code means, and browsers send one for
#: a plain ``ws.close()``: the peer said goodbye and gave no error, so it is
#: as normal as 1000. (A separate set would be a second rule for one question.)
NORMAL_CODES = frozenset({NORMAL_CLOSURE, GOING_AWAY, NO_STATUS_RCVD})

#: Longest close reason, in UTF-8 bytes: a Close frame's payload is the
#: two-byte code and the reason, at most 125 bytes in all.
MAX_REASON_BYTES = MAX_CONTROL_PAYLOAD - 2

#: Codes that describe a local condition and never appear in a Close frame.
_LOCAL_ONLY = frozenset({NO_STATUS_RCVD, ABNORMAL_CLOSURE, TLS_HANDSHAKE_FAILED})


def code_name(code: int) -> str:
    """Return the registered name of *code*, or the range it falls in.

    The range names are trio-websocket's, so programs that compare them
    keep working.
    """
    try:
        return _Registered(code).name
    except ValueError:
        pass
    if 1000 <= code <= 2999:
        return "RFC_RESERVED"
    if 3000 <= code <= 3999:
        return "IANA_RESERVED"
    if 4000 <= code <= 4999:
        return "PRIVATE_RESERVED"
    return "INVALID_CODE"


def leaving_code(error: BaseException) -> int:
    """The code to close with when a block that owns a connection ends by *error*.

    1011 for a failure; 1001 (going away) when it was cancelled or
    interrupted (Ctrl-C), as the connection's reader also says when the
    cancellation reaches it first.
    """
    return INTERNAL_ERROR if isinstance(error, Exception) else GOING_AWAY


def check_sendable(code: int, reason: str | None = None) -> None:
    """Raise ``ValueError`` unless an application may send *code* and *reason* itself.

    RFC 6455 allows 1000-1003, 1007-1011 (and the IANA-registered 1012-1014)
    and the 3000-4999 ranges; 1005, 1006 and 1015 are for local use only.
    The reason must fit the frame: at most 123 bytes once encoded as UTF-8
    (``TypeError`` if it is not a ``str``). It is never cut short silently.
    """
    if not isinstance(code, int):
        raise TypeError(f"a close code must be an int, not {type(code).__name__}")
    if reason is not None:
        if not isinstance(reason, str):
            raise TypeError(f"a close reason must be a str or None, not {type(reason).__name__}")
        size = len(reason.encode())
        if size > MAX_REASON_BYTES:
            raise ValueError(
                f"a close reason is at most {MAX_REASON_BYTES} bytes of UTF-8, not {size}"
            )
    if code in _LOCAL_ONLY or not ((1000 <= code <= 1014 and code != 1004) or 3000 <= code <= 4999):
        raise ValueError(f"{code} is not a close code an endpoint may send")


_RECEIVABLE = frozenset(int(code) for code in _Registered) - _LOCAL_ONLY


def receivable(code: int) -> bool:
    """Whether a peer's Close frame may carry *code*: a registered code
    that is not local-only, or one of the 3000-4999 ranges (wsproto's rule,
    which the fast branch applies to the Close frames it decodes)."""
    if 3000 <= code <= 4999:
        return True
    return code in _RECEIVABLE
