"""D4RL-style dataset generation, at a tiny scale, into a private Minari store."""

from __future__ import annotations

import json

import minari
import numpy as np
import pytest

from smac_core import tasks
from smac_core.checkpoint import load_checkpoint, load_train_state
from smac_core.data import load_dataset
from smac_core.data.__main__ import main
from smac_core.generate import ROLLOUT_STREAMS, generator_dir, rollout
from smac_core.rollout import derived_seed

TINY = ["--samples", "300", "--medium-max-steps", "400", "--expert-steps", "400",
        "--eval-every", "100", "--eval-episodes", "1", "--start-steps", "100",
        "--set", "actor_hidden=[32,32]", "--set", "critic_hidden=[32,32]",
        "--set", "batch_size=32"]
HOPPER = tasks.TASKS["hopper-medium-replay"]


def test_generates_every_variant_with_the_d4rl_layout(minari_root):
    # medium fraction 0: the first evaluation after step 0 counts as "medium" (step 100), so the
    # protocol runs end to end in seconds (any hopper episode returns > 0, 1 per step alive)
    assert main(["generate", "hopper", "--variant", "all", "--medium-fraction", "0",
                 *TINY]) == 0
    ids = [f"local/hopper/{v}-v0" for v in
           ("random", "medium", "medium-replay", "expert", "medium-expert")]
    assert set(ids) <= set(minari.list_local_datasets())
    data = {i.split("/")[-1].removesuffix("-v0"): load_dataset(i) for i in ids}
    for name, d in data.items():
        assert (d.obs_dim, d.act_dim, d.env_id) == (11, 3, "hopper-medium-replay"), name
        assert d.metadata["ref_min_score"] == HOPPER.ref_min_score
        assert d.metadata["ref_max_score"] == HOPPER.ref_max_score
        stored = minari.load_dataset(f"local/hopper/{name}-v0").storage.metadata
        assert (stored["ref_min_score"], stored["ref_max_score"]) == (HOPPER.ref_min_score,
                                                                      HOPPER.ref_max_score)
        assert np.all(np.abs(d.actions) <= 1.0)  # Hopper's action box is [-1, 1]^3
        # D4RL layout: within an episode each transition starts where the last one ended
        inner = ~d.episode_ends[:-1]
        np.testing.assert_array_equal(d.next_observations[:-1][inner], d.observations[1:][inner])
    for name in ("random", "medium", "expert"):
        assert data[name].size == 300
        assert data[name].timeouts[-1]  # the last episode is cut at --samples

    run_dir = generator_dir("hopper", 0)
    record = json.loads((run_dir / "generation.json").read_text())
    assert record["medium_step"] == 100
    assert load_checkpoint(run_dir / "checkpoints" / "medium").metadata["step"] == 100
    assert load_checkpoint(run_dir).metadata["step"] == 400  # the expert policy: final

    # medium-replay is exactly SAC's replay buffer up to the medium point
    buffer = load_train_state(run_dir)["online_buffer"]
    replay = data["medium-replay"]
    assert replay.size == 100
    np.testing.assert_array_equal(replay.observations, buffer["observations"][:100].numpy())
    np.testing.assert_array_equal(replay.rewards, buffer["rewards"][:100].numpy())
    np.testing.assert_array_equal(replay.terminals, buffer["dones"][:100].numpy() > 0.5)
    np.testing.assert_allclose(replay.actions, buffer["actions"][:100].numpy(), atol=1e-6)

    # medium-expert is medium followed by expert
    for key in ("observations", "actions", "rewards", "terminals", "episode_ends"):
        np.testing.assert_array_equal(getattr(data["medium-expert"], key), np.concatenate(
            [getattr(data["medium"], key), getattr(data["expert"], key)]))
    assert data["medium"].metadata["medium_step"] == 100


def test_random_variant_is_uniform_actions_and_deterministic(minari_root, tmp_path):
    assert main(["generate", "hopper-random", "--samples", "2000", "--seed", "3"]) == 0
    first = load_dataset("local/hopper/random-v0")
    assert main(["generate", "hopper-random", "--samples", "2000", "--seed", "3",
                 "--overwrite"]) == 0
    again = load_dataset("local/hopper/random-v0")
    np.testing.assert_array_equal(first.observations, again.observations)
    np.testing.assert_array_equal(first.actions, again.actions)
    assert not (generator_dir("hopper", 3) / "checkpoints").exists()  # no SAC for random data

    # uniform on [-1, 1]: mean 0, variance 1/3, per dimension (2000 draws: s.e. 0.013 / 0.006)
    np.testing.assert_allclose(first.actions.mean(0), 0.0, atol=0.06)
    np.testing.assert_allclose(first.actions.var(0), 1 / 3, atol=0.03)
    # returns match independent uniform-action rollouts (another seed) within 4 standard errors
    rng = np.random.default_rng(123)
    reference = rollout(HOPPER, lambda _: rng.uniform(-1, 1, 3).astype(np.float32), 2000,
                        seed=123, stream=ROLLOUT_STREAMS["random"][0]).episode_returns()
    returns = first.episode_returns()[:-1]  # the last episode is cut short
    se = np.sqrt(returns.var() / len(returns) + reference.var() / len(reference))
    assert abs(returns.mean() - reference.mean()) < 4 * se


def test_rollout_episode_seeds_are_derived_from_the_seed():
    data = rollout(HOPPER, lambda _: np.zeros(3, np.float32), 50, seed=7, stream=11)
    env = tasks.make_env(HOPPER.name)
    obs, _ = env.reset(seed=derived_seed(7, 11, 0))
    np.testing.assert_array_equal(data.observations[0], obs.astype(np.float32))


@pytest.mark.parametrize("target", ["ant", "hopper-super-expert"])
def test_unknown_target_is_refused(minari_root, capsys, target):
    assert main(["generate", target]) == 2
    assert "valid: hopper, walker2d" in capsys.readouterr().err


def test_data_generate_is_an_alias_of_the_generate_command(capsys):
    from smac_core import generate

    with pytest.raises(SystemExit):
        generate.main(["--help"])
    direct = capsys.readouterr().out
    assert main(["generate", "--help"]) == 0  # python -m smac_core.data generate --help
    assert capsys.readouterr().out == direct
    assert direct.startswith("usage: python -m smac_core.generate")
    parser = generate.build_parser()
    assert all(a.help for a in parser._actions)
    assert next(a for a in parser._actions if a.dest == "device").default == "auto"
    assert generate.main(["ant"]) == 2
    assert "cannot generate 'ant'" in capsys.readouterr().err
