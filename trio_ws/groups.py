"""One real exception out of a nursery, never an exception group around it.

Trio wraps whatever escapes a nursery in a :class:`BaseExceptionGroup`, even
a single ``KeyboardInterrupt``. trio_ws's public context managers and
servers run private nurseries, and their users write ``except ValueError``
or ``except KeyboardInterrupt`` around them: :func:`one_error` turns a group
that holds one real exception back into that exception.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import trio

if sys.version_info < (3, 11):  # pragma: no cover - the backport trio uses there
    from exceptiongroup import BaseExceptionGroup


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions in *error*, with every level of grouping removed."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


def only_cancelled(error: BaseException) -> bool:
    """Whether *error* is ``trio.Cancelled``, or a group of nothing else."""
    return all(isinstance(leaf, trio.Cancelled) for leaf in leaves(error))


def real_error(error: BaseException) -> BaseException:
    """What to raise for *error* escaping a nursery.

    A ``KeyboardInterrupt`` (or ``SystemExit``) wins: the program is being
    stopped. Otherwise the one exception that is not ``Cancelled`` (the
    Cancelled ones merely follow from it). A group of several real errors,
    or of Cancelled only (for the cancel scope that owns them), stays as it is.
    """
    found = leaves(error)
    for leaf in found:
        if isinstance(leaf, (KeyboardInterrupt, SystemExit)):
            return leaf
    real = [leaf for leaf in found if not isinstance(leaf, trio.Cancelled)]
    return real[0] if len(real) == 1 else error


@contextmanager
def one_error() -> Iterator[None]:
    """Re-raise a group escaping the block as :func:`real_error` chooses.

    The exception keeps its own cause and context, so its traceback reads as
    if no nursery had been in the way.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        error = real_error(group)
        if error is group:
            raise
        context = error.__context__
        try:
            raise error
        finally:
            error.__context__ = context  # not the group we are leaving
            del error, context
