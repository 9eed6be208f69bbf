"""TD3 (Fujimoto et al. 2018, "Addressing Function Approximation Error in Actor-Critic Methods").

Deterministic actor-critic with clipped double Q-learning (the min over the critic ensemble),
target policy smoothing (clipped Gaussian noise on the target action) and delayed actor and
target updates. Exploration: Gaussian noise on the actor's action in ``act``. Defaults follow
the paper and CleanRL's ``td3_continuous_action.py``; noises are in units of the [-1, 1]
action box (CleanRL multiplies them by ``max_action``, the same thing).

``td_loss`` and ``actor_loss`` are separate methods so that TD3+BC replaces only the latter.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from smac_core.algos.base import (
    ActorCriticConfig,
    Agent,
    check_config,
    frozen,
    per_seed,
    polyak_update,
    scalar_metrics,
)
from smac_core.data.buffers import Batch
from smac_core.nets import CriticEnsemble, DeterministicActor


@dataclass
class TD3Config(ActorCriticConfig):
    """TD3 hyperparameters (paper section 6 / author code: lr 3e-4, tau 5e-3, sigma 0.2, c 0.5,
    d 2; exploration noise 0.1)."""

    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_delay: int = 2
    exploration_noise: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config(self.policy_delay >= 1, self,
                     f"policy_delay must be >= 1; got {self.policy_delay}")
        for field in ("policy_noise", "noise_clip", "exploration_noise"):
            check_config(getattr(self, field) >= 0.0, self,
                         f"{field} must be >= 0; got {getattr(self, field)}")


class TD3(Agent):
    """TD3 with a critic ensemble (min over members), actor and critic target networks."""

    name = "td3"
    config_class = TD3Config
    phases = frozenset({"online"})
    config: TD3Config

    def __init__(self, obs_dim: int, act_dim: int, config: TD3Config,
                 device: str | torch.device = "cpu") -> None:
        super().__init__(obs_dim, act_dim, config, device)
        actor = DeterministicActor(obs_dim, act_dim, config.actor_hidden)
        critic = CriticEnsemble(obs_dim, act_dim, config.critic_hidden, config.num_critics)
        self.networks = {
            "actor": actor,
            "actor_target": copy.deepcopy(actor).requires_grad_(False),
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

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """mu(s), plus N(0, exploration_noise^2) noise clipped to the box unless deterministic."""
        action = self.actor(obs)
        if deterministic:
            return action
        return (action + self.config.exploration_noise * torch.randn_like(action)).clamp(-1, 1)

    @per_seed
    def critic_inputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The critic step's random draw: ``smoothing_noise`` (B, act_dim), standard normal,
        of the target policy smoothing."""
        return {"smoothing_noise": torch.randn_like(batch.actions)}

    def td_loss(self, batch: Batch, inputs: dict[str, torch.Tensor]
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Clipped double-Q TD loss with target policy smoothing (its noise from
        ``critic_inputs``), summed over the members."""
        cfg = self.config
        with torch.no_grad():
            # a' = clip(mu_target(s') + clip(eps, -c, c), -1, 1), eps ~ N(0, sigma^2)  (sec. 5.3)
            next_actions = self.networks["actor_target"](batch.next_observations)
            noise = (cfg.policy_noise * inputs["smoothing_noise"]).clamp(-cfg.noise_clip,
                                                                         cfg.noise_clip)
            next_actions = (next_actions + noise).clamp(-1.0, 1.0)
            # y = r + gamma (1 - d) min_i Q_target_i(s', a')   (clipped double Q, sec. 4.2)
            next_q = self.networks["critic_target"](batch.next_observations, next_actions)
            target = (self.learning_rewards(batch)
                      + cfg.gamma * (1.0 - batch.dones) * next_q.min(dim=0).values)
        # L = sum_i E[(Q_i(s, a) - y)^2]
        q = self.critic(batch.observations, batch.actions)  # (N, B)
        loss = ((q - target) ** 2).mean(dim=1).sum()
        return loss, {"critic_loss": loss, "q_mean": q.mean(), "target_mean": target.mean()}

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Deterministic policy gradient objective: -E_s[Q_1(s, mu(s))]."""
        q = self.critic.member(0, batch.observations, self.actor(batch.observations))
        loss = -q.mean()
        return loss, {"actor_loss": loss}

    def update(self, batch: Batch) -> dict[str, float]:
        """A critic step every call; actor and target networks every ``policy_delay`` calls."""
        cfg = self.config
        self.updates += 1
        metrics = self.gradient_step(("critic",), self.td_loss, batch, self.critic_inputs(batch))
        if self.updates % cfg.policy_delay == 0:
            with frozen(self.critic):  # no critic weight gradients (the critic step zeroes them)
                metrics |= self.gradient_step(("actor",), self.actor_loss, batch)
            # theta'_i <- tau theta_i + (1 - tau) theta'_i ;  phi' <- tau phi + (1 - tau) phi'
            polyak_update(self.networks["critic_target"], self.critic, cfg.tau)
            polyak_update(self.networks["actor_target"], self.actor, cfg.tau)
        return scalar_metrics(metrics)
