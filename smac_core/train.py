"""``python -m smac_core.train {online,offline}``: build an agent, its data source and env, then
run the shared loop of ``smac_core.runs``.

Online::

    python -m smac_core.train online --algo sac --env Hopper-v5 --steps 100000 --out runs/sac
    python -m smac_core.train online --algo sac --from runs/smac --out runs/smac-sac --mix 0.5

With ``--from`` the offline checkpoint's actor and critics become the online agent's under the
``--handoff`` rule (``smac_core.handoff``), its env, observation normalisation and dataset id
are reused, and the replay buffer starts with that dataset, sampled at ``--mix`` offline :
1 - mix online.

Offline::

    python -m smac_core.train offline --algo calql --dataset door-binary --steps 1000000 \\
        --out runs/calql

The dataset is normalised (observations, by default; actions always mapped into [-1, 1]) into
the form the agent sees, handed to ``agent.prepare_offline`` and held in a replay buffer;
evaluation runs in the env of the dataset's task (or ``--env``).

From Python, the same run without the command line (``RunConfig`` has a field for every flag)::

    from smac_core.train import RunConfig, run

    run(RunConfig("offline", "calql", out="runs/calql", dataset="door-binary", steps=1000))
"""

from __future__ import annotations

import argparse
import functools
import sys
import textwrap
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smac_core.cli import ArgumentParser, add_device_flag
from smac_core.errors import cli_entry
from smac_core.files import output_directory
from smac_core.runconfig import (
    DEFAULT_START_STEPS,
    HANDOFF_RULES,
    OFFLINE_ALGORITHMS,
    ONLINE_ALGORITHMS,
    OPTIMIZERS,
    PHASE_DEFAULTS,
    RunConfig,
    parse_overrides,
)
from smac_core.rundir import RUN_DIR_MARKERS, RUN_OWNER

if TYPE_CHECKING:
    from smac_core.runs import Trainer

__all__ = ["RunConfig", "build_parser", "main", "parse_config", "run"]
DEFAULTS = {f.name: f.default for f in fields(RunConfig)}  # the flags' defaults


def algorithm_defaults(names: tuple[str, ...]) -> str:
    """The agent config defaults of each registered algorithm, for ``--help`` (which shows them
    only when asked: they import the algorithms, and torch)."""
    from smac_core.algos import ALGORITHMS
    from smac_core.diffusion import DiffusionConfig

    lines = ["agent config defaults (override with --set KEY=VALUE):"]
    for name in names:
        if name not in ALGORITHMS:
            lines.append(f"  {name}: not available in this installation")
            continue
        config = ALGORITHMS[name].config_class()
        values = ", ".join(f"{f.name}={getattr(config, f.name)}" for f in fields(config))
        lines.append(textwrap.fill(f"{name}: {values}", width=90, initial_indent="  ",
                                   subsequent_indent="      "))
        if hasattr(config, "score_model"):
            score = DiffusionConfig()
            values = ", ".join(f"{f.name}={getattr(score, f.name)}" for f in fields(score))
            lines.append(textwrap.fill(
                f"{name} score_model (--set 'score_model={{\"steps\": 20000}}'; training stops "
                f"when the held-out loss stops improving, after `steps` at most): {values}",
                width=90, initial_indent="  ", subsequent_indent="      "))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- parsing
