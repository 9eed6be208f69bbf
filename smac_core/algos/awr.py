"""AWR column of the paper: advantage-weighted actor regression on a SAC-style critic, i.e. AWAC
(Nair et al. 2020, "AWAC: Accelerating Online Reinforcement Learning with Offline Datasets").

Critic: an ensemble of Q-functions trained by TD with *policy* actions at the next state (no
entropy term). Actor: weighted maximum likelihood of the batch actions (paper section 3.3),

    max_pi E_{(s, a)~B}[log pi(a|s) exp(A(s, a) / lambda)],  A(s, a) = Q(s, a) - E_{a'~pi}Q(s, a')

with the value E_{a'~pi}Q(s, a') estimated by one policy sample (as AWAC and CORL ``awac.py``),
Q = the ensemble min. ``advantage_temperature`` is lambda (1.0, CORL); the weights exp(A/lambda)
are clipped above at ``max_weight`` (100, CORL) so that one large advantage cannot dominate a
batch. Not normalised over the batch (AWAC's own choice). log pi(a|s) is the density of the
tanh-Gaussian the actor samples from (``TanhGaussianActor.log_prob``, with the tanh
change of variables; batch actions clipped to +-(1 - 1e-6)), so the policy that acts is the one
fitted, unlike IQL's Gaussian around tanh(mu) (``regression_log_prob``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from smac_core.algos.base import (
    ActorCriticConfig,
    Agent,
    check_config,
    per_seed,
    polyak_update,
    scalar_metrics,
)
from smac_core.data.buffers import Batch
from smac_core.nets import CriticEnsemble, TanhGaussianActor


@dataclass
class AWRConfig(ActorCriticConfig):
    """AWAC hyperparameters (CORL ``awac.py``: lr 3e-4, tau 5e-3, lambda 1, weight clip 100)."""

    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    advantage_temperature: float = 1.0
    max_weight: float = 100.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config(self.advantage_temperature > 0.0, self,
                     f"advantage_temperature must be positive; got {self.advantage_temperature}")
        check_config(self.max_weight > 0.0, self,
                     f"max_weight must be positive; got {self.max_weight}")


class AWR(Agent):
    """AWAC: TD critic ensemble with policy actions, advantage-weighted tanh-Gaussian actor."""

    name = "awr"
    config_class = AWRConfig
    phases = frozenset({"online"})
    config: AWRConfig

    def __init__(self, obs_dim: int, act_dim: int, config: AWRConfig,
                 device: str | torch.device = "cpu") -> None:
        super().__init__(obs_dim, act_dim, config, device)
        critic = CriticEnsemble(obs_dim, act_dim, config.critic_hidden, config.num_critics)
        self.networks = {
            "actor": TanhGaussianActor(obs_dim, act_dim, config.actor_hidden),
            "critic": critic,
            "critic_target": copy.deepcopy(critic).requires_grad_(False),
        }
        for module in self.networks.values():
            module.to(self.device)
        self.optimizers = {
            "actor": self.make_optimizer([self.actor], config.actor_lr),
            "critic": self.make_optimizer([self.critic], config.critic_lr),
        }

    @property
    def critic(self) -> CriticEnsemble:
        return self.networks["critic"]

    @per_seed
    def critic_inputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The critic step's random draw: ``next_noise`` (B, act_dim), the Gaussian noise of
        a' ~ pi(.|s') in the TD target."""
        return {"next_noise": torch.randn_like(batch.actions)}

    @per_seed
    def actor_inputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The actor step's random draw: ``noise`` (B, act_dim), that of the a' ~ pi(.|s) whose
        value estimates V^pi(s) in the advantage."""
        return {"noise": torch.randn_like(batch.actions)}

    def td_loss(self, batch: Batch, inputs: dict[str, torch.Tensor]
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """TD loss with next actions from the policy (policy evaluation), summed over members."""
        with torch.no_grad():
            # y = r + gamma (1 - d) min_i Q_target_i(s', a'),  a' ~ pi(.|s')
            next_actions, _ = self.actor(batch.next_observations, inputs["next_noise"])
            next_q = self.networks["critic_target"](batch.next_observations, next_actions)
            target = (self.learning_rewards(batch)
                      + self.config.gamma * (1.0 - batch.dones) * next_q.min(dim=0).values)
        # L = sum_i E[(Q_i(s, a) - y)^2]
        q = self.critic(batch.observations, batch.actions)  # (N, B)
        loss = ((q - target) ** 2).mean(dim=1).sum()
        return loss, {"critic_loss": loss, "q_mean": q.mean(), "target_mean": target.mean()}

    def actor_loss(self, batch: Batch, inputs: dict[str, torch.Tensor]
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Advantage-weighted regression on the batch's actions, the advantage from the
        critic after its step and one policy action (``inputs["noise"]``) per state."""
        cfg = self.config
        with torch.no_grad():
            # A(s, a) = Q(s, a) - Q(s, a'),  a' ~ pi(.|s)  (one-sample estimate of V^pi(s))
            policy_actions, _ = self.actor(batch.observations, inputs["noise"])
            q_data = self.critic(batch.observations, batch.actions).min(dim=0).values
            q_policy = self.critic(batch.observations, policy_actions).min(dim=0).values
            advantage = q_data - q_policy
            # w = min(exp(A / lambda), max_weight)
            weights = torch.exp(advantage / cfg.advantage_temperature).clamp(max=cfg.max_weight)
        # L_pi = -E_{(s, a)~B}[log pi(a|s) w(s, a)],  pi the tanh-Gaussian the actor acts with
        log_prob = self.actor.log_prob(batch.observations, batch.actions)
        actor_loss = -(log_prob * weights).mean()
        return actor_loss, {"actor_loss": actor_loss, "advantage_mean": advantage.mean(),
                            "weight_mean": weights.mean(), "log_prob_mean": log_prob.mean()}

    def update(self, batch: Batch) -> dict[str, float]:
        """One critic step, one actor step, then the critic target's Polyak average."""
        cfg = self.config
        self.updates += 1
        metrics = self.gradient_step(("critic",), self.td_loss, batch, self.critic_inputs(batch))
        metrics |= self.gradient_step(("actor",), self.actor_loss, batch,
                                      self.actor_inputs(batch))
        # theta_target <- tau theta + (1 - tau) theta_target
        polyak_update(self.networks["critic_target"], self.critic, cfg.tau)
        return scalar_metrics(metrics)
