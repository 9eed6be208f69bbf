"""The agent interface every algorithm implements, and the algorithm registry.

An agent owns its networks (``self.networks``: name -> ``nn.Module``, saved to safetensors as
"<name>.<param>") and optimizers (``self.optimizers``), acts on *normalised* observations with
actions in [-1, 1]^act_dim (the trainer maps them to the env's bounds), and learns from a
``Batch`` in ``update``. The networks named ``actor`` and ``critic`` have the same meaning in
every algorithm, which is what makes the offline -> online handoff and ``landscape`` generic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch
from torch import nn

from smac_core.data.buffers import Batch
from smac_core.errors import SmacError


@dataclass
class AgentConfig:
    """Hyperparameters shared by all algorithms; each algorithm subclasses this dataclass."""

    actor_hidden: tuple[int, ...] = (256, 256)
    critic_hidden: tuple[int, ...] = (256, 256)
    gamma: float = 0.99
    batch_size: int = 256

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AgentConfig:
        """Build from a dict, rejecting unknown keys with a message that lists the valid ones."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise SmacError(f"unknown {cls.__name__} option(s) {unknown}; valid: {sorted(names)}")
        cooked = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**cooked)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Agent:
    """Networks, optimizers, acting and resume state. Subclasses implement ``update``."""

    name: ClassVar[str]
    config_class: ClassVar[type[AgentConfig]] = AgentConfig

    def __init__(self, obs_dim: int, act_dim: int, config: AgentConfig,
                 device: str | torch.device = "cpu") -> None:
        self.obs_dim, self.act_dim, self.config = obs_dim, act_dim, config
        self.device = torch.device(device)
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.updates = 0

    # ------------------------------------------------------------------ to implement
    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step (or UTD steps) on ``batch``; returns scalar metrics for the log."""
        raise NotImplementedError(f"{type(self).__name__} must implement update()")

    # ------------------------------------------------------------------ shared
    @property
    def actor(self) -> nn.Module:
        return self.networks["actor"]

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Actions in [-1, 1] for normalised observations: (B, obs_dim) -> (B, act_dim)."""
        if deterministic:
            return self.actor.deterministic(obs)
        out = self.actor(obs)
        return out[0] if isinstance(out, tuple) else out

    def state_dict(self) -> dict[str, Any]:
        """Optimizer states and counters (networks are saved separately, to safetensors)."""
        return {"optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.updates = int(state["updates"])

    def load_networks(self, tensors: dict[str, torch.Tensor], strict: bool = True) -> None:
        """Load "<network>.<param>" tensors (as written by ``save_checkpoint``)."""
        from smac_core.checkpoint import sub_state_dict

        for name, module in self.networks.items():
            sub = sub_state_dict(tensors, name)
            if not sub and not strict:
                continue
            try:
                module.load_state_dict(sub, strict=strict)
            except RuntimeError as exc:
                raise SmacError(f"cannot load network '{name}' of {self.name}: {exc}") from exc


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """theta_target <- (1 - tau) theta_target + tau theta_source."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.lerp_(s, tau)
