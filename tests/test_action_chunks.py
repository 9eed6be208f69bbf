"""Action chunks (H > 1) for the flow agents: the replay buffer samples H consecutive transitions
of one episode (never across an episode end, a truncation included, nor across the ring's write
position), the n-step reward and TD target of a chunk equal a hand computation, the agents act
with a chunk's H actions open-loop (trainer and evaluation), and QAM trains with ``--set
horizon=H`` through the CLI."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from smac_core.algos import make_agent
from smac_core.data.buffers import ChunkBatch, MixedReplayBuffer, ReplayBuffer, chunk_return
from smac_core.data.dataset import TransitionDataset

GAMMA = 0.9


def tiny_dataset(lengths=(3, 1, 5, 2), terminal=(True, False, False, True)) -> TransitionDataset:
    """Episodes of the given lengths; observation i = [i, episode], reward i = i + 1 (so a
    chunk's content names its transitions); episode e ends terminal or truncated."""
    episodes, start = [], 0
    for e, (n, term) in enumerate(zip(lengths, terminal, strict=True)):
        index = np.arange(start, start + n + 1, dtype=np.float32)
        episodes.append({"observations": np.stack([index, np.full(n + 1, e)], axis=1),
                         "actions": np.stack([index[:-1] / 10, -index[:-1] / 10], axis=1),
                         "rewards": index[:-1] + 1.0,
                         "terminals": np.arange(n) == n - 1 if term else np.zeros(n, bool),
                         "truncations": np.zeros(n, bool) if term else np.arange(n) == n - 1})
        start += n
    return TransitionDataset.from_episodes(episodes)


def test_chunk_starts_never_cross_an_episode_end():
    buffer = ReplayBuffer.from_dataset(tiny_dataset(), "cpu", gamma=GAMMA)
    # episodes [0, 1, 2], [3], [4 .. 8], [9, 10]
    assert buffer.chunk_starts(1).tolist() == list(range(11))
    assert buffer.chunk_starts(2).tolist() == [0, 1, 4, 5, 6, 7, 9]
    assert buffer.chunk_starts(3).tolist() == [0, 4, 5, 6]
    assert buffer.chunk_starts(6).tolist() == []
    buffer.generator = torch.Generator().manual_seed(0)
    batch = buffer.sample_chunks(500, 3)
    assert isinstance(batch, ChunkBatch) and batch.actions.shape == (500, 6)
    assert batch.rewards.shape == (500, 3)
    first = batch.observations[:, 0].long()
    assert set(first.tolist()) == {0, 4, 5, 6}                 # every valid start is drawn
    # consecutive transitions of the start's episode: rewards i+1, i+2, i+3; actions i/10, ...
    steps = torch.arange(3)
    assert torch.equal(batch.rewards, (first[:, None] + steps + 1).float())
    np.testing.assert_allclose(batch.actions[:, 0::2], (first[:, None] + steps) / 10, atol=1e-6)
    assert torch.equal(batch.next_observations[:, 0], (first + 3).float())
    assert torch.equal(batch.next_observations[:, 1], batch.observations[:, 1])  # same episode
    # only the chunk [0, 1, 2] ends in its episode's terminal; [6, 7, 8] ends in a truncation
    assert torch.equal(batch.dones, (first == 0).float())


def test_n_step_return_of_a_chunk_equals_a_hand_computation():
    buffer = ReplayBuffer.from_dataset(tiny_dataset(), "cpu", gamma=GAMMA)
    buffer.generator = torch.Generator().manual_seed(1)
    batch = buffer.sample_chunks(64, 3)
    start = batch.observations[:, 0].long()
    expected = torch.tensor([(i + 1) + GAMMA * (i + 2) + GAMMA ** 2 * (i + 3)
                             for i in start.tolist()])
    torch.testing.assert_close(chunk_return(batch.rewards, GAMMA), expected)
    # the chunk starting at 4: 5 + 0.9 * 6 + 0.81 * 7 = 16.07
    row = int((start == 4).nonzero()[0])
    assert chunk_return(batch.rewards[row : row + 1], GAMMA).item() == pytest.approx(16.07)


def test_ring_buffer_chunks_stop_at_the_write_position_and_at_truncations():
    buffer = ReplayBuffer(6, 1, 1, "cpu", torch.Generator().manual_seed(0))
    # 9 transitions 0..8; an episode is truncated after transition 4 (not terminal)
    for i in range(9):
        buffer.add(np.array([i], np.float32), np.zeros(1, np.float32), float(i),
                   np.array([i + 1], np.float32), done=False, episode_end=i == 4)
    # stored (write order) 3, 4 | 5, 6, 7, 8: chunks of 2 start at 3, 5, 6, 7 (not at 4: the
    # truncation, not at 8: the newest transition is followed by the oldest)
    starts = buffer.chunk_starts(2)
    assert sorted(buffer.storage["observations"][starts, 0].tolist()) == [3.0, 5.0, 6.0, 7.0]
    chunks = buffer.sample_chunks(200, 2)
    assert torch.equal(chunks.rewards[:, 1], chunks.rewards[:, 0] + 1)  # consecutive, in order
    # resume: the episode ends are part of the buffer's state
    restored = ReplayBuffer(6, 1, 1, "cpu")
    restored.load_state_dict(buffer.state_dict())
    assert torch.equal(restored.chunk_starts(2), starts)


def test_mixed_buffer_samples_chunks_from_both_sources():
    offline = ReplayBuffer.from_dataset(tiny_dataset(), "cpu", gamma=GAMMA,
                                        generator=torch.Generator().manual_seed(0))
    online = ReplayBuffer(10, 2, 2, "cpu", offline.generator)
    mixed = MixedReplayBuffer(offline, online, 0.5)
    for i in range(2):  # fewer transitions than a chunk: all from the offline data
        online.add(np.array([100.0 + i, 9.0], np.float32), np.zeros(2, np.float32), 0.0,
                   np.zeros(2, np.float32), done=False)
    assert (mixed.sample_chunks(8, 3).observations[:, 0] < 100).all()
    online.add(np.array([102.0, 9.0], np.float32), np.zeros(2, np.float32), 0.0,
               np.zeros(2, np.float32), done=False)
    batch = mixed.sample_chunks(8, 3)
    assert (batch.observations[:, 0] == 100).sum() == 4 and batch.rewards.shape == (8, 3)


def test_qam_td_target_on_chunks_equals_a_hand_computation():
    """With a target critic that outputs c everywhere, the TD target of a chunk is
    sum_k gamma^k r_k + gamma^H (1 - d) c (the pessimistic mean - rho std of equal members is c)."""
    horizon, c = 3, 2.0
    agent = make_agent("qam", 2, 2, {"actor_hidden": [8], "critic_hidden": [8],
                                     "num_critics": 2, "batch_size": 4, "horizon": horizon,
                                     "gamma": GAMMA, "flow_steps": 2})
    assert agent.actor.chunk_dim == 6 and agent.act(torch.zeros(5, 2), False).shape == (5, 6)
    with torch.no_grad():
        last = agent.networks["critic_target"].layers[-1]
        last.weight.zero_()
        last.bias.fill_(c)
    batch = ChunkBatch(torch.zeros(4, 2), torch.zeros(4, 6), torch.arange(12.0).reshape(4, 3),
                       torch.ones(4, 2), torch.tensor([0.0, 1.0, 0.0, 0.0]), torch.zeros(4))
    metrics = agent.update(batch)
    rewards = torch.arange(12.0).reshape(4, 3)
    expected = [float(r[0] + GAMMA * r[1] + GAMMA ** 2 * r[2]) for r in rewards]
    expected = [value + (0.0 if i == 1 else GAMMA ** 3 * c) for i, value in enumerate(expected)]
    assert metrics["target_mean"] == pytest.approx(np.mean(expected), rel=1e-6)


def test_a_chunk_policy_is_asked_every_h_steps_and_played_open_loop():
    from analytic_env import HORIZON, register_analytic_env

    from smac_core.rollout import rollout

    class Chunks(torch.nn.Module):
        """A 'flow policy' with H = 2 whose chunk is (obs[0], 0.5 + obs[0]) per action dim,
        counting its calls."""

        noise_dim, horizon = 4, 2

        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))
            self.register_buffer("action_low", -torch.ones(2))
            self.calls = 0

        def forward(self, obs, noise):
            self.calls += 1
            first = (obs[..., :1] * self.scale).expand(*obs.shape[:-1], 2)
            return torch.cat([first, first + 0.5], dim=-1).clamp(-1, 1)

    policy = Chunks()
    env_id = register_analytic_env()
    returns, _, lengths = rollout(policy, [gym.make(env_id)], seed=0)
    assert lengths.tolist() == [HORIZON] and policy.calls == 3  # steps 0, 2, 4 of 5
    from analytic_env import OBSERVATIONS, TARGETS

    expected = 0.0
    for t in range(HORIZON):
        o = float(np.float32(OBSERVATIONS[t - t % 2, 0]))      # the chunk's observation
        a = np.clip(np.full(2, o + 0.5 * (t % 2)), -1, 1)
        expected -= float(np.sum((a - TARGETS[t]) ** 2))
    assert returns[0] == pytest.approx(expected, abs=1e-5)
