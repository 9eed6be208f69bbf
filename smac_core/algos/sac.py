"""Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications").

Maximum-entropy actor-critic: an ensemble of Q-functions trained on the soft Bellman residual,
a tanh-Gaussian actor trained to maximise Q plus entropy, and an automatically tuned
temperature alpha that keeps the policy entropy near a target (-act_dim). Defaults follow the
paper and CleanRL's ``sac_continuous_action.py``. Ensembles and the mean-minus-std target follow
REDQ/SAC-N; ``utd`` critic updates per call (actor once) as in RLPD.

The critic's objective, ``critic_loss``, is J_Q + R: the TD loss of the target ``td_target`` plus
a regulariser ``critic_regularizer`` (0 for SAC). Algorithms built on SAC override those two
hooks (CalQL/CQL: the max backup and the conservative term; SMAC: the score-matching term)
without copying the update.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from smac_core.algos.base import (
    TARGET_REDUCTIONS,
    ActorCriticConfig,
    Agent,
    LossAndMetrics,
    check_config,
    frozen,
    per_seed,
    polyak_update,
    reduce_ensemble,
    scalar_metrics,
    split_batch,
)
from smac_core.data.buffers import Batch
from smac_core.nets import CriticEnsemble, TanhGaussianActor


@dataclass
class SACConfig(ActorCriticConfig):
    """SAC hyperparameters (paper Table 1: learning rates 3e-4, tau 5e-3, gamma 0.99).

    ``target_entropy`` None means -act_dim. Fine-tuning from a checkpoint under the default
    handoff rule sets the target entropy and the initial temperature from the handed-over policy
    instead (``smac_core.handoff``). ``target_reduction`` is how the ensemble's values
    are combined, in the TD target and in the actor's objective: "min" (clipped double Q) or
    "mean_minus_std" (mean - ``target_std_weight`` * std). ``utd``: critic updates per
    ``update`` call, each on its own ``batch_size`` slice of the batch (the trainer samples
    ``utd * batch_size``); the actor and alpha take one step on the whole batch.
    """

    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    initial_alpha: float = 1.0
    target_entropy: float | None = None
    target_reduction: str = "min"
    target_std_weight: float = 1.0
    utd: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config(self.target_reduction in TARGET_REDUCTIONS, self,
                     f"target_reduction must be one of {list(TARGET_REDUCTIONS)}; "
                     f"got '{self.target_reduction}'")
        check_config(self.target_reduction == "min" or self.num_critics >= 2, self,
                     "target_reduction 'mean_minus_std' needs num_critics >= 2")
        check_config(self.utd >= 1, self, f"utd must be >= 1; got {self.utd}")
        check_config(self.target_std_weight >= 0.0, self,
                     f"target_std_weight must be >= 0; got {self.target_std_weight}")
        check_config(self.initial_alpha > 0.0, self,
                     f"initial_alpha must be positive; got {self.initial_alpha}")


class Temperature(nn.Module):
    """The entropy temperature alpha = exp(log_alpha), a module so it is checkpointed."""

    def __init__(self, initial_alpha: float) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(math.log(initial_alpha)))

    def forward(self) -> torch.Tensor:
        return self.log_alpha.exp()


class SAC(Agent):
    """SAC with a critic ensemble, target networks and automatic temperature."""

    name = "sac"
    config_class = SACConfig
    phases = frozenset({"online"})
    config: SACConfig

    def __init__(self, obs_dim: int, act_dim: int, config: SACConfig,
                 device: str | torch.device = "cpu") -> None:
        super().__init__(obs_dim, act_dim, config, device)
        critic = CriticEnsemble(obs_dim, act_dim, config.critic_hidden, config.num_critics)
        self.networks = {
            "actor": TanhGaussianActor(obs_dim, act_dim, config.actor_hidden),
            "critic": critic,
            "critic_target": copy.deepcopy(critic).requires_grad_(False),
            "temperature": Temperature(config.initial_alpha),
        }
        for module in self.networks.values():
            module.to(self.device)
        self.optimizers = {
            "actor": self.make_optimizer([self.actor], config.actor_lr),
            "critic": self.make_optimizer([self.critic], config.critic_lr),
            "temperature": self.make_optimizer([self.temperature], config.alpha_lr),
        }
        self.target_entropy = self.configured_target_entropy

    @property
    def configured_target_entropy(self) -> float:
        """The config's target entropy, -act_dim when None (``smac_core.handoff`` may set
        ``target_entropy`` to another value, kept in ``state_dict``)."""
        cfg = self.config
        return cfg.target_entropy if cfg.target_entropy is not None else -float(self.act_dim)

    @property
    def critic(self) -> CriticEnsemble:
        return self.networks["critic"]

    @property
    def critic_target(self) -> CriticEnsemble:
        return self.networks["critic_target"]

    @property
    def temperature(self) -> Temperature:
        return self.networks["temperature"]

    @property
    def update_batch_size(self) -> int:
        return self.config.batch_size * self.config.utd

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "target_entropy": self.target_entropy}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        # resume states written before the handoff rule hold none: theirs was the config's
        self.target_entropy = float(state.get("target_entropy", self.configured_target_entropy))

    @per_seed
    def critic_inputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The critic step's random draws, made before its loss: ``next_noise`` (B, act_dim),
        the Gaussian noise of a' ~ pi(.|s') in the TD target. Variants add theirs."""
        return {"next_noise": torch.randn_like(batch.actions)}

    @per_seed
    def policy_inputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The policy step's random draws: ``noise`` (B, act_dim), that of a ~ pi(.|s)."""
        return {"noise": torch.randn_like(batch.actions)}

    def td_target(self, batch: Batch, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The soft Bellman target y (B,), no gradient (paper eq. 3), with a' from
        ``inputs["next_noise"]``. Offline variants override it (CalQL/CQL: the max backup
        without entropy)."""
        cfg = self.config
        with torch.no_grad():
            alpha = self.temperature()
            # a' ~ pi(.|s')
            next_actions, next_log_prob = self.actor(batch.next_observations,
                                                     inputs["next_noise"])
            # V(s') = reduce_i Q_target_i(s', a') - alpha log pi(a'|s')
            next_q = reduce_ensemble(self.critic_target(batch.next_observations, next_actions),
                                     cfg.target_reduction, cfg.target_std_weight)
            next_v = next_q - alpha * next_log_prob
            # y = r + gamma (1 - d) V(s')
            return self.learning_rewards(batch) + cfg.gamma * (1.0 - batch.dones) * next_v

    def critic_regularizer(self, batch: Batch, q: torch.Tensor, inputs: dict[str, torch.Tensor]
                           ) -> tuple[torch.Tensor | float, dict[str, torch.Tensor]]:
        """R(Q), added to the TD loss, and its metrics; ``q`` (N, B) = Q_i(s, a) of the batch,
        ``inputs`` those of ``critic_inputs``. 0 for SAC; CalQL/CQL: the conservative term,
        SMAC: the score-matching term."""
        return 0.0, {}

    def critic_loss(self, batch: Batch, inputs: dict[str, torch.Tensor] | None = None
                    ) -> LossAndMetrics:
        """The critic's objective J_Q + R (paper eq. 5 plus the variant's regulariser), summed
        over the ensemble members; hooks: ``td_target`` and ``critic_regularizer``, given the
        step's ``critic_inputs`` (drawn here when None)."""
        inputs = self.critic_inputs(batch) if inputs is None else inputs
        # y = r + gamma (1 - d) V(s')
        target = self.td_target(batch, inputs)
        # J_Q = sum_i E[(Q_i(s, a) - y)^2]   (no 1/2, as CleanRL/CORL)
        q = self.critic(batch.observations, batch.actions)  # (N, B)
        td_loss = ((q - target) ** 2).mean(dim=1).sum()
        # J = J_Q + R(Q)   (R = 0 for SAC)
        regularizer, metrics = self.critic_regularizer(batch, q, inputs)
        loss = td_loss + regularizer
        return loss, {"critic_loss": loss, "td_loss": td_loss, "q_mean": q.mean(),
                      "target_mean": target.mean(), **metrics}

    def policy_loss(self, batch: Batch, inputs: dict[str, torch.Tensor],
                    target_entropy: float | torch.Tensor) -> LossAndMetrics:
        """J_pi + J(alpha), the actor's and the temperature's objectives, for one joint step:
        each term's gradient reaches only its own parameters (alpha is detached in J_pi,
        log pi in J(alpha)). a ~ pi(.|s) from ``inputs["noise"]`` (``policy_inputs``)."""
        cfg = self.config
        # J_pi = E_s E_{a~pi}[alpha log pi(a|s) - reduce_i Q_i(s, a)]   (eq. 7, reparameterised)
        alpha = self.temperature().detach()
        actions, log_prob = self.actor(batch.observations, inputs["noise"])
        with frozen(self.critic):  # no critic weight gradients (the critic step zeroes them)
            q_pi = reduce_ensemble(self.critic(batch.observations, actions),
                                   cfg.target_reduction, cfg.target_std_weight)
        actor_loss = (alpha * log_prob - q_pi).mean()
        # J(alpha) = E_{a~pi}[-alpha (log pi(a|s) + H_target)]   (eq. 18)
        alpha_loss = -(self.temperature() * (log_prob.detach() + target_entropy)).mean()
        return actor_loss + alpha_loss, {"actor_loss": actor_loss, "alpha_loss": alpha_loss,
                                         "alpha": alpha, "entropy": -log_prob.mean()}

    def update(self, batch: Batch) -> dict[str, float]:
        """``utd`` critic steps (one per slice of ``batch``), then one actor and alpha step on
        the whole batch. Each step's random draws are made before its loss (``*_inputs``)."""
        cfg = self.config
        self.updates += 1
        for critic_batch in split_batch(batch, cfg.utd):
            metrics = self.gradient_step(("critic",), self.critic_loss, critic_batch,
                                         self.critic_inputs(critic_batch))
            # theta_target <- tau theta + (1 - tau) theta_target
            polyak_update(self.critic_target, self.critic, cfg.tau)
        metrics |= self.gradient_step(("actor", "temperature"), self.policy_loss, batch,
                                      self.policy_inputs(batch), self.target_entropy)
        return scalar_metrics(metrics)
