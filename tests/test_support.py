"""The test-side codec and handshake helper, checked on their own.

Every other test trusts them as the oracle, so they are pinned here against
RFC 6455's own examples and against each other (encode, then decode).
"""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from .support.codec import (
    CLOSE,
    TEXT,
    Frame,
    close_code_of,
    close_frame,
    decode_frame,
    decode_frames,
    mask,
)
from .support.handshake import accept_answer, accept_token, header_values, upgrade_request


def test_the_rfc_examples() -> None:
    # RFC 6455 5.7: a single-frame unmasked text message "Hello", and masked.
    assert bytes(Frame(TEXT, b"Hello", masked=False)) == bytes.fromhex("810548656c6c6f")
    masked = Frame(TEXT, b"Hello", key=bytes.fromhex("37fa213d"))
    assert bytes(masked) == bytes.fromhex("818537fa213d7f9f4d5158")
    # RFC 6455 1.3: the accept token of the sample nonce.
    assert accept_token(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@settings(derandomize=True, max_examples=100, deadline=None, database=None)
@given(
    opcode=st.integers(0, 15),
    payload=st.binary(max_size=70_000),
    fin=st.booleans(),
    rsv=st.integers(0, 7),
    masked=st.booleans(),
    key=st.binary(min_size=4, max_size=4),
    encoding=st.sampled_from(["min", "16", "64"]),
)
def test_decoding_undoes_encoding(
    opcode: int, payload: bytes, fin: bool, rsv: int, masked: bool, key: bytes, encoding: str
) -> None:
    data = bytes(Frame(opcode, payload, fin, rsv, masked, key, encoding))
    wire = decode_frame(data + b"next")
    assert wire is not None and wire.size == len(data)
    assert (wire.opcode, wire.payload, wire.fin, wire.rsv, wire.masked) == (
        opcode,
        payload,
        fin,
        rsv,
        masked,
    )
    assert wire.length_bits == {"min": wire.length_bits, "16": 16, "64": 64}[encoding]
    # Cut anywhere before its end, the frame is not there yet.
    for cut in {c for c in (0, 1, 2, len(data) // 2, len(data) - 1) if c < len(data)}:
        assert decode_frame(data[:cut]) is None
    assert mask(mask(payload, key), key) == payload


def test_a_stream_splits_into_frames_and_a_rest() -> None:
    data = bytes(Frame(TEXT, b"a")) + bytes(close_frame(1001, b"x")) + b"\x81"
    frames, end = decode_frames(data)
    assert [f.opcode for f in frames] == [TEXT, CLOSE] and end == len(data) - 1
    assert close_code_of(frames[1].payload) == 1001 and close_code_of(b"") is None


def test_the_answer_fits_the_request() -> None:
    request = upgrade_request("/chat", extra=b"X-A: 1\r\n")
    [key] = header_values(request, b"sec-websocket-key")
    assert request.startswith(b"GET /chat HTTP/1.1\r\n") and header_values(request, b"x-a") == [
        b"1"
    ]
    answer = accept_answer(request)
    assert header_values(answer, b"sec-websocket-accept") == [accept_token(key)]
    assert answer.startswith(b"HTTP/1.1 101 ") and answer.endswith(b"\r\n\r\n")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_oracles_share_no_code_with_trio_ws() -> None:
    """The codec and handshake helper import nothing of trio_ws; the RFC model
    reads only its public settings (trio_ws.options), none of its logic."""
    here = Path(__file__).parent
    for path in sorted((here / "support").glob("*.py")):
        assert not {n for n in _imports(path) if n.split(".")[0] == "trio_ws"}, path
    model = {n for n in _imports(here / "fuzz" / "model.py") if n.split(".")[0] == "trio_ws"}
    assert model == {"trio_ws.options"}
