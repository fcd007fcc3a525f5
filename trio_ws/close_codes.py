"""WebSocket close codes (RFC 6455 section 7.4) and the rules about them."""

from __future__ import annotations

from wsproto.frame_protocol import CloseReason as _Code

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
#: IANA-registered: "try again later". Sent to a consumer too slow for a
#: broadcast, which should reconnect (after a pause) and resynchronise.
TRY_AGAIN_LATER = 1013

#: Codes that end a connection quietly: ``async for`` stops without an error.
NORMAL_CODES = frozenset({NORMAL_CLOSURE, GOING_AWAY})

#: Codes that describe a local condition and never appear in a Close frame.
_LOCAL_ONLY = frozenset({NO_STATUS_RCVD, ABNORMAL_CLOSURE, 1015})


def code_name(code: int) -> str:
    """Return the registered name of *code*, or the range it falls in."""
    try:
        return _Code(code).name
    except ValueError:
        pass
    if 3000 <= code <= 3999:
        return "LIBRARY_CODE"
    if 4000 <= code <= 4999:
        return "PRIVATE_CODE"
    return "UNKNOWN_CODE"


def check_sendable(code: int) -> None:
    """Raise ``ValueError`` unless an application may send *code* itself.

    RFC 6455 allows 1000-1003, 1007-1011 (and the IANA-registered 1012-1014)
    and the 3000-4999 ranges; 1005, 1006 and 1015 are for local use only.
    """
    if code in _LOCAL_ONLY or not ((1000 <= code <= 1014 and code != 1004) or 3000 <= code <= 4999):
        raise ValueError(f"{code} is not a close code an endpoint may send")
