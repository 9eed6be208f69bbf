"""IQL: Implicit Q-Learning (Kostrikov, Nair & Levine, 2021, arXiv 2110.06169).

IQL never queries the critic at actions outside the dataset. V(s) is fitted as an upper
expectile of Q(s, a) over the dataset's actions, Q by TD to V(s'), and the actor by
advantage-weighted regression onto the dataset's actions.

Defaults follow the paper and CORL's ``algorithms/offline/iql.py`` with its configs
(``configs/offline/iql/hopper/medium_replay_v2.yaml``, ``.../door/human_v1.yaml``): learning
rates 3e-4, the actor's cosine-annealed to 0 over the run's updates (``IQLConfig``), polyak
5e-3, beta 3.0, exp-weights clipped at 100, expectile 0.7 on MuJoCo and 0.8 on Adroit and
Kitchen (0.9 on OGBench, the IQL baseline's value in OGBench's and FQL's configs); MuJoCo
rewards rescaled by 1000 / (max - min episode return of the dataset)
(CORL's ``normalize_reward``), Adroit and Kitchen rewards unchanged. The family is that of the
dataset's task (``prepare_offline``); datasets of envs outside the task registry get the MuJoCo
values. CORL's actor dropout (0.1 on
Adroit) is not used: the actor is the shared ``TanhGaussianActor``, so the IQL policy lives in the
same parameter space as every other method's.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

from smac_core.algos.base import (
    ActorCriticConfig,
    Agent,
    check_config,
    dataset_task,
    polyak_update,
    scalar_metrics,
)
from smac_core.data.buffers import Batch, ReplayBuffer
from smac_core.data.dataset import TransitionDataset
from smac_core.nets import CriticEnsemble, TanhGaussianActor, ValueNetwork
from smac_core.state import ArtifactStore

EXPECTILE_BY_FAMILY = {"mujoco": 0.7, "adroit": 0.8, "kitchen": 0.8, "ogbench": 0.9}


@dataclass
class IQLConfig(ActorCriticConfig):
    """IQL hyperparameters. ``expectile`` None: the task family's value, set by
    ``prepare_offline`` (0.7 until then).

    ``actor_lr_cosine_steps``: the actor lr anneals as lr_k = actor_lr (1 + cos(pi min(k, T) /
    T)) / 2 after k updates, CORL's ``CosineAnnealingLR(actor_optimizer, max_steps)``. T: None
    (default) = the run's offline updates (``plan_updates``; the lr is constant until the
    trainer gives them), 0 = no schedule (constant lr), N > 0 = N updates. T is part of the
    resume state, so a run extended past it (``--resume`` with a larger ``--steps``) keeps lr 0.
    """

    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    expectile: float | None = None    # tau of the expectile loss, in (0, 1)
    beta: float = 3.0                 # inverse temperature of the advantage weights
    max_weight: float = 100.0         # clip of exp(beta * A)
    actor_lr_cosine_steps: int | None = None  # cosine horizon T of the actor lr (docstring)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config(self.expectile is None or 0.0 < self.expectile < 1.0, self,
                     f"expectile must be in (0, 1); got {self.expectile}")
        check_config(self.beta >= 0.0, self, f"beta must be >= 0; got {self.beta}")
        check_config(self.max_weight > 0.0, self,
                     f"max_weight must be positive; got {self.max_weight}")
        check_config(self.actor_lr_cosine_steps is None or self.actor_lr_cosine_steps >= 0, self,
                     f"actor_lr_cosine_steps must be >= 0; got {self.actor_lr_cosine_steps}")


class IQL(Agent):
    """Networks: ``actor`` (TanhGaussianActor), ``critic`` / ``critic_target`` (CriticEnsemble),
    ``value`` (ValueNetwork)."""

    name = "iql"
    config_class = IQLConfig
    phases = frozenset({"offline"})
    config: IQLConfig

    def __init__(self, obs_dim: int, act_dim: int, config: IQLConfig,
                 device: str | torch.device = "cpu") -> None:
        super().__init__(obs_dim, act_dim, config, device)
        actor = TanhGaussianActor(obs_dim, act_dim, config.actor_hidden)
        critic = CriticEnsemble(obs_dim, act_dim, config.critic_hidden, config.num_critics)
        value = ValueNetwork(obs_dim, config.critic_hidden)
        self.networks = {"actor": actor, "critic": critic, "critic_target": copy.deepcopy(critic),
                         "value": value}
        for net in self.networks.values():
            net.to(self.device)
        self.networks["critic_target"].requires_grad_(False)
        self.optimizers = {"actor": self.make_optimizer([actor], config.actor_lr),
                           "critic": self.make_optimizer([critic], config.critic_lr),
                           "value": self.make_optimizer([value], config.value_lr)}
        self.expectile = config.expectile if config.expectile is not None else 0.7
        self.actor_lr_horizon = config.actor_lr_cosine_steps or 0  # T; 0: constant lr

    def prepare_offline(self, dataset: TransitionDataset, buffer: ReplayBuffer,
                        artifacts: ArtifactStore) -> None:
        """Resolve the task family's expectile and reward scale (see the module docstring)."""
        task = dataset_task(dataset)
        family = task.family if task is not None else "mujoco"
        if self.config.expectile is None:
            self.expectile = EXPECTILE_BY_FAMILY[family]
        if family == "mujoco":
            returns = dataset.episode_returns()
            spread = float(returns.max() - returns.min())
            self.reward_scale = 1000.0 / spread if spread > 0 else 1.0

    def plan_updates(self, total: int) -> None:
        """The actor lr's cosine horizon is the run's ``total`` updates unless configured."""
        if self.config.actor_lr_cosine_steps is None:
            self.actor_lr_horizon = total

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "actor_lr_horizon": self.actor_lr_horizon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        # resume states written before the schedule's default hold none: theirs was the config's
        self.actor_lr_horizon = int(state.get("actor_lr_horizon", self.actor_lr_horizon))

    def anneal_actor_lr(self) -> None:
        """Set the actor lr of the next update, k = ``self.updates``:
        lr_k = lr_0 (1 + cos(pi min(k, T) / T)) / 2 (``initial_lr`` holds lr_0, as in torch's
        schedulers; the optimizer's state_dict keeps both)."""
        progress = min(self.updates / self.actor_lr_horizon, 1.0)
        for group in self.optimizers["actor"].param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * 0.5 * (1.0 + math.cos(math.pi * progress))

    def value_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_V = E[ |tau - 1(u < 0)| u^2 ], u = min_i Q_target_i(s, a) - V(s); the metrics hold
        u itself (``advantage``, (B,), detached) for the actor's weights."""
        with torch.no_grad():
            q_data = self.networks["critic_target"](batch.observations,
                                                    batch.actions).min(0).values  # (B,)
        v = self.networks["value"](batch.observations)
        u = q_data - v
        loss = (torch.abs(self.expectile - (u < 0).float()) * u.pow(2)).mean()
        return loss, {"value_loss": loss, "q_data": q_data.mean(), "v": v.mean(),
                      "advantage": u.detach()}

    def critic_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_Q = sum_i E[ (Q_i(s, a) - (r + gamma (1 - d) V(s')))^2 ]."""
        with torch.no_grad():
            td_target = (self.learning_rewards(batch) + self.config.gamma * (1.0 - batch.dones)
                         * self.networks["value"](batch.next_observations))
        q = self.networks["critic"](batch.observations, batch.actions)         # (N, B)
        loss = F.mse_loss(q, td_target.expand_as(q), reduction="none").mean(1).sum()
        return loss, {"critic_loss": loss}

    def actor_loss(self, batch: Batch, advantage: torch.Tensor
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """AWR: L_pi = -E[ min(exp(beta * A), max_weight) * log pi(a|s) ], A = ``advantage``
        (B,), Q_target(s, a) - V(s) with V before this update's value step."""
        cfg = self.config
        weights = torch.exp(cfg.beta * advantage).clamp(max=cfg.max_weight)
        loss = -(weights * self.actor.regression_log_prob(batch.observations,
                                                          batch.actions)).mean()
        return loss, {"actor_loss": loss, "adv_weight": weights.mean()}

    def update(self, batch: Batch) -> dict[str, float]:
        """A value step, a critic step (then its target's Polyak average), an actor step."""
        cfg = self.config
        metrics = self.gradient_step(("value",), self.value_loss, batch)
        advantage = metrics.pop("advantage")
        metrics |= self.gradient_step(("critic",), self.critic_loss, batch)
        polyak_update(self.networks["critic_target"], self.networks["critic"], cfg.tau)
        metrics |= self.gradient_step(("actor",), self.actor_loss, batch, advantage)
        self.updates += 1
        if self.actor_lr_horizon > 0:
            self.anneal_actor_lr()
        return scalar_metrics(metrics)
