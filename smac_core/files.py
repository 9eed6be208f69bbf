"""Files and output directories: atomic writes, JSON-lines reading, ownership, exclusive locks,
stale temporaries.

Every command that writes an output directory (``smac_core.train``, the ``landscape`` commands)
opens it with ``output_directory``:

- ownership: the directory must be new, empty, or owned by the same tool. ``.owner.json``
  records the tool and the command that created it; a non-empty directory without it is
  refused (unless it holds a file the tool wrote before owner records existed: ``legacy``), as
  is a directory owned by another tool, so no command appends to or replaces another's files.
  A tool that was renamed passes its former names as ``aliases``: the directories they own
  stay its own.
- lock: an exclusive ``fcntl.flock`` on ``.lock`` is held while the command runs, so two
  processes never write one directory; the kernel drops it when its process dies (kill -9
  included), so a stale lock never blocks.
- stale temporaries: once locked, what a killed writer left behind (``.<name>.tmp``,
  ``.<name>.tmp-*``, ``.<name>.old-*``, ``.retired-*``, ``.staging-*``) is removed.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from smac_core.cli import command_line
from smac_core.errors import SmacError

OWNER_FILE = ".owner.json"
LOCK_FILE = ".lock"
BOOKKEEPING = frozenset({OWNER_FILE, LOCK_FILE})


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a fsynced temporary sibling and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def read_jsonl(path: Path, is_row: Callable[[Any], bool] = lambda row: True,
               row_name: str = "a JSON row") -> list[Any]:
    """The rows of the JSON-lines file ``path``, blank lines skipped. Text after the last
    newline is a line still being appended (or one a killed writer left unfinished) and is left
    out. ``SmacError`` naming ``path:line`` for a line that is not JSON or not ``is_row``."""
    try:
        lines = path.read_text().split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise SmacError(f"cannot read {path}: {exc}") from exc
    rows = []
    for number, line in enumerate(lines[:-1], start=1):  # lines[-1] follows the last newline
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SmacError(f"{path}:{number} is not valid JSON ({exc.msg})") from None
        if not is_row(row):
            raise SmacError(f"{path}:{number} is not {row_name}")
        rows.append(row)
    return rows


def is_stale_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary of an atomic write or of a checkpoint/dataset swap."""
    return name.startswith(".") and (name.endswith(".tmp") or ".tmp-" in name or ".old-" in name
                                     or name.startswith((".retired-", ".staging-")))


def sweep_stale_temporaries(root: Path, recursive: bool = True) -> list[Path]:
    """Remove the stale temporaries in (``recursive``: under) ``root``, which the caller has
    locked; returns what was removed."""
    stale = [p for p in (root.rglob(".*") if recursive else root.glob(".*"))
             if is_stale_temporary(p.name)]
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


def _fail_writing(flag: str, path: Path, exc: OSError) -> SmacError:
    return SmacError(f"cannot write {flag} {path}: {exc.strerror or exc}")


def claim(path: Path, tool: str, command: Sequence[str], flag: str = "--out",
          legacy: Sequence[str] = (), aliases: Sequence[str] = ()) -> bool:
    """Make ``path`` a directory owned by ``tool`` (see the module docstring); whether it was
    created now. ``SmacError`` for a file in the way, a directory of another tool or a foreign
    non-empty one, or one that cannot be written. ``aliases``: the tool's former names, whose
    directories are accepted as its own (their owner record is kept)."""
    if path.exists() and not path.is_dir():
        raise SmacError(f"{flag} {path} is a file, not a directory")
    owner_path = path / OWNER_FILE
    if owner_path.is_file():
        try:
            owner = json.loads(owner_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
            raise SmacError(f"{owner_path} is unreadable ({exc}); it records which command "
                            f"owns {path}") from exc
        if not isinstance(owner, dict) or owner.get("tool") not in (tool, *aliases):
            made_by = owner.get("command") if isinstance(owner, dict) else None
            raise SmacError(f"{flag} {path} belongs to another command "
                            f"({command_line(made_by) if isinstance(made_by, list) else owner}); "
                            f"{tool} does not write there: choose another directory")
        return False
    created = not path.exists()
    if not created:
        entries = sorted(p.name for p in path.iterdir() if p.name not in BOOKKEEPING)
        if entries and not any((path / name).exists() for name in legacy):
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise SmacError(f"{flag} {path} is not empty ({shown}) and was not created by "
                            f"{tool}; choose a new or empty directory")
    record = {"tool": tool, "command": list(command), "cwd": str(Path.cwd()),
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(owner_path, json.dumps(record, indent=1))
    except OSError as exc:
        raise _fail_writing(flag, path, exc) from exc
    return created


@contextmanager
def locked(path: Path, flag: str = "--out") -> Iterator[None]:
    """Hold the exclusive lock of directory ``path`` (which must exist) for the block;
    ``SmacError`` naming the holder's pid when another process holds it."""
    try:
        handle = open(path / LOCK_FILE, "a+")  # held open for the whole block
    except OSError as exc:
        raise _fail_writing(flag, path, exc) from exc
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise SmacError(f"{flag} {path} is in use by another process (pid {holder}); wait "
                            "for it to finish or stop it, then rerun") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


@contextmanager
def output_directory(path: Path, tool: str, command: Sequence[str], flag: str = "--out",
                     legacy: Sequence[str] = (), aliases: Sequence[str] = ()) -> Iterator[Path]:
    """Claim ``path`` for ``tool`` (``claim``), lock it and sweep its stale temporaries, for the
    block. A directory this call created is removed again if the block leaves nothing in it."""
    created = claim(path, tool, command, flag, legacy, aliases)
    try:
        with locked(path, flag):
            sweep_stale_temporaries(path)
            yield path
    finally:
        if created and path.is_dir() and {p.name for p in path.iterdir()} <= BOOKKEEPING:
            shutil.rmtree(path, ignore_errors=True)
