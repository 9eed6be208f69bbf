"""Relabelling a dataset with the binary reward of its Adroit task (``smac_core.binary_reward``).

The reward of a transition is judged on its next observation, with the same success test that
rewards an online step, so offline data and online steps of a binary task carry the same reward.
"""

from __future__ import annotations

from smac_core.binary_reward import (  # noqa: F401 (BinaryReward: see below)
    BinaryReward,
    binary_reward,
    success_function,
)
from smac_core.data.dataset import TransitionDataset

# ``BinaryReward`` is importable from here because Minari datasets written before it moved to the
# task layer record its entry point as "smac_core.data.rewards:BinaryReward" in their env spec;
# ``recover_environment`` imports it from that path.


def relabel_binary(dataset: TransitionDataset, env_id: str) -> TransitionDataset:
    """A copy of ``dataset`` whose rewards are the binary reward of ``env_id``'s task.

    A last transition whose next observation is a placeholder (see ``formats``) is judged on its
    own observation.
    """
    success = success_function(env_id)(dataset.next_observations)
    return TransitionDataset(
        observations=dataset.observations, actions=dataset.actions,
        rewards=binary_reward(success), next_observations=dataset.next_observations,
        terminals=dataset.terminals, timeouts=dataset.timeouts, episode_ends=dataset.episode_ends,
        env_id=env_id, dataset_id=dataset.dataset_id,
        metadata={**dataset.metadata, "reward": "binary"})
