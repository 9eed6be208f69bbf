"""User-facing errors and the CLI wrapper that turns them into a message and a non-zero exit."""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., int | None])

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process stopped by Ctrl-C


class SmacError(Exception):
    """An error caused by the user's input (bad file, unknown id, mismatched spaces, ...).

    Its message is printed as is by every command line entry point, which then exits with
    status 2; it never carries a traceback to the user.
    """


class Interrupted(Exception):
    """A command stopped by SIGINT/SIGTERM after saving its progress; ``cli_entry`` prints the
    message and exits 128 + ``signum``, as the training loop does."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum


@contextmanager
def signals_as_requests() -> Iterator[list[int]]:
    """Within the block SIGINT and SIGTERM only append their number to the yielded list, which
    the block polls to save its progress and raise ``Interrupted``."""
    received: list[int] = []
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in stops}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def cli_entry(main: F) -> F:
    """Decorate a CLI ``main(argv) -> int``: a ``SmacError`` or an ``OSError`` (a write that
    fails, e.g. on a full disk) becomes ``error: ...`` and exit 2, ``Interrupted`` its message and
    exit 128 + signal, a Ctrl-C that the command does not handle itself a one-line message and
    exit 130."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except SmacError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USER_ERROR
        except Interrupted as exc:
            print(str(exc), file=sys.stderr)
            return 128 + exc.signum
        except OSError as exc:  # the environment: a full disk, a permission, a vanished file
            where = f": {exc.filename}" if exc.filename else ""
            print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
            return EXIT_USER_ERROR
        except KeyboardInterrupt:
            print("interrupted (files are written atomically: what was finished is kept)",
                  file=sys.stderr)
            return EXIT_INTERRUPTED

    return wrapper  # type: ignore[return-value]
