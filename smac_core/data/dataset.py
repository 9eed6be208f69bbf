"""The one in-memory form of an offline dataset: flat transition arrays plus episode boundaries.

Every on-disk format (Minari, D4RL hdf5, DAPG pickles, AWAC ``.npy`` demos) is read into a
``TransitionDataset``; every algorithm reads from one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smac_core.errors import SmacError

FLOAT_FIELDS = ("observations", "actions", "rewards", "next_observations")


@dataclass
class TransitionDataset:
    """N transitions, stored episode after episode.

    Shapes: ``observations`` and ``next_observations`` (N, obs_dim) float32, ``actions``
    (N, act_dim) float32, ``rewards`` (N,) float32, ``terminals`` (N,) bool (the MDP ended: no
    bootstrap), ``timeouts`` (N,) bool (the episode was cut by a time limit: bootstrap),
    ``episode_ends`` (N,) bool (last transition of an episode, for whatever reason; always True
    at N-1).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    episode_ends: np.ndarray
    env_id: str | None = None
    dataset_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.observations = np.asarray(self.observations, dtype=np.float32)
        self.actions = np.asarray(self.actions, dtype=np.float32)
        self.rewards = np.asarray(self.rewards, dtype=np.float32).reshape(-1)
        self.next_observations = np.asarray(self.next_observations, dtype=np.float32)
        self.terminals = np.asarray(self.terminals).astype(bool).reshape(-1)
        self.timeouts = np.asarray(self.timeouts).astype(bool).reshape(-1)
        self.episode_ends = np.asarray(self.episode_ends).astype(bool).reshape(-1)
        self.validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_episodes(
        cls,
        episodes: Sequence[dict[str, np.ndarray]],
        env_id: str | None = None,
        dataset_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> TransitionDataset:
        """Concatenate episodes, each a dict with ``observations`` (T+1, obs_dim) (the last one
        is the final next observation), ``actions`` (T, act_dim), ``rewards`` (T,),
        ``terminals`` (T,) and ``truncations`` (T,)."""
        if len(episodes) == 0:
            raise SmacError("a dataset needs at least one episode; got none")
        parts: dict[str, list[np.ndarray]] = {k: [] for k in (*FLOAT_FIELDS, "terminals",
                                                               "timeouts", "episode_ends")}
        for i, ep in enumerate(episodes):
            obs = np.asarray(ep["observations"])
            n = len(ep["actions"])
            if n == 0:
                raise SmacError(f"episode {i} has no transitions")
            if len(obs) != n + 1:
                raise SmacError(
                    f"episode {i}: {len(obs)} observations for {n} actions "
                    f"(expected {n + 1}: one more observation than actions)"
                )
            for key in ("rewards", "terminals", "truncations"):
                if len(ep[key]) != n:
                    raise SmacError(f"episode {i}: '{key}' has {len(ep[key])} entries, "
                                    f"'actions' has {n}")
            parts["observations"].append(obs[:-1])
            parts["next_observations"].append(obs[1:])
            parts["actions"].append(np.asarray(ep["actions"]))
            parts["rewards"].append(np.asarray(ep["rewards"]))
            parts["terminals"].append(np.asarray(ep["terminals"], dtype=bool))
            parts["timeouts"].append(np.asarray(ep["truncations"], dtype=bool))
            ends = np.zeros(n, dtype=bool)
            ends[-1] = True
            parts["episode_ends"].append(ends)
        return cls(**{k: np.concatenate(v) for k, v in parts.items()}, env_id=env_id,
                   dataset_id=dataset_id, metadata=dict(metadata or {}))

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``SmacError`` naming the problem if lengths, shapes or values are inconsistent."""
        n = len(self.observations)
        if n == 0:
            raise SmacError("dataset has no transitions")
        lengths = {name: len(getattr(self, name)) for name in
                   (*FLOAT_FIELDS, "terminals", "timeouts", "episode_ends")}
        if len(set(lengths.values())) != 1:
            detail = ", ".join(f"{k}={v}" for k, v in lengths.items())
            raise SmacError(f"dataset arrays have inconsistent lengths: {detail}")
        if self.observations.ndim != 2 or self.next_observations.shape != self.observations.shape:
            raise SmacError(
                f"observations {self.observations.shape} and next_observations "
                f"{self.next_observations.shape} must both be (N, obs_dim)"
            )
        if self.actions.ndim != 2:
            raise SmacError(f"actions must be (N, act_dim); got shape {self.actions.shape}")
        for name in FLOAT_FIELDS:
            values = getattr(self, name)
            bad = ~np.isfinite(values)
            if bad.any():
                first = int(np.argwhere(bad)[0][0])
                raise SmacError(
                    f"{name} contains {int(bad.sum())} NaN/Inf values "
                    f"(first at transition {first}, episode {self.episode_of(first)})"
                )
        if not self.episode_ends[-1]:
            raise SmacError("the last transition must end an episode (episode_ends[-1] is False)")
        if np.any(self.terminals & ~self.episode_ends):
            first = int(np.argwhere(self.terminals & ~self.episode_ends)[0][0])
            raise SmacError(f"transition {first} is terminal but does not end its episode")

    # ------------------------------------------------------------------ episodes
    @property
    def size(self) -> int:
        return len(self.observations)

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]

    @property
    def num_episodes(self) -> int:
        return int(self.episode_ends.sum())

    def episode_slices(self) -> list[slice]:
        """One slice per episode into the flat arrays, in order."""
        ends = np.flatnonzero(self.episode_ends) + 1
        starts = np.concatenate([[0], ends[:-1]])
        return [slice(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]

    def episode_of(self, index: int) -> int:
        """Index of the episode that transition ``index`` belongs to."""
        return int(np.searchsorted(np.flatnonzero(self.episode_ends), index))

    def episodes(self) -> Iterator[dict[str, np.ndarray]]:
        """Episodes in the layout of ``from_episodes`` (observations has T+1 rows)."""
        for sl in self.episode_slices():
            yield {
                "observations": np.concatenate(
                    [self.observations[sl], self.next_observations[sl][-1:]]),
                "actions": self.actions[sl],
                "rewards": self.rewards[sl],
                "terminals": self.terminals[sl],
                "truncations": self.timeouts[sl] | (self.episode_ends[sl] & ~self.terminals[sl]),
            }

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode, shape (num_episodes,)."""
        return np.array([float(self.rewards[sl].sum()) for sl in self.episode_slices()],
                        dtype=np.float64)

    def episode_lengths(self) -> np.ndarray:
        return np.array([sl.stop - sl.start for sl in self.episode_slices()], dtype=np.int64)

    def returns_to_go(self, gamma: float) -> np.ndarray:
        """Discounted Monte-Carlo return from each transition to its episode's end, shape (N,).

        G_t = r_t + gamma * G_{t+1} within an episode, G = r at the episode's last step (no
        bootstrap beyond the data, whether the episode terminated or was truncated).
        """
        from scipy.signal import lfilter

        if not 0.0 <= gamma <= 1.0:
            raise SmacError(f"gamma must be in [0, 1]; got {gamma}")
        rtg = np.empty(self.size, dtype=np.float64)
        for sl in self.episode_slices():
            # G reversed is an IIR filter: y[n] = x[n] + gamma * y[n-1]
            rtg[sl] = lfilter([1.0], [1.0, -gamma], self.rewards[sl][::-1].astype(np.float64))[::-1]
        return rtg.astype(np.float32)

    def summary(self) -> dict[str, Any]:
        """Counts and return statistics, as printed by ``python -m smac_core.data show``."""
        returns = self.episode_returns()
        lengths = self.episode_lengths()
        return {
            "dataset_id": self.dataset_id,
            "env_id": self.env_id,
            "episodes": self.num_episodes,
            "transitions": self.size,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "episode_length": {"min": int(lengths.min()), "mean": float(lengths.mean()),
                               "max": int(lengths.max())},
            "return": {"min": float(returns.min()), "mean": float(returns.mean()),
                       "std": float(returns.std()), "max": float(returns.max())},
            "terminals": int(self.terminals.sum()),
            "timeouts": int(self.timeouts.sum()),
            "reward_values": sorted({float(r) for r in np.unique(self.rewards)[:10]}),
            "action_range": [float(self.actions.min()), float(self.actions.max())],
        }
