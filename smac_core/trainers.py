"""The trainer of a ``python -m smac_core.train`` run, built from its ``RunConfig``: the agent,
its data source (the dataset, or the env and the offline checkpoint it starts from), the env and
the run directory's spec. ``smac_core.train.run`` imports it once the configuration is checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from smac_core.algos import ALGORITHMS, make_agent
from smac_core.algos.base import Agent
from smac_core.checkpoint import RunArtifacts, load_tensors
from smac_core.data import load_dataset
from smac_core.data.buffers import MixedReplayBuffer, ReplayBuffer
from smac_core.data.dataset import TransitionDataset
from smac_core.data.normalization import ActionScaler, ObsNormalizer
from smac_core.errors import SmacError
from smac_core.handoff import hand_over
from smac_core.runconfig import DEFAULT_START_STEPS, RunConfig
from smac_core.rundir import RunSpec, prepare_run_dir
from smac_core.runs import EnvCollector, Trainer, seed_everything
from smac_core.tasks import dataset_label, find_task, make_env


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
    task = find_task(dataset_arg) or find_task(dataset_id=dataset.dataset_id)
    if task is not None:
        return task.name
    if dataset.env_id is None:
        raise SmacError(f"dataset {dataset_arg} does not record its env; pass --env")
    return dataset.env_id


def _make_agent(config: RunConfig, obs_dim: int, act_dim: int) -> Agent:
    if config.algo in ALGORITHMS and config.phase not in ALGORITHMS[config.algo].phases:
        raise SmacError(f"{config.algo} cannot run {config.phase}")
    values = dict(config.overrides)
    if config.optimizer is not None:
        values["optimizer"] = config.optimizer
    return make_agent(config.algo, obs_dim, act_dim, values, config.device)


def _static_metadata(agent: Agent, normalizer: ObsNormalizer,
                     scaler: ActionScaler) -> dict[str, Any]:
    """Checkpoint metadata that does not change during a run."""
    return {"obs_dim": agent.obs_dim, "act_dim": agent.act_dim,
            "actor_hidden": list(agent.config.actor_hidden),
            **normalizer.to_metadata(), **scaler.to_metadata(),
            "reward_scale": agent.reward_scale, "reward_bias": agent.reward_bias}


def _spec(config: RunConfig, agent: Agent, env: str, dataset_id: str | None,
          command: Sequence[str] | None, **extra: Any) -> RunSpec:
    return RunSpec(phase=config.phase, algorithm=config.algo,
                   agent_config=agent.config.to_dict(), env=env, dataset_id=dataset_id,
                   seed=config.seed, steps=config.steps, device=config.device,
                   eval_every=config.eval_every, eval_episodes=config.eval_episodes,
                   checkpoint_every=config.checkpoint_every, log_every=config.log_every,
                   command=list(config.command() if command is None else command),
                   task=dataset_label(dataset_id, env), tensorboard=config.tensorboard,
                   **extra)


def build_online(config: RunConfig, command: Sequence[str] | None = None
                 ) -> tuple[Trainer, Path | None]:
    """The trainer of an online run and the checkpoint to resume from (None: a fresh run).

    ``config`` is checked (``RunConfig.checked``); ``command`` is what the run directory
    records (default: ``config.command()``).
    """
    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    source_meta: dict[str, Any] = {}
    if config.from_checkpoint is not None:
        tensors, source_meta = load_tensors(config.from_checkpoint)
        if config.env is not None and config.env != source_meta["env"]:
            raise SmacError(f"--env {config.env} differs from the env of {config.from_checkpoint} "
                            f"({source_meta['env']})")
        env = source_meta["env"]
    else:
        env = config.env
    obs_dim, scaler = _env_spaces(env)
    agent = _make_agent(config, obs_dim, scaler.low.shape[0])
    online_buffer = ReplayBuffer(config.buffer_size or config.steps, obs_dim, agent.act_dim,
                                 config.device, generator)
    handoff = None
    if source_meta:
        normalizer = ObsNormalizer.from_metadata(source_meta)
        dataset_id = source_meta.get("dataset_id")
        if dataset_id is None:
            raise SmacError(f"{config.from_checkpoint} records no dataset_id to fill the replay "
                            "buffer with")
        dataset = load_dataset(dataset_id)
        _check_dataset_fits(dataset, env, obs_dim, scaler)
        seen = agent_view(dataset, normalizer, scaler)
        handoff = hand_over(agent, tensors, source_meta,
                            torch.as_tensor(seen.observations, device=agent.device),
                            config.handoff, config.seed)
        offline_buffer = ReplayBuffer.from_dataset(seen, config.device, agent.config.gamma,
                                                   generator=generator)
        sampler = MixedReplayBuffer(offline_buffer, online_buffer, config.mix)
        start_steps = 0 if config.start_steps is None else config.start_steps
    else:
        normalizer, dataset_id = ObsNormalizer.identity(obs_dim), None
        sampler = online_buffer
        start_steps = DEFAULT_START_STEPS if config.start_steps is None else config.start_steps
    spec = _spec(config, agent, env, dataset_id, command, start_steps=start_steps,
                 early_eval_every=config.early_eval_every, early_eval_until=config.early_eval_until,
                 mix=config.mix if source_meta else None,
                 from_checkpoint=config.from_checkpoint,
                 from_algorithm=source_meta.get("algorithm"), handoff=handoff,
                 obs_normalization=bool(source_meta))
    resume_from = prepare_run_dir(config.out, spec, config.resume)
    collector = EnvCollector(env, config.seed, scaler, normalizer, online_buffer)
    trainer = Trainer(spec, config.out, agent, sampler, generator, normalizer, scaler,
                      _static_metadata(agent, normalizer, scaler), collector)
    return trainer, resume_from


def build_offline(config: RunConfig, command: Sequence[str] | None = None
                  ) -> tuple[Trainer, Path | None]:
    """The trainer of an offline run and the checkpoint to resume from (None: a fresh run);
    arguments as ``build_online``."""
    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    dataset = load_dataset(config.dataset)
    env = offline_env(config.dataset, dataset, config.env)
    obs_dim, scaler = _env_spaces(env)
    _check_dataset_fits(dataset, env, obs_dim, scaler)
    normalizer = (ObsNormalizer.from_dataset(dataset) if config.normalize_obs
                  else ObsNormalizer.identity(obs_dim))
    agent = _make_agent(config, obs_dim, scaler.low.shape[0])
    seen = agent_view(dataset, normalizer, scaler)
    buffer = ReplayBuffer.from_dataset(seen, config.device, agent.config.gamma,
                                       generator=generator)
    spec = _spec(config, agent, env, dataset.dataset_id or config.dataset, command,
                 obs_normalization=config.normalize_obs)
    resume_from = prepare_run_dir(config.out, spec, config.resume)
    agent.prepare_offline(seen, buffer, RunArtifacts(config.out))
    agent.plan_updates(config.steps)
    trainer = Trainer(spec, config.out, agent, buffer, generator, normalizer, scaler,
                      _static_metadata(agent, normalizer, scaler))
    return trainer, resume_from
