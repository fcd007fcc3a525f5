"""The reference's statements that can be checked against the code."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import trio_ws

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference.rst"

CLIENTS: list[Callable[..., object]] = [
    trio_ws.open_websocket_url,
    trio_ws.open_websocket,
    trio_ws.connect_websocket_url,
    trio_ws.connect_websocket,
]
COLUMNS: dict[str, list[Callable[..., object]]] = {
    "clients": CLIENTS,
    "``wrap_client_stream``": [trio_ws.wrap_client_stream],
    "``serve_websocket``": [trio_ws.serve_websocket],
    "``WebSocketServer``": [trio_ws.WebSocketServer],
    "``wrap_server_stream``": [trio_ws.wrap_server_stream],
}
# Arguments with a default that are not connection options.
NOT_OPTIONS = {"ssl_context", "task_status"}


def option_table() -> list[list[str]]:
    """The header and rows of the csv-table under "Connection options"."""
    text = REFERENCE.read_text()
    table = text[text.index(".. csv-table::") :]
    header, rows = table.split("\n\n", 2)[:2]
    names = header.split(":header:", 1)[1]
    assert "\n" not in names.strip(), "a second line would be a row of its own"
    return [[cell.strip() for cell in line.split(",")] for line in [names, *rows.splitlines()]]


def options_of(function: Callable[..., object]) -> set[str]:
    """Defaulted parameters, and the keys of the typed dict ``**options`` unpacks."""
    target = function.__init__ if isinstance(function, type) else function
    parameters = inspect.signature(target).parameters.values()
    names = {p.name for p in parameters if p.default is not p.empty and p.name not in NOT_OPTIONS}
    for p in parameters:
        if p.kind is p.VAR_KEYWORD:  # annotated "Unpack[SomeKeywords]" (PEP 692)
            assert isinstance(p.annotation, str) and p.annotation.startswith("Unpack["), p
            keywords = inspect.unwrap(target).__globals__[p.annotation[len("Unpack[") : -1]]
            names |= set(keywords.__annotations__)
    return names


def test_option_table_says_exactly_which_function_takes_which_option() -> None:
    header, *rows = option_table()
    assert header[1:] == list(COLUMNS)
    documented = {row[0].strip("`") for row in rows}
    for column, (label, functions) in enumerate(COLUMNS.items(), start=1):
        said = {row[0].strip("`") for row in rows if row[column] == "yes"}
        assert {row[column] for row in rows} <= {"yes", "no"}
        for function in functions:
            taken = options_of(function)
            assert taken <= documented, f"{function.__name__}: undocumented {taken - documented}"
            assert said == taken, f"{label} / {function.__name__}: table {said}, code {taken}"


def option_terms() -> list[str]:
    """The terms (unindented lines) of the "Connection options" definition list."""
    text = REFERENCE.read_text()
    section = text[text.index("Connection options\n---") : text.index(".. csv-table::")]
    return [line for line in section.splitlines() if line.startswith("``")]


def test_each_option_is_described_once() -> None:
    terms = option_terms()
    for row in option_table()[1:]:
        name = row[0]  # ``name``, as the terms write it
        assert sum(term.count(name) for term in terms) == 1, f"{name} described {terms}"


def shown(name: str, value: object) -> str:
    """How the reference writes a default: 1, 1 MiB, 64 KiB, 60 s."""
    if isinstance(value, int) and name.endswith("_size") and value >= 1024:
        for unit, scale in (("MiB", 1024 * 1024), ("KiB", 1024)):
            if value % scale == 0:
                return f"{value // scale} {unit}"
    if name.endswith(("_timeout", "_interval")):
        return f"{value:g} s"
    return str(value)


def test_the_defaults_the_reference_states_are_the_code_s() -> None:
    from dataclasses import fields

    from trio_ws.options import ConnectionOptions

    terms = "\n".join(option_terms())
    for field in fields(ConnectionOptions):
        if field.name == "compression":
            continue  # described in words: DeflateOptions()
        expected = f"``{field.name}`` (default {shown(field.name, field.default)})"
        assert expected in terms, expected
