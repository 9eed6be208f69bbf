"""The agent's view of observations and actions: observation normalisation (``ObsNormalizer``)
and the map between the env's action box and the agents' [-1, 1] (``ActionScaler``).

Both are recorded in a checkpoint's metadata (``obs_mean``/``obs_std``,
``action_low``/``action_high``); ``to_metadata``/``from_metadata`` are the one place that
spells those keys for the trainer and dataset generation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from smac_core.errors import SmacError

if TYPE_CHECKING:
    from smac_core.data.dataset import TransitionDataset


@dataclass
class ObsNormalizer:
    """Per-dimension affine observation normalisation: (obs - mean) / std. Shapes (obs_dim,)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def identity(cls, obs_dim: int) -> ObsNormalizer:
        return cls(np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32))

    @classmethod
    def from_dataset(cls, dataset: TransitionDataset, eps: float = 1e-3) -> ObsNormalizer:
        return cls(dataset.observations.mean(0).astype(np.float32),
                   (dataset.observations.std(0) + eps).astype(np.float32))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return ((obs - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> ObsNormalizer:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))

    def to_metadata(self) -> dict[str, list[float]]:
        """The checkpoint metadata keys ``obs_mean`` and ``obs_std``."""
        return {"obs_mean": self.mean.tolist(), "obs_std": self.std.tolist()}

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> ObsNormalizer:
        """The normalisation a checkpoint's metadata records."""
        return cls(np.asarray(meta["obs_mean"], np.float32),
                   np.asarray(meta["obs_std"], np.float32))


@dataclass
class ActionScaler:
    """Maps between the env's action box [low, high] and the agents' [-1, 1]. Shapes (act_dim,)."""

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def from_env(cls, env: Any) -> ActionScaler:
        space = env.action_space
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise SmacError(f"the action space {space} is unbounded; agents need a finite box")
        return cls(np.asarray(space.low, np.float32), np.asarray(space.high, np.float32))

    def to_metadata(self) -> dict[str, list[float]]:
        """The checkpoint metadata keys ``action_low`` and ``action_high``."""
        return {"action_low": self.low.tolist(), "action_high": self.high.tolist()}

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> ActionScaler:
        """The action box a checkpoint's metadata records."""
        return cls(np.asarray(meta["action_low"], np.float32),
                   np.asarray(meta["action_high"], np.float32))

    def to_env(self, action: np.ndarray) -> np.ndarray:
        """[-1, 1] -> [low, high]."""
        return (self.low + (action + 1.0) * 0.5 * (self.high - self.low)).astype(np.float32)

    def to_agent(self, action: np.ndarray) -> np.ndarray:
        """[low, high] -> [-1, 1], clipped into the box (dataset actions may lie outside)."""
        scaled = 2.0 * (action - self.low) / (self.high - self.low) - 1.0
        return np.clip(scaled, -1.0, 1.0).astype(np.float32)
