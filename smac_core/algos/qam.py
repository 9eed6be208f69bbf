"""Q-learning with Adjoint Matching (QAM; Li et al. 2026, arXiv 2601.14234).

A flow policy fine-tuned towards the behaviour-regularised optimum
pi*(a|s) ~ pi_base(a|s) exp(beta Q(s, a)) by adjoint matching (``smac_core.algos.flow``):

- base policy: a velocity field trained by flow-matching BC on the data, its EMA copy
  (``actor_base_target``, Polyak tau) the frozen base of adjoint matching;
- fine-tuned policy (``actor``): a velocity field, initialised as a copy of the base, that acts
  (10 Euler steps from x_0 ~ N(0, I), clipped to [-1, 1]) and is trained by adjoint matching
  with terminal adjoint -beta grad_a mean_i Q_target_i(s, clip(x_K)) and sigma_k = g_k;
- critic: an ensemble (10 members, 4x512 GELU + LayerNorm), TD target
  r + gamma (1 - d) (mean_i - rho std_i) Q_target_i(s', a'), a' from the fine-tuned flow.

Every update takes one step of each of the three objectives on the same batch, then moves the
target critic and the EMA base. Defaults are QAM's (its ``agents/qam.py`` config and Table 5);
``inverse_temperature`` (beta) is tuned per task in the paper. Action chunks: ``horizon`` H
(default 1; the papers use 5 for manipulation): the flows and the critic work on chunks of H
actions (H * act_dim), the batches are ``ChunkBatch``es of H consecutive transitions of one
episode (``smac_core.data.buffers.sample_chunks``), the TD target is
sum_k gamma^k r_k + gamma^H (1 - d) V(s_H), and the agent acts with a chunk's H actions
open-loop (trainer and evaluation).

Evaluation acts with the flow from a fixed initial noise per (evaluation episode, step), the
common random numbers of ``smac_core.rollout`` (``flow.FlowPolicy``); exploration with
x_0 ~ N(0, I).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from smac_core.algos.base import (
    ActorCriticConfig,
    Agent,
    check_config,
    per_seed,
    polyak_update,
    reduce_ensemble,
    scalar_metrics,
)
from smac_core.algos.flow import (
    FLOW_ALGORITHMS,
    FLOW_STEPS,
    AdjointPath,
    FlowPolicy,
    VelocityField,
    adjoint_matching_loss,
    adjoint_path,
    euler_sample,
    flow_matching_loss,
    flow_matching_noise,
    path_kl,
)
from smac_core.data.buffers import Batch, ChunkBatch, chunk_return
from smac_core.errors import SmacError
from smac_core.nets import CriticEnsemble
from smac_core.state import sub_state_dict


@dataclass
class QAMConfig(ActorCriticConfig):
    """QAM hyperparameters (its reference config: lr 3e-4, batch 256, 4x512 actor and critic,
    critic LayerNorm, 10 critics, rho 0.5, tau 0.005, 10 flow steps, inverse temperature 0.3,
    gradients clipped to norm 1)."""

    actor_hidden: tuple[int, ...] = (512, 512, 512, 512)
    critic_hidden: tuple[int, ...] = (512, 512, 512, 512)
    num_critics: int = 10
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    flow_steps: int = FLOW_STEPS
    rho: float = 0.5                  # pessimism of the TD target: mean - rho * std
    inverse_temperature: float = 0.3  # beta on grad Q in the terminal adjoint (per-task in QAM)
    grad_clip: float = 1.0            # max gradient norm of each network's step
    horizon: int = 1                  # H: actions per chunk (QAM/TRQAM: 1 locomotion, 5 manip.)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config(self.num_critics >= 2, self,
                     f"num_critics must be >= 2 (for the std); got {self.num_critics}")
        check_config(self.flow_steps >= 2, self,
                     f"flow_steps must be >= 2; got {self.flow_steps}")
        check_config(self.rho >= 0.0, self, f"rho must be >= 0; got {self.rho}")
        check_config(self.inverse_temperature >= 0.0, self,
                     f"inverse_temperature must be >= 0; got {self.inverse_temperature}")
        check_config(self.grad_clip > 0.0, self, f"grad_clip must be > 0; got {self.grad_clip}")
        check_config(self.horizon >= 1, self, f"horizon must be >= 1; got {self.horizon}")


class QAM(Agent):
    """QAM: flow-matching base, adjoint-matching fine-tuned flow, pessimistic critic ensemble."""

    name = "qam"
    config_class = QAMConfig
    phases = frozenset({"offline", "online"})
    config: QAMConfig

    def __init__(self, obs_dim: int, act_dim: int, config: QAMConfig,
                 device: str | torch.device = "cpu") -> None:
        super().__init__(obs_dim, act_dim, config, device)
        self.horizon = config.horizon
        base = VelocityField(obs_dim, act_dim, config.actor_hidden, config.horizon)
        critic = CriticEnsemble(obs_dim, act_dim * config.horizon, config.critic_hidden,
                                config.num_critics,
                                layer_norm=True, activation="gelu")
        self.networks = {
            "actor": copy.deepcopy(base),                                  # fine-tuned, acts
            "actor_base": base,                                            # flow-matching BC
            "actor_base_target": copy.deepcopy(base).requires_grad_(False),  # EMA: frozen base
            "critic": critic,
            "critic_target": copy.deepcopy(critic).requires_grad_(False),
        }
        for module in self.networks.values():
            module.to(self.device)
        self.optimizers = {
            "actor": self.make_optimizer([self.actor], config.actor_lr),
            "actor_base": self.make_optimizer([self.networks["actor_base"]], config.actor_lr),
            "critic": self.make_optimizer([self.networks["critic"]], config.critic_lr),
        }

    # ------------------------------------------------------------------ acting
    def sample(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Action chunks of the fine-tuned flow in [-1, 1]: (B, obs_dim) -> (B, H * act_dim)
        (H = 1: single actions); noise x_0 ~ N(0, I), or 0 when ``deterministic``."""
        shape = (obs.shape[0], self.actor.chunk_dim)
        noise = (torch.zeros(shape, device=obs.device) if deterministic
                 else torch.randn(shape, device=obs.device))
        return euler_sample(self.actor, obs, noise, self.config.flow_steps).clamp(-1.0, 1.0)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.sample(obs, deterministic)

    def evaluation_policy(self, obs_mean, obs_std, action_low, action_high) -> nn.Module:
        return FlowPolicy(self.actor, self.config.flow_steps, obs_mean, obs_std, action_low,
                          action_high).to(self.device)

    # ------------------------------------------------------------------ the update
    def adjoint_scale(self) -> float:
        """The factor on -grad Q in the terminal adjoint: QAM's inverse temperature beta."""
        return self.config.inverse_temperature

    def matching_sigmas(self, noise_scales: torch.Tensor) -> torch.Tensor:
        """sigma_k of the adjoint-matching loss: QAM's sigma_k = g_k."""
        return noise_scales

    def after_actor_step(self, kl: torch.Tensor) -> dict[str, torch.Tensor]:
        """Hook after the fine-tuned field's step (TRQAM's dual update); extra metrics."""
        return {}

    def terminal_adjoint(self, obs: torch.Tensor, chunk: torch.Tensor) -> torch.Tensor:
        """adj_K = -scale * grad_a mean_i Q_target_i(s, clip(x_K)): (B, D) (QAM's code clips
        inside the gradient and uses the target critic)."""
        chunk = chunk.detach().requires_grad_(True)
        with torch.enable_grad():
            q = self.networks["critic_target"](obs, chunk.clamp(-1.0, 1.0)).mean(dim=0)
            (grad,) = torch.autograd.grad(q.sum(), chunk)
        return -self.adjoint_scale() * grad

    @per_seed
    def critic_inputs(self, batch: Batch | ChunkBatch) -> dict[str, torch.Tensor]:
        """The critic step's draw, no gradient: ``next_actions`` (B, D), a' ~ pi_ft(.|s')."""
        with torch.no_grad():
            return {"next_actions": self.sample(batch.next_observations)}

    @per_seed
    def base_inputs(self, batch: Batch | ChunkBatch) -> dict[str, torch.Tensor]:
        """The base field's draws (``flow_matching_noise``): ``x0`` (B, D), ``t`` (B, 1)."""
        return flow_matching_noise(batch.actions)

    @per_seed
    def actor_inputs(self, batch: Batch | ChunkBatch) -> dict[str, torch.Tensor]:
        """The fine-tuned field's input, no gradient: a batch of fine-tuned SDE paths from
        x_0 ~ N(0, I) with their lean adjoints against the EMA base (``adjoint_path``), as
        the fields of ``AdjointPath``."""
        obs = batch.observations
        path = adjoint_path(
            self.actor, self.networks["actor_base_target"], obs,
            torch.randn(obs.shape[0], self.actor.chunk_dim, device=obs.device),
            lambda chunk: self.terminal_adjoint(obs, chunk), self.config.flow_steps)
        return {f.name: getattr(path, f.name) for f in fields(AdjointPath)}

    def critic_loss(self, batch: Batch | ChunkBatch, inputs: dict[str, torch.Tensor]
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """y = r + gamma (1 - d) [mean_i - rho std_i] Q_target_i(s', a'), a' ~ pi_ft(.|s'); on
        chunks (H > 1) y = sum_k gamma^k r_k + gamma^H (1 - d) V(s_H), s_H after the chunk."""
        cfg = self.config
        with torch.no_grad():
            next_q = self.networks["critic_target"](batch.next_observations,
                                                    inputs["next_actions"])
            next_v = reduce_ensemble(next_q, "mean_minus_std", cfg.rho)
            rewards = self.learning_rewards(batch)                    # (B,) or (B, H)
            if rewards.dim() == 2:
                rewards = chunk_return(rewards, cfg.gamma)
            target = rewards + cfg.gamma ** cfg.horizon * (1.0 - batch.dones) * next_v
        q = self.networks["critic"](batch.observations, batch.actions)      # (N, B)
        loss = ((q - target) ** 2).mean()                 # mean over members and batch (QAM)
        return loss, {"critic_loss": loss, "q_mean": q.mean(), "target_mean": target.mean()}

    def base_loss(self, batch: Batch | ChunkBatch, inputs: dict[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Flow-matching BC of the base field: E ||v_base(s, x_t, t) - (a - x_0)||^2."""
        loss = flow_matching_loss(self.networks["actor_base"], batch.observations,
                                  batch.actions, inputs["x0"], inputs["t"])
        return loss, {"bc_flow_loss": loss}

    def actor_loss(self, batch: Batch | ChunkBatch, inputs: dict[str, torch.Tensor]
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Adjoint matching against the EMA base along the paths of ``actor_inputs``:
        sum_k ||2 (v_ft - v_base) / sigma_k + sigma_k adj_k||^2; the path KL of the gap."""
        path = AdjointPath(**inputs)
        loss, gap = adjoint_matching_loss(self.actor, batch.observations, path,
                                          self.matching_sigmas(path.noise_scales))
        return loss, {"adjoint_matching_loss": loss,
                      "path_kl": path_kl(gap.detach(), path.noise_scales, self.actor.horizon),
                      "adjoint_norm": path.adjoints[-1].norm(dim=-1).mean()}

    def update(self, batch: Batch | ChunkBatch) -> dict[str, float]:
        """A critic step, a base (BC) step, a fine-tuned (adjoint-matching) step, each with its
        gradients clipped to ``grad_clip``; then the target critic's and EMA base's averages."""
        cfg = self.config
        self.updates += 1
        metrics = self.gradient_step(("critic",), self.critic_loss, batch,
                                     self.critic_inputs(batch), max_grad_norm=cfg.grad_clip)
        metrics |= self.gradient_step(("actor_base",), self.base_loss, batch,
                                      self.base_inputs(batch), max_grad_norm=cfg.grad_clip)
        metrics |= self.gradient_step(("actor",), self.actor_loss, batch,
                                      self.actor_inputs(batch), max_grad_norm=cfg.grad_clip)
        metrics |= self.after_actor_step(metrics["path_kl"])
        polyak_update(self.networks["critic_target"], self.networks["critic"], cfg.tau)
        polyak_update(self.networks["actor_base_target"], self.networks["actor_base"], cfg.tau)
        return scalar_metrics(metrics)

    # ------------------------------------------------------------------ handoff
    def load_pretrained(self, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
        """Start from a QAM or TRQAM checkpoint: every network both agents have is copied whole
        (fine-tuned and base flows, EMA base, critics; TRQAM's lambda from TRQAM), the reward
        units kept. Gaussian actors (SAC, SMAC, CalQL, IQL, TD3+BC) are refused: a velocity
        field cannot be made from a mean and a std, and a flow re-trained from their samples
        would not be the policy that was handed over."""
        source = metadata.get("algorithm", "checkpoint")
        if source not in FLOW_ALGORITHMS:
            raise SmacError(f"{self.name} starts only from a flow-policy checkpoint "
                            f"({', '.join(FLOW_ALGORITHMS)}); this one is {source}")
        self.reward_scale = float(metadata.get("reward_scale", 1.0))
        self.reward_bias = float(metadata.get("reward_bias", 0.0))
        for name, module in self.networks.items():
            state = sub_state_dict(tensors, name)
            if not state:
                continue
            try:
                module.load_state_dict(state)
            except RuntimeError as exc:
                raise SmacError(f"cannot start {self.name} from the {source} checkpoint: network "
                                f"'{name}' differs (sizes must match): {exc}") from exc
