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
import json
import sys
import textwrap
from contextlib import AbstractContextManager
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smac_core.algos import ALGORITHMS, make_agent
from smac_core.algos.base import Agent
from smac_core.checkpoint import load_tensors
from smac_core.data import load_dataset
from smac_core.data.buffers import MixedReplayBuffer, ObsNormalizer, ReplayBuffer
from smac_core.data.dataset import TransitionDataset
from smac_core.diffusion import DiffusionConfig
from smac_core.errors import SmacError, cli_entry
from smac_core.files import output_directory
from smac_core.handoff import HANDOFF_RULES, hand_over
from smac_core.rollout import MAX_SEED
from smac_core.runs import (
    RUN_DIR_MARKERS,
    RUN_OWNER,
    ActionScaler,
    EnvCollector,
    RunSpec,
    Trainer,
    prepare_run_dir,
    seed_everything,
)
from smac_core.tasks import TASKS, dataset_label, make_env, task_of_dataset

ONLINE_ALGORITHMS = ("sac", "td3", "td3bc", "awr", "qam", "trqam")
OFFLINE_ALGORITHMS = ("smac", "calql", "cql", "iql", "td3bc", "qam", "trqam")
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
    """The agent config defaults of each registered algorithm, for ``--help``."""
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
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="where networks and replay buffers live (default: cpu)")
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
    parser = argparse.ArgumentParser(prog="python -m smac_core.train",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="phase", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    online = sub.add_parser("online", formatter_class=fmt, help="online training / fine-tuning",
                            epilog=algorithm_defaults(ONLINE_ALGORITHMS))
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
                             epilog=algorithm_defaults(OFFLINE_ALGORITHMS))
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
    """``SmacError`` for out-of-range flag values (argparse checks only their types)."""
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
    if not 0 <= args.seed <= MAX_SEED:
        raise SmacError(f"--seed must be in [0, {MAX_SEED}]; got {args.seed}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SmacError("--device cuda was requested but no CUDA device is available")


# ---------------------------------------------------------------------------------------- building
def _env_spaces(env_name: str) -> tuple[int, ActionScaler]:
    """obs_dim and action box of an env (a task name or gymnasium id)."""
    env = make_env(env_name)
    shape = env.observation_space.shape
    if shape is None or len(shape) != 1:
        raise SmacError(f"{env_name} has observations of shape {shape}; agents need flat vectors")
    scaler = ActionScaler.from_env(env)
    env.close()
    return int(shape[0]), scaler


def agent_view(dataset: TransitionDataset, normalizer: ObsNormalizer,
               scaler: ActionScaler) -> TransitionDataset:
    """The dataset as agents see it: normalised observations, actions mapped into [-1, 1]."""
    return replace(dataset, observations=normalizer(dataset.observations),
                   next_observations=normalizer(dataset.next_observations),
                   actions=scaler.to_agent(dataset.actions))


def _check_dataset_fits(dataset: TransitionDataset, env_name: str, obs_dim: int,
                        scaler: ActionScaler) -> None:
    if dataset.obs_dim != obs_dim or dataset.act_dim != scaler.low.shape[0]:
        raise SmacError(f"dataset {dataset.dataset_id} has obs_dim {dataset.obs_dim} and "
                        f"act_dim {dataset.act_dim}; env {env_name} has obs_dim {obs_dim} and "
                        f"act_dim {scaler.low.shape[0]}")


def offline_env(dataset_arg: str, dataset: TransitionDataset, env: str | None) -> str:
    """The evaluation env of an offline run: --env, else the task whose dataset this is (so its
    reward wrappers apply), else the dataset's own env id."""
    if env is not None:
        return env
    if dataset_arg in TASKS:
        return dataset_arg
    task = task_of_dataset(dataset.dataset_id)
    if task is not None:
        return task.name
    if dataset.env_id is None:
        raise SmacError(f"dataset {dataset_arg} does not record its env; pass --env")
    return dataset.env_id


def _make_agent(args: argparse.Namespace, obs_dim: int, act_dim: int) -> Agent:
    if args.algo in ALGORITHMS and args.phase not in ALGORITHMS[args.algo].phases:
        raise SmacError(f"{args.algo} cannot run {args.phase}")
    config = parse_overrides(args.overrides)
    if getattr(args, "optimizer", None) is not None:
        config["optimizer"] = args.optimizer
    return make_agent(args.algo, obs_dim, act_dim, config, args.device)


def _static_metadata(agent: Agent, normalizer: ObsNormalizer,
                     scaler: ActionScaler) -> dict[str, Any]:
    """Checkpoint metadata that does not change during a run."""
    return {"obs_dim": agent.obs_dim, "act_dim": agent.act_dim,
            "actor_hidden": list(agent.config.actor_hidden),
            "obs_mean": normalizer.mean.tolist(), "obs_std": normalizer.std.tolist(),
            "action_low": scaler.low.tolist(), "action_high": scaler.high.tolist(),
            "reward_scale": agent.reward_scale, "reward_bias": agent.reward_bias}


def _spec(args: argparse.Namespace, agent: Agent, env: str, dataset_id: str | None,
          argv: list[str], **extra: Any) -> RunSpec:
    return RunSpec(phase=args.phase, algorithm=args.algo, agent_config=agent.config.to_dict(),
                   env=env, dataset_id=dataset_id, seed=args.seed, steps=args.steps,
                   device=args.device, eval_every=args.eval_every,
                   eval_episodes=args.eval_episodes, checkpoint_every=args.checkpoint_every,
                   log_every=args.log_every, command=[TRAIN_COMMAND, *argv],
                   task=dataset_label(dataset_id, env), **extra)


def build_online(args: argparse.Namespace, argv: list[str]) -> tuple[Trainer, Path | None]:
    """The trainer of an online run and the checkpoint to resume from (None: a fresh run)."""
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    source_meta: dict[str, Any] = {}
    if args.from_checkpoint is not None:
        tensors, source_meta = load_tensors(args.from_checkpoint)
        if args.env is not None and args.env != source_meta["env"]:
            raise SmacError(f"--env {args.env} differs from the env of {args.from_checkpoint} "
                            f"({source_meta['env']})")
        env = source_meta["env"]
    else:
        env = args.env
    obs_dim, scaler = _env_spaces(env)
    agent = _make_agent(args, obs_dim, scaler.low.shape[0])
    online_buffer = ReplayBuffer(args.buffer_size or args.steps, obs_dim, agent.act_dim,
                                 args.device, generator)
    handoff = None
    if source_meta:
        normalizer = ObsNormalizer(np.asarray(source_meta["obs_mean"], np.float32),
                                   np.asarray(source_meta["obs_std"], np.float32))
        dataset_id = source_meta.get("dataset_id")
        if dataset_id is None:
            raise SmacError(f"{args.from_checkpoint} records no dataset_id to fill the replay "
                            "buffer with")
        dataset = load_dataset(dataset_id)
        _check_dataset_fits(dataset, env, obs_dim, scaler)
        seen = agent_view(dataset, normalizer, scaler)
        handoff = hand_over(agent, tensors, source_meta,
                            torch.as_tensor(seen.observations, device=agent.device),
                            args.handoff, args.seed)
        offline_buffer = ReplayBuffer.from_dataset(seen, args.device, agent.config.gamma,
                                                   generator=generator)
        sampler = MixedReplayBuffer(offline_buffer, online_buffer, args.mix)
        start_steps = 0 if args.start_steps is None else args.start_steps
    else:
        normalizer, dataset_id = ObsNormalizer.identity(obs_dim), None
        sampler = online_buffer
        start_steps = DEFAULT_START_STEPS if args.start_steps is None else args.start_steps
    spec = _spec(args, agent, env, dataset_id, argv, start_steps=start_steps,
                 early_eval_every=args.early_eval_every, early_eval_until=args.early_eval_until,
                 mix=args.mix if source_meta else None,
                 from_checkpoint=args.from_checkpoint,
                 from_algorithm=source_meta.get("algorithm"), handoff=handoff,
                 obs_normalization=bool(source_meta))
    resume_from = prepare_run_dir(args.out, spec, args.resume)
    collector = EnvCollector(env, args.seed, scaler, normalizer, online_buffer)
    trainer = Trainer(spec, args.out, agent, sampler, generator, normalizer, scaler,
                      _static_metadata(agent, normalizer, scaler), collector)
    return trainer, resume_from


def build_offline(args: argparse.Namespace, argv: list[str]) -> tuple[Trainer, Path | None]:
    """The trainer of an offline run and the checkpoint to resume from (None: a fresh run)."""
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    dataset = load_dataset(args.dataset)
    env = offline_env(args.dataset, dataset, args.env)
    obs_dim, scaler = _env_spaces(env)
    _check_dataset_fits(dataset, env, obs_dim, scaler)
    normalizer = (ObsNormalizer.from_dataset(dataset) if args.normalize_obs
                  else ObsNormalizer.identity(obs_dim))
    agent = _make_agent(args, obs_dim, scaler.low.shape[0])
    seen = agent_view(dataset, normalizer, scaler)
    buffer = ReplayBuffer.from_dataset(seen, args.device, agent.config.gamma,
                                       generator=generator)
    spec = _spec(args, agent, env, dataset.dataset_id or args.dataset, argv,
                 obs_normalization=args.normalize_obs)
    resume_from = prepare_run_dir(args.out, spec, args.resume)
    agent.prepare_offline(seen, buffer, args.out)
    agent.plan_updates(args.steps)
    trainer = Trainer(spec, args.out, agent, buffer, generator, normalizer, scaler,
                      _static_metadata(agent, normalizer, scaler))
    return trainer, resume_from


@cli_entry
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    check_flags(args)
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
