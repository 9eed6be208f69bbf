"""Replay buffers in torch on a chosen device (observation normalisation:
``smac_core.data.normalization``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from smac_core.data.dataset import TransitionDataset
from smac_core.data.normalization import ObsNormalizer
from smac_core.errors import SmacError


@dataclass
class Batch:
    """A minibatch of B transitions on one device.

    ``observations``/``next_observations`` (B, obs_dim), ``actions`` (B, act_dim), ``rewards``
    (B,), ``dones`` (B,) 1.0 where the MDP terminated (no bootstrap), ``returns_to_go`` (B,)
    discounted Monte-Carlo return from the transition (NaN for online transitions whose episode
    has not been scored).
    """

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    dones: torch.Tensor
    returns_to_go: torch.Tensor


BUFFER_FIELDS = ("observations", "actions", "rewards", "next_observations", "dones",
                 "returns_to_go")


class ReplayBuffer:
    """Fixed-capacity ring buffer of transitions, stored as torch tensors on ``device``.

    Sampling is uniform with replacement, driven by the ``torch.Generator`` given at
    construction so that a seed fixes every batch.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: str | torch.device,
                 generator: torch.Generator | None = None) -> None:
        if capacity <= 0:
            raise SmacError(f"replay buffer capacity must be positive; got {capacity}")
        self.capacity = capacity
        self.device = torch.device(device)
        self.generator = generator
        self.size = 0
        self.position = 0
        shapes = {"observations": (obs_dim,), "actions": (act_dim,), "rewards": (),
                  "next_observations": (obs_dim,), "dones": (), "returns_to_go": ()}
        self.storage = {k: torch.zeros((capacity, *s), dtype=torch.float32, device=self.device)
                        for k, s in shapes.items()}

    @classmethod
    def from_dataset(cls, dataset: TransitionDataset, device: str | torch.device,
                     gamma: float = 0.99, capacity: int | None = None,
                     generator: torch.Generator | None = None,
                     normalizer: ObsNormalizer | None = None) -> ReplayBuffer:
        """A buffer holding the whole dataset (optionally normalised), with its returns-to-go."""
        norm = normalizer or ObsNormalizer.identity(dataset.obs_dim)
        buffer = cls(capacity or dataset.size, dataset.obs_dim, dataset.act_dim, device, generator)
        buffer.add_batch(
            observations=norm(dataset.observations), actions=dataset.actions,
            rewards=dataset.rewards, next_observations=norm(dataset.next_observations),
            dones=dataset.terminals.astype(np.float32),
            returns_to_go=dataset.returns_to_go(gamma))
        return buffer

    def add_batch(self, **arrays: np.ndarray) -> None:
        """Append n transitions given as arrays with a leading dimension n (ring overwrite)."""
        missing = set(BUFFER_FIELDS) - set(arrays) - {"returns_to_go"}
        if missing:
            raise SmacError(f"add_batch is missing fields: {sorted(missing)}")
        n = len(arrays["observations"])
        if "returns_to_go" not in arrays:
            arrays["returns_to_go"] = np.full(n, np.nan, np.float32)
        index = (self.position + torch.arange(n)) % self.capacity
        for key in BUFFER_FIELDS:
            value = torch.as_tensor(np.asarray(arrays[key], np.float32), device=self.device)
            shape = (n, *self.storage[key].shape[1:])
            self.storage[key][index.to(self.device)] = value.reshape(shape)
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray,
            done: bool) -> None:
        """Append one transition."""
        self.add_batch(observations=obs[None], actions=action[None],
                       rewards=np.array([reward]), next_observations=next_obs[None],
                       dones=np.array([float(done)]))

    def sample_indices(self, batch_size: int) -> torch.Tensor:
        if self.size == 0:
            raise SmacError("cannot sample from an empty replay buffer")
        return torch.randint(0, self.size, (batch_size,), generator=self.generator).to(self.device)

    def gather(self, indices: torch.Tensor) -> Batch:
        return Batch(**{k: self.storage[k][indices] for k in BUFFER_FIELDS})

    def sample(self, batch_size: int) -> Batch:
        return self.gather(self.sample_indices(batch_size))

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """Everything needed to restore the buffer exactly (only the filled part is stored)."""
        return {"size": self.size, "position": self.position,
                **{k: self.storage[k][: self.size].cpu() for k in BUFFER_FIELDS}}

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        self.size, self.position = int(state["size"]), int(state["position"])
        for k in BUFFER_FIELDS:
            self.storage[k][: self.size] = state[k].to(self.device)


class MixedReplayBuffer:
    """Samples a fraction ``offline_ratio`` of each batch from an offline buffer, the rest online.

    With ``offline_ratio`` = 0.5 this is the CalQL/RLPD "symmetric sampling" used when
    fine-tuning. Until the online buffer holds data, whole batches come from the offline one.
    """

    def __init__(self, offline: ReplayBuffer, online: ReplayBuffer, offline_ratio: float) -> None:
        if not 0.0 <= offline_ratio <= 1.0:
            raise SmacError(f"offline ratio must be in [0, 1]; got {offline_ratio}")
        self.offline, self.online, self.offline_ratio = offline, online, offline_ratio

    def add(self, *args, **kwargs) -> None:
        self.online.add(*args, **kwargs)

    def sample(self, batch_size: int) -> Batch:
        if self.online.size == 0:
            return self.offline.sample(batch_size)
        if self.offline.size == 0 or self.offline_ratio == 0.0:
            return self.online.sample(batch_size)
        n_offline = round(batch_size * self.offline_ratio)
        a, b = self.offline.sample(n_offline), self.online.sample(batch_size - n_offline)
        # shuffled, so that any slice of the batch (UTD > 1 splits it) mixes both sources
        order = torch.randperm(batch_size, generator=self.offline.generator).to(a.rewards.device)
        return Batch(**{k: torch.cat([getattr(a, k), getattr(b, k)])[order]
                        for k in BUFFER_FIELDS})
