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
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import textwrap
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import fields
from pathlib import Path
from typing import Any

from smac_core.cli import ArgumentParser, add_device_flag, check_seed, resolve_device
from smac_core.errors import SmacError, cli_entry
from smac_core.files import output_directory
from smac_core.rundir import RUN_DIR_MARKERS, RUN_OWNER

ONLINE_ALGORITHMS = ("sac", "td3", "td3bc", "awr", "qam", "trqam")
OFFLINE_ALGORITHMS = ("smac", "calql", "cql", "iql", "td3bc", "qam", "trqam")
HANDOFF_RULES = ("matched", "inherit")  # the rules of smac_core.handoff.hand_over
TRAIN_COMMAND = f"python -m {RUN_OWNER}"
DEFAULT_START_STEPS = 5_000  # CleanRL's SAC learning_starts; 0 when fine-tuning (--from)


# ---------------------------------------------------------------------------------------- parsing
def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["utd=4", "actor_hidden=[64,64]"]`` -> {"utd": 4, "actor_hidden": [64, 64]}.

    Values are read as JSON when they parse as JSON, else kept as strings.
    """
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SmacError(f"--set expects KEY=VALUE; got '{item}'")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


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


def _add_common_flags(p: argparse.ArgumentParser, default_steps: int, default_eval_every: int,
                      default_checkpoint_every: int) -> None:
    p.add_argument("--out", required=True, type=Path, help="run directory to write")
    p.add_argument("--steps", type=int, default=default_steps,
                   help="loop steps: env steps online, gradient updates offline "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seeds everything (default: 0)")
    add_device_flag(p, "where networks and replay buffers live")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default: 1; updates of networks this small gain "
                        "little from more, and on a busy machine extra threads slow them down "
                        "many times)")
    p.add_argument("--eval-every", type=int, default=default_eval_every,
                   help="steps between evaluations (default: %(default)s)")
    p.add_argument("--eval-episodes", type=int, default=10,
                   help="episodes per evaluation, deterministic policy (default: 10)")
    p.add_argument("--checkpoint-every", type=int, default=default_checkpoint_every,
                   help="steps between checkpoints/step_<N> (default: %(default)s)")
    p.add_argument("--log-every", type=int, default=1_000,
                   help="steps between training-metric rows in metrics.jsonl (default: 1000)")
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
    online.add_argument("--handoff", choices=HANDOFF_RULES, default="matched",
                        help="with --from: how the online agent starts from the checkpoint "
                             "(default: matched: the offline policy's actions and distribution, "
                             "a deterministic actor given TD3's noise 0.1 as its std, SAC's "
                             "target entropy and temperature set so that the step-0 entropy is "
                             "a fixed point, the same rule for every offline method; inherit: "
                             "copy the networks only; see smac_core.handoff)")
    online.add_argument("--mix", type=float, default=0.5,
                        help="with --from: fraction of each batch drawn from the offline data "
                             "(default: 0.5, CalQL's symmetric sampling)")
    online.add_argument("--start-steps", type=int,
                        help=f"initial steps with uniform random actions and no updates "
                             f"(default: {DEFAULT_START_STEPS}, 0 with --from)")
    online.add_argument("--buffer-size", type=int,
                        help="online replay capacity (default: --steps, i.e. keep everything)")
    online.add_argument("--early-eval-every", type=int, default=500,
                        help="steps between evaluations early on (default: 500)")
    online.add_argument("--early-eval-until", type=int, default=5_000,
                        help="the dense early evaluations last until this step (default: 5000)")
    _add_common_flags(online, 100_000, 10_000, 50_000)

    offline = sub.add_parser("offline", formatter_class=fmt, help="offline pre-training",
                             description="Pre-train on a dataset, evaluating in its task's env.",
                             epilog=functools.partial(algorithm_defaults, OFFLINE_ALGORITHMS))
    offline.add_argument("--algo", required=True, choices=OFFLINE_ALGORITHMS,
                         help="offline agent")
    offline.add_argument("--dataset", required=True,
                         help="Minari dataset id, task name or dataset file")
    offline.add_argument("--env", help="evaluation env (default: the dataset's task, else its "
                                       "env id)")
    offline.add_argument("--optimizer", choices=("muon", "adam"),
                         help="optimizer kind (default: the algorithm's config)")
    offline.add_argument("--normalize-obs", action=argparse.BooleanOptionalAction, default=True,
                         help="normalise observations by the dataset's mean/std (default: on; "
                              "CORL does for TD3+BC and IQL, CalQL's reference does not: "
                              "--no-normalize-obs to match it)")
    _add_common_flags(offline, 1_000_000, 10_000, 100_000)
    return parser


def check_flags(args: argparse.Namespace) -> None:
    """``SmacError`` for out-of-range flag values (argparse checks only their types); resolves
    ``--device auto`` (``smac_core.cli.resolve_device``)."""
    positive = {"--steps": args.steps, "--threads": args.threads, "--eval-every": args.eval_every,
                "--eval-episodes": args.eval_episodes, "--checkpoint-every": args.checkpoint_every,
                "--log-every": args.log_every}
    if args.phase == "online":
        positive |= {"--early-eval-every": args.early_eval_every}
        if args.buffer_size is not None:
            positive["--buffer-size"] = args.buffer_size
        if args.start_steps is not None and args.start_steps < 0:
            raise SmacError(f"--start-steps must be >= 0; got {args.start_steps}")
        if args.early_eval_until < 0:
            raise SmacError(f"--early-eval-until must be >= 0; got {args.early_eval_until}")
        if not 0.0 <= args.mix <= 1.0:
            raise SmacError(f"--mix must be in [0, 1]; got {args.mix}")
        if args.env is None and args.from_checkpoint is None:
            raise SmacError("online runs need --env (or --from, which brings its env)")
    for flag, value in positive.items():
        if value < 1:
            raise SmacError(f"{flag} must be a positive integer; got {value}")
    check_seed(args.seed)
    args.device = resolve_device(args.device)


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    """The command line: exit status 0, or 128 + signal when stopped by one (``smac_core.api``
    calls it undecorated, ``main.__wrapped__``, to have bad input raised)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    check_flags(args)
    from smac_core.trainers import build_offline, build_online

    build = build_online if args.phase == "online" else build_offline
    with run_directory(args.out, [TRAIN_COMMAND, *argv]):
        trainer, resume_from = build(args, argv)
        return trainer.run(resume_from)


def run_directory(out: Path, command: list[str]) -> AbstractContextManager[Path]:
    """``--out`` owned by this command (a run directory, or a new or empty one), locked for
    the run (``smac_core.files.output_directory``); a run directory from before owner records
    is recognised by its config.json or the experiment runner's files."""
    return output_directory(out, RUN_OWNER, command, legacy=RUN_DIR_MARKERS)


if __name__ == "__main__":
    sys.exit(main())
