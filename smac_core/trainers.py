"""The trainer of a ``python -m smac_core.train`` run, built from its parsed flags: the agent,
its data source (the dataset, or the env and the offline checkpoint it starts from), the env and
the run directory's spec. ``smac_core.train`` (the command line) imports it once the flags are
checked.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
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
from smac_core.errors import SmacError
from smac_core.handoff import hand_over
from smac_core.runs import (
    ActionScaler,
    EnvCollector,
    RunSpec,
    Trainer,
    prepare_run_dir,
    seed_everything,
)
from smac_core.tasks import TASKS, dataset_label, make_env, task_of_dataset
from smac_core.train import DEFAULT_START_STEPS, TRAIN_COMMAND, parse_overrides


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