def _add_common_flags(p: argparse.ArgumentParser, phase: str) -> None:
    p.add_argument("--out", required=True, type=Path, help="run directory to write")
    p.add_argument("--steps", type=int, default=PHASE_DEFAULTS["steps"][phase],
                   help="loop steps: env steps online, gradient updates offline "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"],
                   help="seeds everything (default: %(default)s)")
    add_device_flag(p, "where networks and replay buffers live")
    p.add_argument("--threads", type=int, default=DEFAULTS["threads"],
                   help="torch CPU threads (default: 1; updates of networks this small gain "
                        "little from more, and on a busy machine extra threads slow them down "
                        "many times)")
    p.add_argument("--eval-every", type=int, default=DEFAULTS["eval_every"],
                   help="steps between evaluations (default: %(default)s)")
    p.add_argument("--eval-episodes", type=int, default=DEFAULTS["eval_episodes"],
                   help="episodes per evaluation, deterministic policy (default: %(default)s)")
    p.add_argument("--checkpoint-every", type=int,
                   default=PHASE_DEFAULTS["checkpoint_every"][phase],
                   help="steps between checkpoints/step_<N> (default: %(default)s)")
    p.add_argument("--log-every", type=int, default=DEFAULTS["log_every"],
                   help="steps between training-metric rows in metrics.jsonl "
                        "(default: %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint (exactly, on CPU); "
                        "starts afresh when it has none")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override an agent config field (JSON value), repeatable")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m smac_core.train",
                            description="Train an agent offline on a dataset, or online in its "
                                        "env (from scratch, or fine-tuning an offline run). "
                                        "Every run writes a resumable run directory (--out).")
    sub = parser.add_subparsers(dest="phase", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    online = sub.add_parser("online", formatter_class=fmt, help="online training / fine-tuning",
                            description="Train in the env, from scratch (--env) or starting "
                                        "from an offline run's checkpoint (--from).",
                            epilog=functools.partial(algorithm_defaults, ONLINE_ALGORITHMS))
    online.add_argument("--algo", required=True, choices=ONLINE_ALGORITHMS, help="online agent")
    online.add_argument("--env", help="task name or gymnasium id (default with --from: the "
                                      "checkpoint's env)")
    online.add_argument("--from", dest="from_checkpoint", metavar="OFFLINE_RUN_OR_CKPT",
                        help="start from this checkpoint (or run directory's final checkpoint)")
    online.add_argument("--handoff", choices=HANDOFF_RULES, default=DEFAULTS["handoff"],
                        help="with --from: how the online agent starts from the checkpoint "
                             "(default: matched: the offline policy's actions and distribution, "
                             "a deterministic actor given TD3's noise 0.1 as its std, SAC's "
                             "target entropy and temperature set so that the step-0 entropy is "
                             "a fixed point, the same rule for every offline method; inherit: "
                             "copy the networks only; see smac_core.handoff)")
    online.add_argument("--mix", type=float, default=DEFAULTS["mix"],
                        help="with --from: fraction of each batch drawn from the offline data "
                             "(default: 0.5, CalQL's symmetric sampling)")
    online.add_argument("--start-steps", type=int,
                        help=f"initial steps with uniform random actions and no updates "
                             f"(default: {DEFAULT_START_STEPS}, 0 with --from)")
    online.add_argument("--buffer-size", type=int,
                        help="online replay capacity (default: --steps, i.e. keep everything)")
    online.add_argument("--early-eval-every", type=int, default=DEFAULTS["early_eval_every"],
                        help="steps between evaluations early on (default: %(default)s)")
    online.add_argument("--early-eval-until", type=int, default=DEFAULTS["early_eval_until"],
                        help="the dense early evaluations last until this step "
                             "(default: %(default)s)")
    _add_common_flags(online, "online")

    offline = sub.add_parser("offline", formatter_class=fmt, help="offline pre-training",
                             description="Pre-train on a dataset, evaluating in its task's env.",
                             epilog=functools.partial(algorithm_defaults, OFFLINE_ALGORITHMS))
    offline.add_argument("--algo", required=True, choices=OFFLINE_ALGORITHMS,
                         help="offline agent")
    offline.add_argument("--dataset", required=True,
                         help="Minari dataset id, task name or dataset file")
    offline.add_argument("--env", help="evaluation env (default: the dataset's task, else its "
                                       "env id)")
    offline.add_argument("--optimizer", choices=OPTIMIZERS,
                         help="optimizer kind (default: the algorithm's config)")
    offline.add_argument("--normalize-obs", action=argparse.BooleanOptionalAction,
                         default=DEFAULTS["normalize_obs"],
                         help="normalise observations by the dataset's mean/std (default: on; "
                              "CORL does for TD3+BC and IQL, CalQL's reference does not: "
                              "--no-normalize-obs to match it)")
    _add_common_flags(offline, "offline")
    return parser


def parse_config(argv: Sequence[str]) -> RunConfig:
    """The ``RunConfig`` of a command line (argparse's errors exit 2; ``--set`` values are
    parsed here, ``SmacError`` for one that is not KEY=VALUE); not yet checked."""
    values = vars(build_parser().parse_args(list(argv)))
    values["overrides"] = parse_overrides(values["overrides"])
    return RunConfig(**values)


# ---------------------------------------------------------------------------------------- running
def run(config: RunConfig,
        on_eval: Callable[[Trainer, int, dict[str, Any]], None] | None = None) -> int:
    """Train as ``python -m smac_core.train CONFIG.to_argv()`` does: check ``config`` (a
    ``SmacError`` for a bad value, before anything is written), claim and lock ``config.out``,
    build the trainer and run it. The exit status: 0 when finished (or asked to stop), 128 +
    signal when stopped by one (continue with ``resume=True``).

    ``on_eval(trainer, step, row)`` is called after each evaluation (dataset generation uses
    it to keep the medium policy and stop).
    """
    checked = config.checked()
    from smac_core.trainers import build_offline, build_online

    build = build_online if checked.phase == "online" else build_offline
    command = config.command()  # as given: --device auto stays auto
    with run_directory(checked.out, command):
        trainer, resume_from = build(checked, command)
        if on_eval is not None:
            trainer.on_eval = functools.partial(on_eval, trainer)
        return trainer.run(resume_from)


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    """The command line: exit status 0, or 128 + signal when stopped by one (``studies.api``
    calls it undecorated, ``main.__wrapped__``, to have bad input raised)."""
    return run(parse_config(sys.argv[1:] if argv is None else argv))


def run_directory(out: Path, command: list[str]) -> AbstractContextManager[Path]:
    """``--out`` owned by this command (a run directory, or a new or empty one), locked for
    the run (``smac_core.files.output_directory``); a run directory from before owner records
    is recognised by its config.json or the experiment runner's files."""
    return output_directory(out, RUN_OWNER, command, legacy=RUN_DIR_MARKERS)


if __name__ == "__main__":
    sys.exit(main())
