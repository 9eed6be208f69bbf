"""Resumable evaluation of a fixed set of parameter points (a curve, a plane grid, a series).

A ``PointStore`` is a directory::

    store.json              {"version", "n_points", "episodes", "fingerprint"}: what is evaluated
    chunks/chunk_<i>.json   results of one chunk of points (their indices and per-episode arrays)

Every chunk file is written to a temporary name, fsynced and renamed into place, so a store
never holds a half-written chunk: a process killed at any moment loses at most the chunk it was
evaluating. Rerunning the same command reopens the store and evaluates only the missing points;
a command whose fingerprint (checkpoints' sha256, points, episodes, seed, env, ...) differs from
the stored one is refused, so results of two settings are never mixed. The device and chunk size
(and env workers) are not part of the fingerprint: a run may resume on another device or with
other chunks. A command's points can be split over jobs (``landscape.parts``, ``--part K/N``):
each part fills a store of the same header under ``OUT/parts/K-of-N/``, whose chunks the
assembling run loads (``PointStore.absorb``).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from smac_core.cli import add_device_flag, check_seed, resolve_device
from smac_core.errors import SmacError
from smac_core.files import atomic_write_text, output_directory
from smac_core.progress import Progress

if TYPE_CHECKING:  # imported where used: the command lines parse their flags without torch
    import torch

    from landscape.evaluate import EvaluationResult
    from smac_core.checkpoint import Checkpoint
    from smac_core.nets import DeterministicPolicy

STORE_VERSION = 2  # 2: episode e resets with eval_episode_seed(seed, e) (1: with seed + e)
HEADER_FILE = "store.json"
CHUNK_DIR = "chunks"
DEFAULT_CHUNK_SIZE = 32
DEFAULT_RESULTS_ROOT = Path("landscape_results")


@dataclass(frozen=True)
class EvalSettings:
    """How every point is evaluated: ``episodes`` rollouts, episode e reset with
    ``eval_episode_seed(seed, e)`` (``smac_core.rollout``); ``seed`` None means the run seed of
    the checkpoint that sets the policy's normalisation (``for_checkpoint``)."""

    episodes: int = 10
    seed: int | None = None
    device: str = "auto"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    max_episode_steps: int | None = None
    workers: int | None = None  # worker processes; None: landscape.evaluate.default_workers

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.chunk_size < 1:
            raise SmacError(f"--episodes and --chunk-size must be >= 1, got {self.episodes} "
                            f"and {self.chunk_size}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise SmacError(f"--max-episode-steps must be >= 1, got {self.max_episode_steps}")
        if self.workers is not None and self.workers < 0:
            raise SmacError(f"--workers must be >= 0, got {self.workers}")
        if self.seed is not None:
            check_seed(self.seed)
        object.__setattr__(self, "device", resolve_device(self.device))  # auto -> cuda or cpu

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EvalSettings:
        return cls(args.episodes, args.seed, args.device, args.chunk_size,
                   args.max_episode_steps, args.workers)

    def for_checkpoint(self, checkpoint: Checkpoint) -> EvalSettings:
        """These settings with ``seed`` resolved: ``--seed``, else the run seed recorded in
        ``checkpoint``'s metadata, so that the point at that checkpoint reproduces the trainer's
        evaluation of it (same episodes, same actions)."""
        if self.seed is not None:
            return self
        seed = checkpoint.metadata.get("seed")
        if not isinstance(seed, int):
            raise SmacError(f"{checkpoint.path} records no run seed in its metadata; pass --seed")
        return replace(self, seed=seed)

    def fingerprint(self) -> dict[str, Any]:
        """What changes the results (not the device, chunking or worker processes)."""
        return {"episodes": self.episodes, "seed": self.seed,
                "max_episode_steps": self.max_episode_steps}


def add_evaluation_args(parser: argparse.ArgumentParser) -> None:
    """The flags every landscape command shares (evaluation and output)."""
    group = parser.add_argument_group("evaluation and output")
    group.add_argument("--episodes", type=int, default=10,
                       help="evaluation episodes per parameter point (default 10)")
    group.add_argument("--seed", type=int, default=None,
                       help="seed of the evaluation episodes: episode e resets with the seed "
                            "the trainer gives evaluation episode e of a run with this seed, the "
                            "same for every point (common random numbers) (default: the run "
                            "seed recorded in the checkpoint whose normalisation the points use "
                            "(A, theta_0, each run's first), so that the point at that "
                            "checkpoint reproduces its evaluation in metrics.jsonl)")
    add_device_flag(group, "where the batched policies run")
    group.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE,
                       help="parameter points per batched evaluation; finished chunks are saved, "
                            f"so an interruption loses at most one (default {DEFAULT_CHUNK_SIZE})")
    group.add_argument("--max-episode-steps", type=int, default=None,
                       help="cut episodes after this many steps (default: the env's limit)")
    group.add_argument("--workers", type=int, default=None,
                       help="worker processes (0: all in this process; on cpu each evaluates "
                            "a group of the points, on cuda the envs are spread over them; "
                            "default: one per core for chunks of at least 30,000 env steps)")
    group.add_argument("--out", type=Path, default=None,
                       help=f"output directory; rerunning the same command with it resumes "
                            f"(default {DEFAULT_RESULTS_ROOT}/<command>-<hash of the settings>)")


