"""TD3+BC (Fujimoto & Gu 2021, "A Minimalist Approach to Offline Reinforcement Learning").

TD3 with a behaviour-cloning term in the actor loss and the Q term normalised by its mean
magnitude (paper section 5):

    pi = argmax_pi E_{(s, a)~D}[lambda Q(s, pi(s)) - (pi(s) - a)^2],  lambda = alpha / mean|Q|

The critic, the delays and the target networks are TD3's. It runs offline (the batch is the
dataset) and online (the batch is the replay buffer, optionally mixed with the offline data), with
the exploration noise of TD3 when acting online. Defaults: paper / CORL ``td3_bc.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from smac_core.algos.base import check_config
from smac_core.algos.td3 import TD3, TD3Config
from smac_core.data.buffers import Batch


@dataclass
class TD3BCConfig(TD3Config):
    """TD3's hyperparameters plus ``alpha`` = 2.5, the weight of Q against behaviour cloning."""

    alpha: float = 2.5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config(self.alpha >= 0.0, self, f"alpha must be >= 0; got {self.alpha}")


class TD3BC(TD3):
    """TD3 whose actor loss adds behaviour cloning to the normalised Q term."""

    name = "td3bc"
    config_class = TD3BCConfig
    phases = frozenset({"offline", "online"})
    config: TD3BCConfig

    def actor_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """-lambda E[Q_1(s, pi(s))] + E[(pi(s) - a)^2], lambda = alpha / E|Q_1| (detached)."""
        actions = self.actor(batch.observations)
        q = self.critic.member(0, batch.observations, actions)
        # lambda = alpha / ((1/N) sum |Q(s_i, a_i)|), a constant for the gradient
        lmbda = self.config.alpha / q.abs().mean().detach()
        bc_loss = ((actions - batch.actions) ** 2).mean()
        loss = -lmbda * q.mean() + bc_loss
        return loss, {"actor_loss": loss, "bc_loss": bc_loss, "lambda": lmbda}
