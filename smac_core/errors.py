"""User-facing errors and the CLI wrapper that turns them into a message and a non-zero exit."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., int | None])

EXIT_USER_ERROR = 2


class SmacError(Exception):
    """An error caused by the user's input (bad file, unknown id, mismatched spaces, ...).

    Its message is printed as is by every command line entry point, which then exits with
    status 2; it never carries a traceback to the user.
    """


def cli_entry(main: F) -> F:
    """Decorate a CLI ``main(argv) -> int``: a ``SmacError`` becomes ``error: ...`` and exit 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except SmacError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USER_ERROR

    return wrapper  # type: ignore[return-value]