def output_dir(out: Path | None, command: str, fingerprint: dict[str, Any]) -> Path:
    """``out``, or a directory named after the command and a hash of its fingerprint."""
    if out is not None:
        return out
    digest = hashlib.sha256(json.dumps(_canonical(fingerprint), sort_keys=True).encode())
    return DEFAULT_RESULTS_ROOT / f"{command}-{digest.hexdigest()[:12]}"


def landscape_output(out: Path, command: str, argv: Sequence[str] | None
                     ) -> AbstractContextManager[Path]:
    """``out`` owned by ``landscape.<command>`` and locked while it is written
    (``smac_core.files.output_directory``): a non-empty directory that another command, or no
    command, created is refused."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return output_directory(out, f"landscape.{command}", [f"python -m landscape.{command}", *argv])


def seed_results(root: Path, kind: str, name: str) -> list[tuple[str, str, int, Path]]:
    """(task, label, seed, file) of every ``ROOT/landscapes/<kind>/<task>/<label>/seed<k>/<name>``
    in path order: where the experiment runner puts a command's results for each offline run
    (``kind``: "interpolation", "planes" or "trajectories")."""
    found = []
    for path in sorted((root / "landscapes" / kind).glob(f"*/*/seed*/{name}")):
        seed_dir = path.parent
        found.append((seed_dir.parent.parent.name, seed_dir.parent.name,
                      int(seed_dir.name.removeprefix("seed")), path))
    return found


def periodic_checkpoints(run: str | Path, what: str) -> list[tuple[int, Path]]:
    """A run's ``checkpoints/step_<N>`` in step order; ``SmacError`` naming ``what`` (a flag)
    and how to train a run that saves them when it has none."""
    from smac_core.checkpoint import checkpoint_series

    series = checkpoint_series(run)
    if not series:
        raise SmacError(f"{what} {run} has no periodic checkpoints (checkpoints/step_<N>): "
                        "train the run with --checkpoint-every N, N below its --steps, to save "
                        "one every N steps (e.g. python -m smac_core.train ... "
                        "--checkpoint-every 1000)")
    return series


def checkpoint_sha256(checkpoint: Checkpoint) -> str:
    """sha256 over a checkpoint's weights and metadata files (what identifies its policy)."""
    from smac_core.checkpoint import METADATA_FILE, WEIGHTS_FILE

    digest = hashlib.sha256()
    for name in (WEIGHTS_FILE, METADATA_FILE):
        with open(checkpoint.path / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def plane_coordinates(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(x, y) pairs of the grid xs (X,) by ys (Y,), row-major (point p = iy * X + ix): (Y*X, 2)."""
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)


def json_floats(values: np.ndarray) -> list:
    """``values.tolist()`` with NaN/Inf as None (strict JSON has no NaN), e.g. the s.e. of E = 1."""
    return np.where(np.isfinite(values), values, None).tolist()


def header_difference(path: Path, expected: dict[str, Any]) -> str | None:
    """None when the store header at ``path`` equals ``expected``, else what differs (the
    fingerprint's keys, version, n_points, episodes; "missing" when there is no header)."""
    if not path.is_file():
        return "missing"
    try:
        stored = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SmacError(f"{path} is not a valid result store header ({exc})") from exc
    if stored == expected:
        return None
    stored_fp = stored.get("fingerprint", {}) if isinstance(stored, dict) else {}
    keys = sorted(set(stored_fp) | set(expected["fingerprint"]))
    differing = [k for k in keys if stored_fp.get(k) != expected["fingerprint"].get(k)]
    differing += [k for k in ("version", "n_points", "episodes") if k not in differing
                  and isinstance(stored, dict) and stored.get(k) != expected[k]]
    return ", ".join(differing) or "header"


def _canonical(value: Any) -> Any:
    """The value as JSON reads it back (tuples -> lists, numpy scalars -> Python)."""
    return json.loads(json.dumps(value))


class PointStore:
    """Evaluation results of ``n_points`` parameter points under ``root``, chunk by chunk."""

    def __init__(self, root: str | Path, fingerprint: dict[str, Any], n_points: int,
                 episodes: int, share: np.ndarray | None = None) -> None:
        """``share``: the indices this store evaluates (a part run's, ``landscape.parts``);
        None: every point."""
        self.root = Path(root)
        self.n_points, self.episodes = n_points, episodes
        self.share = None if share is None else np.asarray(share, dtype=np.int64)
        header = {"version": STORE_VERSION, "n_points": n_points, "episodes": episodes,
                  "fingerprint": _canonical(fingerprint)}
        self.header = header
        header_path = self.root / HEADER_FILE
        chunks = sorted((self.root / CHUNK_DIR).glob("chunk_*.json"))
        if header_path.is_file() and chunks:
            self._check_header(header_path, header)
        else:  # a new store, or one that holds no results yet
            atomic_write_text(header_path, json.dumps(header, indent=1))
        self.returns = np.full((n_points, episodes), np.nan)
        self.successes = np.zeros((n_points, episodes), dtype=bool)
        self.lengths = np.zeros((n_points, episodes), dtype=np.int64)
        self.scores: np.ndarray | None = None
        self.done = np.zeros(n_points, dtype=bool)
        for chunk in chunks:
            self._load_chunk(chunk)

    def _check_header(self, path: Path, expected: dict[str, Any]) -> None:
        differing = header_difference(path, expected)
        if differing is not None:
            raise SmacError(
                f"{self.root} already holds results of different settings (differing: "
                f"{differing}); rerun with the same settings to resume, or choose another "
                "--out (or delete that directory) to start afresh")

    def absorb(self, root: Path) -> int:
        """Load the chunks of the store at ``root`` (a part run's, ``landscape.parts``), whose
        header must equal this one's (``SmacError`` naming what differs otherwise); returns how
        many of its points were not done here yet."""
        differing = header_difference(root / HEADER_FILE, self.header)
        if differing is not None:
            raise SmacError(f"{root} holds a part evaluated with other settings (differing: "
                            f"{differing}); delete it, or rerun that part with this command's "
                            "settings, then assemble again")
        before = int(self.done.sum())
        for chunk in sorted((root / CHUNK_DIR).glob("chunk_*.json")):
            self._load_chunk(chunk)
        return int(self.done.sum()) - before

    def _load_chunk(self, path: Path) -> None:
        try:
            chunk = json.loads(path.read_text())
            indices = np.asarray(chunk["indices"], dtype=np.int64)
            returns = np.asarray(chunk["returns"], dtype=np.float64)
            successes = np.asarray(chunk["successes"], dtype=bool)
            lengths = np.asarray(chunk["lengths"], dtype=np.int64)
            scores = chunk["scores"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
            raise SmacError(f"result chunk {path} is unreadable ({exc}); delete it and rerun "
                            "to evaluate its points again") from exc
        expected = (len(indices), self.episodes)
        if returns.shape != expected or indices.min(initial=0) < 0 \
                or indices.max(initial=0) >= self.n_points:
            raise SmacError(f"result chunk {path} does not fit this store ({self.n_points} "
                            f"points x {self.episodes} episodes); delete it and rerun")
        self._fill(indices, returns, successes, lengths,
                   None if scores is None else np.asarray(scores, dtype=np.float64))

    def _fill(self, indices: np.ndarray, returns: np.ndarray, successes: np.ndarray,
              lengths: np.ndarray, scores: np.ndarray | None) -> None:
        self.returns[indices], self.successes[indices] = returns, successes
        self.lengths[indices] = lengths
        if scores is not None:
            if self.scores is None:
                self.scores = np.full((self.n_points, self.episodes), np.nan)
            self.scores[indices] = scores
        self.done[indices] = True

    def missing(self) -> np.ndarray:
        """Indices of the points (of the share) not evaluated yet, ascending."""
        missing = np.flatnonzero(~self.done)
        return missing if self.share is None else np.intersect1d(missing, self.share)

    def add(self, indices: np.ndarray, result: EvaluationResult) -> None:
        """Record the results of the points ``indices`` (P,): in memory and as one chunk file."""
        indices = np.asarray(indices, dtype=np.int64)
        chunk = {"indices": indices.tolist(), "returns": result.returns.tolist(),
                 "successes": result.successes.tolist(), "lengths": result.lengths.tolist(),
                 "scores": None if result.scores is None else result.scores.tolist()}
        atomic_write_text(self.root / CHUNK_DIR / f"chunk_{indices[0]:08d}.json",
                          json.dumps(chunk))
        self._fill(indices, result.returns, result.successes, result.lengths, result.scores)

    def result(self) -> EvaluationResult:
        """The results of all points, (n_points, episodes) arrays; every point must be done."""
        from landscape.evaluate import EvaluationResult

        if not self.done.all():
            raise SmacError(f"{self.root}: {int((~self.done).sum())} points are not evaluated yet")
        return EvaluationResult(returns=self.returns, successes=self.successes,
                                scores=self.scores, lengths=self.lengths)


def evaluate_points(store: PointStore, template: DeterministicPolicy,
                    vectors_of: Callable[[np.ndarray], torch.Tensor], env_name: str,
                    settings: EvalSettings, desc: str = "points") -> EvaluationResult:
    """Evaluate the store's missing points (``evaluate_missing``) and return the results of
    all points."""
    evaluate_missing(store, template, vectors_of, env_name, settings, desc)
    return store.result()


def evaluate_missing(store: PointStore, template: DeterministicPolicy,
                     vectors_of: Callable[[np.ndarray], torch.Tensor], env_name: str,
                     settings: EvalSettings, desc: str = "points") -> None:
    """Evaluate the store's missing points (of its share) chunk by chunk.

    ``vectors_of(indices (P,)) -> (P, D)`` builds the parameter vectors of the given points, so
    a large grid is never held in memory at once. Episode e of every point resets with the same
    seed, so a point's result does not depend on the chunk it is in. The progress
    (``smac_core.progress``) moves with the env steps of each chunk, not only at its end.
    Interrupting (Ctrl-C) keeps every finished chunk and says how to continue.
    ``settings.seed`` must be resolved (``for_checkpoint``).
    """
    if settings.seed is None:
        raise ValueError("evaluate_points needs a resolved seed: EvalSettings.for_checkpoint")
    from landscape.evaluate import evaluate_vectors

    missing = store.missing()
    total = store.n_points if store.share is None else len(store.share)
    with Progress(total, desc, initial=total - len(missing), unit="point") as progress:
        try:
            for start in range(0, len(missing), settings.chunk_size):
                indices = missing[start:start + settings.chunk_size]
                done = progress.position
                result = evaluate_vectors(
                    template, vectors_of(indices), env_name, settings.episodes,
                    seed=settings.seed, device=settings.device,
                    max_episode_steps=settings.max_episode_steps, workers=settings.workers,
                    progress=functools.partial(_advance, progress, done, len(indices)))
                store.add(indices, result)
                progress.set_position(done + len(indices))
        except KeyboardInterrupt:
            raise SmacError(f"interrupted: {total - len(store.missing())} of {total} points "
                            f"are saved in {store.root}; rerun the same command to continue") \
                from None


def _advance(progress: Progress, done: float, points: int, fraction: float) -> None:
    """A chunk of ``points`` after ``done`` is ``fraction`` of the way through its episodes."""
    progress.set_position(done + fraction * points)


def result_unit(result: EvaluationResult) -> str:
    """What ``result.mean()`` measures: the normalised score where the env has one, else return."""
    return "return" if result.scores is None else "normalised score"
