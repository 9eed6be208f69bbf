"""The dataset core and replay buffers: returns-to-go by hand, uniform sampling, the offline /
online mixing ratio, exact state round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smac_core.data.buffers import MixedReplayBuffer, ObsNormalizer, ReplayBuffer
from smac_core.data.dataset import TransitionDataset


def two_episode_dataset() -> TransitionDataset:
    """Episode A: rewards 1, 2, 3 ending in a terminal; episode B: rewards 4, 5, truncated."""
    return TransitionDataset.from_episodes([
        {"observations": np.arange(4.0)[:, None], "actions": np.zeros((3, 1)),
         "rewards": np.array([1.0, 2.0, 3.0]), "terminals": np.array([False, False, True]),
         "truncations": np.zeros(3, bool)},
        {"observations": 10 + np.arange(3.0)[:, None], "actions": np.ones((2, 1)),
         "rewards": np.array([4.0, 5.0]), "terminals": np.zeros(2, bool),
         "truncations": np.array([False, True])},
    ])


def test_returns_to_go_by_hand():
    # gamma = 0.5. A: G2 = 3, G1 = 2 + 0.5 * 3 = 3.5, G0 = 1 + 0.5 * 3.5 = 2.75.
    #              B: G1 = 5, G0 = 4 + 0.5 * 5 = 6.5 (nothing flows from B into A).
    dataset = two_episode_dataset()
    np.testing.assert_allclose(dataset.returns_to_go(0.5), [2.75, 3.5, 3.0, 6.5, 5.0])
    np.testing.assert_allclose(dataset.returns_to_go(1.0), [6.0, 5.0, 3.0, 9.0, 5.0])
    np.testing.assert_allclose(dataset.episode_returns(), [6.0, 9.0])
    np.testing.assert_array_equal(dataset.next_observations[:, 0], [1, 2, 3, 11, 12])


def test_buffer_from_dataset_carries_dones_and_returns_to_go():
    buffer = ReplayBuffer.from_dataset(two_episode_dataset(), "cpu", gamma=0.5)
    batch = buffer.gather(torch.arange(5))
    np.testing.assert_allclose(batch.returns_to_go.numpy(), [2.75, 3.5, 3.0, 6.5, 5.0])
    np.testing.assert_array_equal(batch.dones.numpy(), [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(batch.observations[:, 0].numpy(), [0, 1, 2, 10, 11])


def marked_buffer(size: int, marker: float, seed: int) -> ReplayBuffer:
    """A buffer whose transition i has observation i and reward ``marker``."""
    buffer = ReplayBuffer(size, 1, 1, "cpu", torch.Generator().manual_seed(seed))
    buffer.add_batch(observations=np.arange(size, dtype=np.float32)[:, None],
                     actions=np.zeros((size, 1)), rewards=np.full(size, marker),
                     next_observations=np.zeros((size, 1)), dones=np.zeros(size))
    return buffer


def test_uniform_sampling():
    buffer = marked_buffer(10, 0.0, seed=0)
    draws = 50_000
    counts = np.bincount(buffer.sample(draws).observations[:, 0].long().numpy(), minlength=10)
    # each count ~ Binomial(50000, 0.1): sd = sqrt(50000 * 0.1 * 0.9) = 67; 5 sd covers
    # all 10 counts of a correct sampler except with probability ~1e-5
    assert np.all(np.abs(counts - draws / 10) < 5 * 67)


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.9])
def test_mixing_ratio(ratio):
    mixed = MixedReplayBuffer(marked_buffer(100, 0.0, seed=1), marked_buffer(50, 1.0, seed=2),
                              offline_ratio=ratio)
    batches = [mixed.sample(256) for _ in range(20)]
    offline_fraction = np.mean([(b.rewards == 0).float().mean().item() for b in batches])
    # the split is deterministic, round(256 * ratio) offline samples per batch, so the only
    # tolerance is the rounding: at most 0.5 / 256
    assert abs(offline_fraction - ratio) <= 0.5 / 256
    assert all(b.observations.shape == (256, 1) for b in batches)


def test_mixed_batches_are_shuffled_so_every_slice_mixes_both_sources():
    mixed = MixedReplayBuffer(marked_buffer(100, 0.0, seed=1), marked_buffer(50, 1.0, seed=2),
                              offline_ratio=0.5)
    batch = mixed.sample(256)
    # SAC with utd=2 trains on the two halves; each must hold offline and online samples
    # (P(a half of a random permutation holds one source only) ~ 2 / C(256, 128): zero)
    for half in batch.rewards.split(128):
        assert 0.0 < half.mean().item() < 1.0


def test_mixing_falls_back_to_offline_while_online_is_empty():
    offline = marked_buffer(100, 0.0, seed=1)
    online = ReplayBuffer(10, 1, 1, "cpu", torch.Generator().manual_seed(2))
    mixed = MixedReplayBuffer(offline, online, offline_ratio=0.5)
    assert (mixed.sample(64).rewards == 0).all()
    mixed.add(np.ones(1), np.zeros(1), 1.0, np.ones(1), False)
    assert (mixed.sample(64).rewards == 1).sum() == 32


def test_ring_buffer_keeps_the_newest_transitions():
    buffer = marked_buffer(5, 0.0, seed=0)
    for value in (5.0, 6.0):
        buffer.add(np.array([value]), np.zeros(1), 0.0, np.zeros(1), False)
    assert buffer.size == 5
    assert sorted(buffer.storage["observations"][:, 0].tolist()) == [2, 3, 4, 5, 6]
    assert torch.isnan(buffer.storage["returns_to_go"][:2]).all()


def test_state_round_trip_continues_identically():
    buffer = marked_buffer(20, 0.0, seed=3)
    buffer.sample(7)
    state = buffer.state_dict()
    generator_state = buffer.generator.get_state()
    restored = ReplayBuffer(20, 1, 1, "cpu", torch.Generator())
    restored.load_state_dict(state)
    restored.generator.set_state(generator_state)
    for key in state:
        if isinstance(state[key], torch.Tensor):
            torch.testing.assert_close(restored.storage[key], buffer.storage[key], equal_nan=True)
    expected, actual = buffer.sample(32), restored.sample(32)
    torch.testing.assert_close(actual.observations, expected.observations)
    assert (restored.size, restored.position) == (buffer.size, buffer.position)


def test_obs_normalizer_round_trip():
    dataset = two_episode_dataset()
    normalizer = ObsNormalizer.from_dataset(dataset)
    normalised = normalizer(dataset.observations)
    np.testing.assert_allclose(normalised.mean(0), 0.0, atol=1e-6)
    again = ObsNormalizer.from_dict(normalizer.to_dict())
    np.testing.assert_array_equal(again(dataset.observations), normalised)
