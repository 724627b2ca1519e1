"""Errors that mean "the user asked for something that cannot be done as asked" (exit code 2)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

# What resolving user input raises: unknown names, bad YAML, missing folders or files.
INPUT_ERRORS: tuple[type[BaseException], ...] = (LookupError, ValueError, OSError)


class UsageError(Exception):
    """Bad input or missing setup: an unknown model or dataset, an empty replay folder, no bwrap, ..."""


@contextmanager
def bad_input(*extra: type[BaseException]) -> Iterator[None]:
    """Inside this block, input errors (and `extra` types) become UsageError with the same message."""
    try:
        yield
    except (*INPUT_ERRORS, *extra) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise UsageError(message) from exc
