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
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smac_core.cli import ArgumentParser, add_device_flag
from smac_core.errors import SmacError, cli_entry
from smac_core.runconfig import (
    DEFAULT_START_STEPS,
    HANDOFF_RULES,
    OFFLINE_ALGORITHMS,
    ONLINE_ALGORITHMS,
    OPTIMIZERS,
    PHASE_DEFAULTS,
    RunConfig,
    format_override,
    parse_overrides,
)
from smac_core.rundir import run_directory

if TYPE_CHECKING:
    from smac_core.runs import Trainer

__all__ = ["RunConfig", "build_parser", "main", "parse_config", "run"]
DEFAULTS = {f.name: f.default for f in fields(RunConfig)}  # the flags' defaults
SHOW_CONFIG_EPILOG = ("The agent config of an algorithm, every field with its default: "
                      "python -m smac_core.train {phase} --algo {algo} --show-config "
                      "(with --set KEY=VALUE: the values a run would use).")


def show_config(phase: str, algo: str, overrides: dict[str, Any]) -> str:
    """The agent config of ``algo`` (``--show-config``): every field with its default, or the
    ``--set`` value that overrides it (``SmacError`` for a field the config does not have);
    SMAC's score model settings listed field by field. Imports the algorithms (torch)."""
    from smac_core.algos import ALGORITHMS
    from smac_core.diffusion import DiffusionConfig

    config = ALGORITHMS[algo].config_class.from_dict(overrides)
    title = f"{algo} ({phase}) agent config"
    lines = [f"{title}{' with the --set values' if overrides else ''}, as --set KEY=VALUE "
             "(VALUE is JSON):"]
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name == "score_model":
            lines.append("  score_model: the score model's training (--set "
                         "'score_model={\"steps\": 20000}'; it stops when the held-out loss "
                         "stops improving, after `steps` at most):")
            score = DiffusionConfig.from_dict(value)
            lines += [f"    {format_override(g.name, getattr(score, g.name))}"
                      for g in fields(score)]
        else:
            lines.append(f"  {format_override(f.name, value)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- parsing
def seed_list(text: str) -> tuple[int, ...]:
    """``--seeds`` "0,1,2" -> (0, 1, 2) (argparse reports a ValueError as a bad value)."""
    return tuple(int(word) for word in text.split(","))


def _add_common_flags(p: argparse.ArgumentParser, phase: str) -> None:
    p.add_argument("--out", required=True, type=Path, help="run directory to write")
    p.add_argument("--steps", type=int, default=PHASE_DEFAULTS["steps"][phase],
                   help="loop steps: env steps online, gradient updates offline "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"],
                   help="seeds everything (default: %(default)s)")
    p.add_argument("--seeds", type=seed_list, metavar="K,K,...",
                   help="train these seeds in one process, seed-stacked (one batched matmul per "
                        "layer across seeds; every --algo), seed k writing the "
                        "run directory of its single-seed run, OUT/seed<k> (--seed is then "
                        "unused); '{seed}' in --out (and --from) is replaced by each seed")
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
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction,
                   default=DEFAULTS["tensorboard"],
                   help="also write every metrics.jsonl row as TensorBoard scalars to "
                        "OUT/tensorboard/ (default: off; needs pip install tensorboard)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override an agent config field (JSON value), repeatable; "
                        "--show-config lists the fields")
    p.add_argument("--show-config", action="store_true",
                   help="print the agent config of --algo (every field's default, with the "
                        "--set values applied) and exit without training; needs only --algo")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m smac_core.train",
                            description="Train an agent offline on a dataset, or online in its "
                                        "env (from scratch, or fine-tuning an offline run). "
                                        "Every run writes a resumable run directory (--out).")
    sub = parser.add_subparsers(dest="phase", required=True)

    online = sub.add_parser("online", help="online training / fine-tuning",
                            description="Train in the env, from scratch (--env) or starting "
                                        "from an offline run's checkpoint (--from).",
                            epilog=SHOW_CONFIG_EPILOG.format(phase="online", algo="sac"))
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

    offline = sub.add_parser("offline", help="offline pre-training",
                             description="Pre-train on a dataset, evaluating in its task's env.",
                             epilog=SHOW_CONFIG_EPILOG.format(phase="offline", algo="smac"))
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


def parse_show_config(argv: Sequence[str]) -> tuple[str, str, dict[str, Any]] | None:
    """With ``--show-config`` in ``argv``: its phase, ``--algo`` and ``--set`` values (the
    other flags, required for a run, are not needed and not checked); else None."""
    if "--show-config" not in argv:
        return None
    parser = ArgumentParser(prog="python -m smac_core.train")
    sub = parser.add_subparsers(dest="phase", required=True)
    for phase, algorithms in (("online", ONLINE_ALGORITHMS), ("offline", OFFLINE_ALGORITHMS)):
        p = sub.add_parser(phase)
        p.add_argument("--algo", required=True, choices=algorithms)
        p.add_argument("--set", dest="overrides", action="append", default=[])
    args, _ = parser.parse_known_args(list(argv))
    return args.phase, args.algo, parse_overrides(args.overrides)


def parse_config(argv: Sequence[str]) -> RunConfig:
    """The ``RunConfig`` of a command line (argparse's errors exit 2; ``--set`` values are
    parsed here, ``SmacError`` for one that is not KEY=VALUE); not yet checked."""
    values = vars(build_parser().parse_args(list(argv)))
    values.pop("show_config")
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
    if checked.seeds is not None:
        if on_eval is not None:
            raise SmacError("on_eval is not available for a seed-stacked (--seeds) run")
        from smac_core.seed_runs import run_seeds

        return run_seeds(checked, config)
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
    argv = sys.argv[1:] if argv is None else list(argv)
    shown = parse_show_config(argv)
    if shown is not None:
        print(show_config(*shown))
        return 0
    return run(parse_config(argv))


if __name__ == "__main__":
    sys.exit(main())
