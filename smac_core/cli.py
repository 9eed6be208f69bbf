"""What the command lines share: commands echoed in a form a shell reads back unchanged.

Light on purpose (standard library only): every command imports it before parsing its flags.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence


def command_line(command: Sequence[str]) -> str:
    """A command as one pasteable line: the program (``"python"`` or a recorded
    ``"python -m smac_core.train"``) as is, every argument quoted, so that ``shlex.split`` (and
    bash) gives back the program's words and exactly the same arguments."""
    words = [str(word) for word in command]
    return " ".join(words[:1] + [shlex.quote(word) for word in words[1:]])


def module_command(module: str, argv: Sequence[str]) -> str:
    """``python -m MODULE ARGV...`` as one pasteable line."""
    return command_line([f"python -m {module}", *argv])
