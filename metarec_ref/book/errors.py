"""Showing an error in a chapter: the message as output, the run going on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# What a demonstration of bad input may raise; anything else is a bug and propagates.
DEMO_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, LookupError, OSError, ImportError)


def show_error(
    fn: Callable[..., Any],
    *args: Any,
    expect: type[BaseException] | tuple[type[BaseException], ...] = DEMO_ERRORS,
    **kwargs: Any,
) -> BaseException:
    """Call ``fn(*args, **kwargs)``, print ``ErrorType: message`` of the error it raises and return it.

    One line, no traceback (a traceback names files on the machine that ran it). Errors outside
    ``expect`` (default :data:`DEMO_ERRORS`) propagate; pass the error a chapter demonstrates on
    purpose, e.g. ``expect=AttributeError`` for a call of a method that does not exist. A call that
    does not raise is an ``AssertionError``: the chapter would silently stop demonstrating what it
    claims.
    """
    try:
        fn(*args, **kwargs)
    except expect as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"{type(err).__name__}: {message}")
        return err
    name = getattr(fn, "__qualname__", repr(fn))
    raise AssertionError(f"expected an error from {name}, but the call succeeded")


__all__ = [
    "DEMO_ERRORS",
    "show_error",
]
