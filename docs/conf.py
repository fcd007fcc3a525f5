"""Sphinx configuration; builds offline (no intersphinx, no remote images).

The build runs with ``nitpicky`` on and ``-W``, so every cross-reference
must resolve: a private type leaking into a public signature fails the
build instead of rendering as an unexplained name. Two event handlers
below keep the rendered API what users may rely on:

* ``public_signature`` drops what is not public from autodoc signatures
  (constructors users never call, ``_``-prefixed parameters, the private
  "use the default" sentinel type);
* ``external_reference`` links names from the standard library and Trio
  to their own documentation, without downloading an inventory.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import re
import sys
from typing import Any

from docutils import nodes
from sphinx.util.inspect import signature_from_str, stringify_signature

sys.path.insert(0, os.path.abspath(".."))

project = "trio_ws"
author = "trio_ws developers"
extensions = ["sphinx.ext.autodoc"]
autodoc_member_order = "bysource"
# Types in the signature line itself, one parameter per line once it is
# long: a "Parameters" list holding only types says less in more space.
autodoc_typehints = "signature"
python_maximum_signature_line_length = 88
nitpicky = True
html_theme = "alabaster"
exclude_patterns = ["_build"]

#: Classes users receive but never construct: their constructor parameters
#: are internal, so the reference shows them without a signature.
NO_PUBLIC_CONSTRUCTOR = {
    "trio_ws.Reconnector",
    "trio_ws.WebSocketConnection",
    "trio_ws.WebSocketRequest",
    "trio_ws.inbox.MessageStream",
}

# The type of the private "use the default" sentinel, with the "|" that joins
# it to the rest of a union: the reference says in words what the default is.
SENTINEL_TYPE = re.compile(
    r"\s*\|\s*~?trio_ws\.options\._Default\b|~?trio_ws\.options\._Default\s*\|\s*"
)

# A default shown as "<something>", such as a dataclass field's "<factory>".
ANGLE_DEFAULT = re.compile(r"<[A-Za-z_][\w.]*>")


class _Shown:
    """A default value shown as the given text (signatures print repr())."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _short_default(value: object) -> object | None:
    """``DeflateOptions()`` rather than every field, when all are defaults."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        try:
            if value == type(value)():
                return _Shown(f"{type(value).__name__}()")
        except TypeError:
            pass
    return None


def public_signature(
    app: Any, what: str, name: str, obj: Any, options: Any, signature: str | None, ret: str | None
) -> tuple[str | None, str | None] | None:
    """The signature autodoc shows for *obj*, as users may call it (see the top)."""
    if name in NO_PUBLIC_CONSTRUCTOR:
        return "", None
    if not signature:
        return None
    try:
        real = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        real = {}
    # Defaults such as a dataclass field's "<factory>" are not Python: parse
    # them as names, and put the text back afterwards.
    placeholders: dict[str, str] = {}

    def hide(match: re.Match[str]) -> str:
        key = f"__default_{len(placeholders)}__"
        placeholders[key] = match.group(0)
        return key

    try:
        parsed = signature_from_str(ANGLE_DEFAULT.sub(hide, SENTINEL_TYPE.sub("", signature)))
    except SyntaxError:
        return None  # leave it as autodoc made it; nitpicky still checks it
    parameters = []
    factories = {
        field.name: field.default_factory
        for field in (dataclasses.fields(obj) if dataclasses.is_dataclass(obj) else ())
        if field.default_factory is not dataclasses.MISSING
    }
    for parameter in parsed.parameters.values():
        if parameter.name.startswith("_"):
            continue
        actual = real.get(parameter.name)
        shown = _short_default(actual.default) if actual is not None else None
        if parameter.name in factories:  # "<factory>": a fresh dict() (say) each time
            shown = _Shown(f"{getattr(factories[parameter.name], '__name__', '...')}()")
        parameters.append(parameter.replace(default=shown) if shown else parameter)
    # An @asynccontextmanager function is annotated as the async generator it
    # wraps; users call it as the async context manager it returns.
    if ret and inspect.isasyncgenfunction(getattr(obj, "__wrapped__", None)):
        ret = re.sub(
            r"^~?collections\.abc\.AsyncIterator\[",
            "~contextlib.AbstractAsyncContextManager[",
            ret,
        )
    text = stringify_signature(parsed.replace(parameters=parameters), show_return_annotation=False)
    for key, original in placeholders.items():
        text = text.replace(key, original)
    return text, ret


PYTHON_LIBRARY = "https://docs.python.org/3/library/"
TRIO = "https://trio.readthedocs.io/en/stable/"
#: Trio's top-level names documented on its I/O page; the rest of ``trio.*``
#: is on the core page, and ``trio.abc`` is on the I/O page.
TRIO_IO_NAMES = set(
    """SocketStream SocketListener SSLStream SSLListener StapledStream open_tcp_stream
    open_ssl_over_tcp_stream open_unix_socket open_tcp_listeners open_ssl_over_tcp_listeners
    serve_tcp serve_ssl_over_tcp serve_listeners aclose_forcefully Path open_file wrap_file
    run_process Process open_signal_receiver""".split()
)
TRIO_PAGES = {
    "trio.lowlevel": "reference-lowlevel.html",
    "trio.testing": "reference-testing.html",
    "trio.socket": "reference-io.html",
    "trio.abc": "reference-io.html",
}


def external_url(target: str) -> str | None:
    """Where *target*, a dotted name from Trio or the standard library, is documented."""
    top = target.split(".")[0]
    if top == "trio":
        module, _, name = target.rpartition(".")
        if module == "trio":
            page = "reference-io.html" if name in TRIO_IO_NAMES else "reference-core.html"
        else:
            page = TRIO_PAGES.get(module, "reference-core.html")
        return f"{TRIO}{page}#{target}"
    if top in sys.stdlib_module_names:
        # The longest prefix that is a module names the page (collections.abc
        # for collections.abc.Sequence); a module itself (:mod:`ipaddress`,
        # :mod:`collections.abc`) is the top of its page.
        parts = target.split(".")
        for end in range(len(parts), 0, -1):
            module = ".".join(parts[:end])
            try:
                importlib.import_module(module)
            except ImportError:
                continue
            page = f"{PYTHON_LIBRARY}{module}.html"
            return page if module == target else f"{page}#{target}"
    return None


def external_reference(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a Python reference that the docs do not define to its own docs."""
    if node.get("refdomain") != "py":
        return None
    url = external_url(node["reftarget"])
    if url is None:
        return None
    reference = nodes.reference("", "", internal=False, refuri=url)
    reference += contnode
    return reference


def setup(app: Any) -> None:
    app.connect("autodoc-process-signature", public_signature)
    app.connect("missing-reference", external_reference)
