"""The toolkit from Python (notebooks, scripts), on the command lines' own code path: training
builds the typed ``smac_core.runconfig.RunConfig`` and calls ``smac_core.train.run``, the
landscape runs ``landscape.interpolate``'s command in this process, so that a run made here is
the run the command line makes (same run directory, checkpoints, metrics.jsonl; ``config.json``
records the equivalent command). Bad input raises ``SmacError``.

    from studies import api

    offline = api.train_offline("door-binary", algo="smac", out="runs/smac", steps=2000)
    online = api.train_online(offline, algo="sac", out="runs/smac-sac", steps=2000)
    print(api.load_run(online).scores)               # evaluation mean by step
    print(api.evaluate(online, episodes=10).mean)    # the final policy, evaluated again
    line = api.interpolate(offline, online, out="runs/line", points=11, episodes=5)
    print(line.verdict["verdict"], line.mean)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from smac_core.errors import SmacError
from smac_core.rundir import read_config

PathLike = str | Path


@dataclass(frozen=True, eq=False)
class Run:
    """A run directory: its resolved configuration and its evaluations (``steps`` (E,), the mean
    ``scores`` (E,) and their standard errors ``se`` over the episodes; normalised scores, or
    returns for envs without reference returns, as ``metric`` says)."""

    path: Path
    config: dict[str, Any]
    steps: np.ndarray
    scores: np.ndarray
    se: np.ndarray
    metric: str

    @property
    def checkpoint(self) -> Path:
        """The final checkpoint."""
        return self.path / "checkpoints" / "final"

    def __fspath__(self) -> str:  # a Run goes wherever a run directory does
        return str(self.path)


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Per-episode results of one policy: ``returns``, ``successes`` and normalised ``scores``
    (None for envs without reference returns), each (episodes,)."""

    returns: np.ndarray
    successes: np.ndarray
    scores: np.ndarray | None

    @property
    def values(self) -> np.ndarray:
        return self.returns if self.scores is None else self.scores

    @property
    def mean(self) -> float:
        return float(self.values.mean())

    @property
    def se(self) -> float:
        from smac_core.metrics import standard_error

        return float(standard_error(self.values))


@dataclass(frozen=True, eq=False)
class Line:
    """Reward along theta(t) = (1 - t) theta_A + t theta_B: ``t``, ``mean`` and ``se`` (T,) in
    ``unit``, the valley ``verdict`` (``landscape.valley``), and the directory of its files."""

    t: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    unit: str
    verdict: dict[str, Any]
    path: Path


def _flags(options: dict[str, Any]) -> list[str]:
    """``{"eval_every": 500, "resume": True, "x": None}`` -> ``["--eval-every", "500",
    "--resume"]``: None and False leave a flag out, True is a bare flag."""
    argv = []
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return argv


def _train(**values: Any) -> Run | list[Run]:
    """``smac_core.train.run`` of the ``RunConfig`` with these fields (``from`` is
    ``from_checkpoint``): its errors raised as ``SmacError``, a run stopped by a signal too. The
    run, or with ``seeds`` the runs of the seeds in that order."""
    from smac_core.runconfig import RunConfig
    from smac_core.train import run

    if "from" in values:
        values["from_checkpoint"] = values.pop("from")
    try:
        config = RunConfig(**values)
    except TypeError as exc:  # an argument RunConfig does not have
        raise SmacError(f"not a training option: {exc}") from None
    status = run(config)
    if status:
        raise SmacError(f"the run in {config.out} was interrupted (exit status {status}): call "
                        "it again with resume=True to continue")
    if config.seeds is None:
        return load_run(config.out)
    return [load_run(config.for_seed(seed).out) for seed in config.seeds]


def _run(command: ModuleType, argv: list[str]) -> None:
    """``python -m COMMAND ARGV`` in this process: argparse's complaints and the command's
    errors raised as ``SmacError``, a command stopped by a signal too."""
    parser: argparse.ArgumentParser = command.build_parser()
    complaint = io.StringIO()
    try:
        with contextlib.redirect_stderr(complaint):
            parser.parse_args(argv)
    except SystemExit:
        raise SmacError(complaint.getvalue().strip().splitlines()[-1]) from None
    status = command.main.__wrapped__(argv)  # the command without cli_entry's error printing
    if status:
        raise SmacError(f"{command.__name__} was interrupted (exit status {status}): call it "
                        "again to continue, with resume=True for a training run")


