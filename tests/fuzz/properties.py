"""The fuzzing properties, by name, for ``tests/test_fuzz.py`` (short,
derandomized runs) and ``benchmarks/fuzz_long.py`` (long random ones).

Each is a Hypothesis *strategy* of cases and a *check* that runs one case in
a fresh ``trio.run`` and raises ``AssertionError`` when trio_ws misbehaves.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from hypothesis import HealthCheck
from hypothesis import strategies as st

from .handshake_cases import answer_cases, check_client_heads, check_server_heads, request_cases
from .raw_peers import (
    check_client_frames,
    check_server_deflate,
    check_server_frames,
    check_server_stream,
)
from .strategies import deflate_cases, frame_cases


def settings_kwargs(max_examples: int, *, derandomize: bool) -> dict[str, Any]:
    """Hypothesis settings for these properties (each example does real I/O)."""
    return dict(
        max_examples=max_examples,
        deadline=None,
        derandomize=derandomize,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
            HealthCheck.function_scoped_fixture,
        ],
    )


PROPERTIES: dict[str, tuple[Callable[[], st.SearchStrategy[Any]], Callable[[Any], str]]] = {
    "server_heads": (request_cases, check_server_heads),
    "server_frames": (partial(frame_cases, masked=True), check_server_frames),
    "client_frames": (partial(frame_cases, masked=False), check_client_frames),
    "client_heads": (answer_cases, check_client_heads),
    "server_deflate": (deflate_cases, check_server_deflate),
    "server_stream": (partial(frame_cases, masked=True), check_server_stream),
}
