"""A landscape command's points split over several jobs: ``--part K/N``.

    python -m landscape.surface T0 T1 T2 --out OUT --part 1/3    # any order, on any machines
    python -m landscape.surface T0 T1 T2 --out OUT --part 2/3
    python -m landscape.surface T0 T1 T2 --out OUT --part 3/3
    python -m landscape.surface T0 T1 T2 --out OUT               # assembles, writes the outputs

A part run evaluates the K-th of N contiguous blocks of each of the command's point stores
(``Part.share``) into its own output directory ``OUT/parts/K-of-N/`` (claimed and locked like
any landscape output, the stores at the same relative paths as under ``OUT``, with the same
header and chunk files: ``landscape.grid.PointStore``), then stops without writing outputs. The
run without ``--part`` (the assembling run) locks every ``OUT/parts/*/``, loads, besides its
own stores, the chunks of each part's store at the same path, whose header (the fingerprint of
the settings) must equal its own (a part of other settings is refused, naming it), evaluates
whatever is still missing and writes the outputs as an unsplit run does. Episode e of every
point resets with the same seed (common random numbers), so a point's result does not depend
on the part or chunk that evaluated it: assembled results equal an unsplit run's, episode by
episode (tested).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landscape.grid import HEADER_FILE, PointStore, landscape_output
from smac_core.errors import SmacError
from smac_core.files import OWNER_FILE, claim, locked

PARTS_DIR = "parts"
PART_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Part:
    """The K-th of N parts (1 <= K <= N)."""

    k: int
    n: int

    @property
    def name(self) -> str:
        return f"{self.k}-of-{self.n}"

    def share(self, n_points: int) -> np.ndarray:
        """The indices of this part's points: the K-th of N contiguous blocks of
        ``range(n_points)`` (sizes differ by at most one; a block may be empty)."""
        return np.array_split(np.arange(n_points, dtype=np.int64), self.n)[self.k - 1]


def parse_part(text: str) -> Part:
    """``K/N`` -> ``Part`` (the type of ``--part``: its errors name the flag)."""
    match = PART_PATTERN.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"--part takes K/N (the K-th of N parts, "
                                         f"1 <= K <= N), got {text!r}")
    k, n = int(match[1]), int(match[2])
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"--part K/N needs 1 <= K <= N, got {text!r}")
    return Part(k, n)


def add_part_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--part", type=parse_part, default=None, metavar="K/N",
                        help="evaluate only the K-th of N blocks of the points, into "
                             "OUT/parts/K-of-N/, and write no outputs; run each part (e.g. as "
                             "cluster jobs), then the same command without --part assembles "
                             "them and writes the outputs")


def part_dir(out: Path, part: Part) -> Path:
    return out / PARTS_DIR / part.name


@dataclass
class Target:
    """Where a landscape command evaluates: ``out`` itself (``part`` None: the assembling run,
    with the part directories ``parts`` to load) or one part's directory."""

    out: Path
    part: Part | None
    parts: tuple[Path, ...] = ()

    def store(self, root: Path, fingerprint: dict[str, Any], n_points: int,
              episodes: int) -> PointStore:
        """The ``PointStore`` at ``root`` (a path under ``out``): in a part run the same path
        under the part's directory, restricted to the part's share; in the assembling run the
        store with the chunks of every part's store at that path loaded."""
        relative = Path(root).relative_to(self.out)
        if self.part is not None:
            return PointStore(part_dir(self.out, self.part) / relative, fingerprint, n_points,
                              episodes, share=self.part.share(n_points))
        store = PointStore(root, fingerprint, n_points, episodes)
        for directory in self.parts:
            if (directory / relative / HEADER_FILE).is_file():
                loaded = store.absorb(directory / relative)
                print(f"{relative}: {loaded} points from part {directory.name}", flush=True)
        return store

    def part_done(self, command: str) -> int:
        """The message that ends a part run; its exit status (0)."""
        assert self.part is not None
        print(f"part {self.part.k}/{self.part.n} done: its points are in "
              f"{part_dir(self.out, self.part)}; once every part is done, rerun "
              f"python -m landscape.{command} with the same arguments and --out {self.out} but "
              "without --part to assemble them and write the outputs", flush=True)
        return 0


def _claim(out: Path, command: str, argv: Sequence[str] | None) -> None:
    """Claim ``out`` for ``landscape.<command>`` (``smac_core.files.claim``). Parts started at
    once may race to create it: a directory that holds nothing but another part's temporary
    owner record is waited for."""
    args = list(sys.argv[1:] if argv is None else argv)
    for attempt in range(50):
        try:
            claim(out, f"landscape.{command}", [f"python -m landscape.{command}", *args])
            return
        except SmacError:
            racing = not (out / OWNER_FILE).is_file() and out.is_dir() \
                and all(p.name.startswith(".") for p in out.iterdir())
            if attempt == 49 or not racing:
                raise
            time.sleep(0.1)


@contextmanager
def landscape_target(out: Path, command: str, argv: Sequence[str] | None,
                     part: Part | None) -> Iterator[Target]:
    """The output of ``landscape.<command>`` (``grid.landscape_output``) for the block: ``out``
    locked, with every ``out/parts/*/`` locked too (a running part is refused, not read half
    way) and loaded into its stores (``Target.store``); or, for a part run, ``out`` claimed and
    the part's own directory locked."""
    if part is not None:
        _claim(out, command, argv)
        with landscape_output(part_dir(out, part), command, argv):
            yield Target(out, part)
        return
    with ExitStack() as stack:
        parts = tuple(sorted(p for p in (out / PARTS_DIR).glob("*") if p.is_dir()))
        for directory in parts:
            stack.enter_context(locked(directory, flag="part"))
        stack.enter_context(landscape_output(out, command, argv))
        yield Target(out, None, parts)