def train_offline(dataset: str, out: PathLike, algo: str = "smac", steps: int = 1_000_000,
                  config: dict[str, Any] | None = None, seed: int = 0, device: str = "auto",
                  normalize_obs: bool = True, **flags: Any) -> Run | list[Run]:
    """``python -m smac_core.train offline``: pre-train ``algo`` on ``dataset`` (a task name,
    Minari id or file) into the run directory ``out``. ``config``: agent config values
    (``--set``); ``flags``: the command's other flags by name (``eval_every=500``,
    ``checkpoint_every=1000``, ``resume=True``, ...). With ``seeds=(0, 1, 2)`` the seeds are
    trained seed-stacked (``--seeds``) into ``out/seed<k>``, and their Runs are returned."""
    return _train(phase="offline", algo=algo, dataset=dataset, out=out, steps=steps, seed=seed,
                  device=device, overrides=config or {}, normalize_obs=normalize_obs, **flags)


def train_online(source: PathLike | None, out: PathLike, algo: str = "sac",
                 steps: int = 100_000, env: str | None = None,
                 config: dict[str, Any] | None = None, seed: int = 0, device: str = "auto",
                 **flags: Any) -> Run | list[Run]:
    """``python -m smac_core.train online``: fine-tune from ``source`` (an offline run or
    checkpoint; None: train from scratch in ``env``) into ``out``; arguments as
    ``train_offline`` (``handoff="inherit"``, ``mix=0.25``, ``early_eval_every=100``,
    ``seeds=(0, 1, 2)`` with ``source`` "runs/smac/seed{seed}", ...)."""
    return _train(phase="online", algo=algo,
                  from_checkpoint=None if source is None else str(Path(source)), env=env,
                  out=out, steps=steps, seed=seed, device=device, overrides=config or {},
                  **flags)


def load_run(path: PathLike) -> Run:
    """A run directory written by ``smac_core.train``: its config and evaluation curve."""
    from smac_core.metrics import read_evaluations

    path = Path(path)
    config = read_config(path)
    curve = read_evaluations(path, phase=config.get("phase"))
    return Run(path, config, curve.steps, curve.mean, curve.se, curve.metric)


def evaluate(checkpoint: PathLike, episodes: int = 10, seed: int | None = None,
             device: str = "auto") -> Evaluation:
    """Evaluate a checkpoint (or a run's final one) on ``episodes`` episodes with the trainer's
    convention (``smac_core.rollout``): by default the episodes of its run's evaluations, so a
    checkpoint's evaluation in metrics.jsonl is reproduced exactly (``seed``: those of a run
    with that seed)."""
    from landscape.evaluate import evaluate_vectors
    from landscape.grid import EvalSettings
    from landscape.params import policy_vector

    theta, ckpt = policy_vector(checkpoint)
    settings = EvalSettings(episodes=episodes, seed=seed, device=device).for_checkpoint(ckpt)
    result = evaluate_vectors(ckpt.policy, theta[None], ckpt.env_name, settings.episodes,
                              seed=settings.seed, device=settings.device)
    return Evaluation(result.returns[0], result.successes[0],
                      None if result.scores is None else result.scores[0])


def interpolate(a: PathLike, b: PathLike, out: PathLike, points: int = 21,
                t_range: Sequence[float] = (-0.25, 1.25), episodes: int = 10,
                seed: int | None = None, device: str = "auto", **flags: Any) -> Line:
    """``python -m landscape.interpolate A B``: the reward along the line from checkpoint (or
    run) ``a`` to ``b``, with the valley verdict; its JSON, CSV, page and PNG go to ``out``."""
    from landscape import interpolate as command

    low, high = t_range
    argv = [str(Path(a)), str(Path(b)), "--out", str(out), "--points", str(points), "--range",
            str(low), str(high), "--episodes", str(episodes), "--device", device,
            *_flags({"seed": seed, **flags})]
    _run(command, argv)
    result = json.loads((Path(out) / "interpolation.json").read_text())
    (curve,) = result["curves"]
    return Line(np.asarray(curve["t"]), np.asarray(curve["mean"]), np.asarray(curve["se"]),
                result["unit"], curve["verdict"], Path(out))
