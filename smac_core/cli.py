"""What the command lines share: the ``--device`` flag (defined and validated here only), the seed
range, help text computed only when shown, and commands echoed in a form a shell reads back
unchanged.

Light on purpose (standard library only; torch is imported only to resolve a device): every
command imports it before parsing its flags, so that ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Sequence

from smac_core.errors import SmacError

MAX_SEED = 2**32 - 1  # run seeds are in [0, MAX_SEED]
DEVICE_FORMAT = re.compile(r"auto|cpu|cuda(:\d+)?")
DEVICE_HELP = ("auto (the default: CUDA when present, else cpu), cpu, cuda or cuda:N (the N-th "
               "GPU)")


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser (and its subcommands'), whose ``epilog`` may be a function: called
    only when the help is shown, for text that needs imports that parsing does not."""

    def format_help(self) -> str:
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()


def add_device_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                    what: str = "where networks run") -> None:
    """``--device auto|cpu|cuda[:N]``, default auto; the command checks and resolves the value
    with ``resolve_device`` (a ``SmacError``, so that a bad one exits 2 with one line)."""
    parser.add_argument("--device", default="auto", metavar="DEVICE", help=f"{what}: {DEVICE_HELP}")


def resolve_device(device: str, flag: str = "--device") -> str:
    """``auto`` -> ``cuda`` when CUDA is present, else ``cpu``; ``cuda`` or ``cuda:N`` as is when
    that GPU is there, else ``SmacError`` naming ``flag``."""
    if not DEVICE_FORMAT.fullmatch(device):
        raise SmacError(f"{flag} '{device}' is not a torch device: use auto, cpu, cuda or "
                        "cuda:N")
    if device == "cpu":
        return device
    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device == "auto":
        return "cuda" if available else "cpu"
    index = int(device.partition(":")[2] or 0)
    if index >= available:
        raise SmacError(f"{flag} {device} was requested but "
                        + (f"only {available} CUDA device(s) are present" if available
                           else "no CUDA device is available")
                        + "; use --device cpu, or auto")
    return device


def check_seed(seed: int, flag: str = "--seed") -> None:
    """``SmacError`` naming ``flag`` for a seed outside [0, MAX_SEED]."""
    if not 0 <= seed <= MAX_SEED:
        raise SmacError(f"{flag} must be in [0, {MAX_SEED}], got {seed}")


def command_line(command: Sequence[str]) -> str:
    """A command as one pasteable line: the program (``"python"`` or a recorded
    ``"python -m smac_core.train"``) as is, every argument quoted, so that ``shlex.split`` (and
    bash) gives back the program's words and exactly the same arguments."""
    words = [str(word) for word in command]
    return " ".join(words[:1] + [shlex.quote(word) for word in words[1:]])


def module_command(module: str, argv: Sequence[str]) -> str:
    """``python -m MODULE ARGV...`` as one pasteable line."""
    return command_line([f"python -m {module}", *argv])
