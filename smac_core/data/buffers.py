"""Replay buffers in torch on a chosen device (observation normalisation:
``smac_core.data.normalization``).

Action chunks (``sample_chunks``, for flow agents with ``horizon`` H > 1): H consecutive
transitions of one episode, never across an episode end (a terminal, a truncation or the end of a
dataset episode, stored per transition as ``episode_ends``) nor across the ring buffer's write
position; a start is drawn uniformly among the valid ones. Episodes shorter than H give no
chunk. ``chunk_return`` is the chunk's discounted reward sum_k gamma^k r_k; the TD target then
bootstraps with gamma^H from the last transition's next observation unless it is terminal.
"""

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


@dataclass
class ChunkBatch:
    """A minibatch of B chunks of H consecutive transitions of one episode each.

    ``observations`` (B, obs_dim) at the chunk's first step, ``actions`` (B, H * act_dim) the H
    actions flattened in order, ``rewards`` (B, H) the H rewards, ``next_observations``
    (B, obs_dim) after the last step, ``dones`` (B,) 1.0 where the last step terminated (only it
    can: no chunk crosses an episode end), ``returns_to_go`` (B,) from the first step.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    dones: torch.Tensor
    returns_to_go: torch.Tensor


def chunk_return(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """The n-step reward of chunks: sum_k gamma^k r_k over the last axis, (B, H) -> (B,)."""
    discounts = gamma ** torch.arange(rewards.shape[-1], dtype=rewards.dtype,
                                      device=rewards.device)
    return (rewards * discounts).sum(dim=-1)


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
        # 1.0 on an episode's last transition (terminal, truncation, end of a dataset episode)
        self.storage["episode_ends"] = torch.zeros(capacity, dtype=torch.float32,
                                                   device=self.device)
        self._chunk_cache: tuple[int, torch.Tensor] | None = None  # (horizon, chunk_starts)

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
            returns_to_go=dataset.returns_to_go(gamma), episode_ends=dataset.episode_ends)
        return buffer

    def add_batch(self, **arrays: np.ndarray) -> None:
        """Append n transitions given as arrays with a leading dimension n (ring overwrite);
        ``episode_ends`` (default: ``dones``) marks each episode's last transition."""
        missing = set(BUFFER_FIELDS) - set(arrays) - {"returns_to_go"}
        if missing:
            raise SmacError(f"add_batch is missing fields: {sorted(missing)}")
        n = len(arrays["observations"])
        if "returns_to_go" not in arrays:
            arrays["returns_to_go"] = np.full(n, np.nan, np.float32)
        self._chunk_cache = None
        index = (self.position + torch.arange(n)) % self.capacity
        ends = arrays.get("episode_ends", arrays["dones"])
        self.storage["episode_ends"][index.to(self.device)] = torch.as_tensor(
            np.asarray(ends, np.float32), device=self.device).reshape(n)
        for key in BUFFER_FIELDS:
            value = torch.as_tensor(np.asarray(arrays[key], np.float32), device=self.device)
            shape = (n, *self.storage[key].shape[1:])
            self.storage[key][index.to(self.device)] = value.reshape(shape)
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray,
            done: bool, episode_end: bool | None = None) -> None:
        """Append one transition; ``episode_end`` (default ``done``): the episode ends here."""
        self.add_batch(observations=obs[None], actions=action[None],
                       rewards=np.array([reward]), next_observations=next_obs[None],
                       dones=np.array([float(done)]),
                       episode_ends=np.array([float(done if episode_end is None else episode_end)]))

    def sample_indices(self, batch_size: int) -> torch.Tensor:
        if self.size == 0:
            raise SmacError("cannot sample from an empty replay buffer")
        return torch.randint(0, self.size, (batch_size,), generator=self.generator).to(self.device)

    def gather(self, indices: torch.Tensor) -> Batch:
        return Batch(**{k: self.storage[k][indices] for k in BUFFER_FIELDS})

    def sample(self, batch_size: int) -> Batch:
        return self.gather(self.sample_indices(batch_size))

    def chunk_starts(self, horizon: int) -> torch.Tensor:
        """Physical indices i whose chunk i, i+1, ..., i+H-1 (mod capacity) is stored, in write
        order, with no episode end before its last transition. (K,) int64, possibly empty;
        cached until the buffer changes."""
        if self._chunk_cache is not None and self._chunk_cache[0] == horizon:
            return self._chunk_cache[1]
        starts = self._chunk_starts(horizon)
        self._chunk_cache = (horizon, starts)
        return starts

    def _chunk_starts(self, horizon: int) -> torch.Tensor:
        offset = self.position if self.size == self.capacity else 0
        order = (offset + torch.arange(self.size, device=self.device)) % self.capacity
        ends = self.storage["episode_ends"][order]
        count = self.size - horizon + 1
        if count <= 0:
            return torch.zeros(0, dtype=torch.long, device=self.device)
        # ends among the first H-1 transitions of the chunk starting at logical j
        before = torch.cat([torch.zeros(1, dtype=torch.long, device=self.device),
                            torch.cumsum(ends.long(), 0)])
        crossing = before[horizon - 1 : horizon - 1 + count] - before[:count]
        return order[:count][crossing == 0]

    def sample_chunks(self, batch_size: int, horizon: int) -> ChunkBatch:
        """B chunks of H consecutive transitions of one episode, starts uniform over the valid
        ones (``chunk_starts``), drawn with the buffer's generator."""
        starts = self.chunk_starts(horizon)
        if len(starts) == 0:
            raise SmacError(f"no {horizon} consecutive transitions of one episode in the replay "
                            f"buffer ({self.size} transitions): chunks need episodes of at "
                            f"least horizon = {horizon} steps")
        pick = torch.randint(0, len(starts), (batch_size,), generator=self.generator)
        steps = torch.arange(horizon, device=self.device)
        index = (starts[pick.to(self.device)][:, None] + steps) % self.capacity   # (B, H)
        first, last = index[:, 0], index[:, -1]
        actions = self.storage["actions"][index]                                   # (B, H, A)
        return ChunkBatch(self.storage["observations"][first], actions.reshape(batch_size, -1),
                          self.storage["rewards"][index], self.storage["next_observations"][last],
                          self.storage["dones"][last], self.storage["returns_to_go"][first])

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        """Everything needed to restore the buffer exactly (only the filled part is stored)."""
        return {"size": self.size, "position": self.position,
                "episode_ends": self.storage["episode_ends"][: self.size].cpu(),
                **{k: self.storage[k][: self.size].cpu() for k in BUFFER_FIELDS}}

    def load_state_dict(self, state: dict[str, torch.Tensor | int]) -> None:
        """Restore; a state saved before ``episode_ends`` was stored takes its ``dones`` (its
        truncations are then unknown: chunks may run across them)."""
        self.size, self.position = int(state["size"]), int(state["position"])
        self._chunk_cache = None
        for k in BUFFER_FIELDS:
            self.storage[k][: self.size] = state[k].to(self.device)
        ends = state.get("episode_ends", state["dones"])
        self.storage["episode_ends"][: self.size] = ends.to(self.device)


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
        return self._mix(batch_size, self.online.size > 0, self.offline.size > 0,
                         lambda buffer, n: buffer.sample(n), Batch)

    def sample_chunks(self, batch_size: int, horizon: int) -> ChunkBatch:
        """``ReplayBuffer.sample_chunks`` from both buffers at the same ratio (the whole batch
        from the offline one while the online one holds no complete chunk)."""
        return self._mix(batch_size, len(self.online.chunk_starts(horizon)) > 0,
                         len(self.offline.chunk_starts(horizon)) > 0,
                         lambda buffer, n: buffer.sample_chunks(n, horizon), ChunkBatch)

    def _mix(self, batch_size: int, online_ready: bool, offline_ready: bool, draw, kind):
        if not online_ready:
            return draw(self.offline, batch_size)
        if not offline_ready or self.offline_ratio == 0.0:
            return draw(self.online, batch_size)
        n_offline = round(batch_size * self.offline_ratio)
        a, b = draw(self.offline, n_offline), draw(self.online, batch_size - n_offline)
        # shuffled, so that any slice of the batch (UTD > 1 splits it) mixes both sources
        order = torch.randperm(batch_size, generator=self.offline.generator).to(a.rewards.device)
        return kind(**{k: torch.cat([getattr(a, k), getattr(b, k)])[order]
                       for k in BUFFER_FIELDS})
