"""The dataset score model: analytic scores on toy behaviour distributions, reward conditioning,
save/load, determinism and bad input."""

from __future__ import annotations

import math
import signal

import pytest
import torch
from torch.nn import functional as F
from torch.optim.optimizer import register_optimizer_step_post_hook

import smac_core.diffusion
from smac_core.checkpoint import CheckpointArtifact
from smac_core.diffusion import DatasetScore, DiffusionConfig, alpha_bars, train_score_model
from smac_core.errors import Interrupted, SmacError
from smac_core.nets import Dropout16Bit, dropout_16bit, train_linear

SIGMA_B = 0.1  # behaviour std; |f| <= 0.5, so actions stay 5 sigma_b inside [-1, 1] (no clipping)
# A small network and budget that fit the one-minute limit on one core (lr 1e-3 and an EMA
# horizon of 100 steps suit 1500 steps; the defaults are for real datasets).
TOY = DiffusionConfig(hidden_dim=64, num_blocks=2, dropout=0.0, steps=1500, lr=1e-3,
                      ema_decay=0.99, patience=0)


def behaviour_mean(s: torch.Tensor) -> torch.Tensor:
    """f(s): a smooth, non-linear map from 2-D states to 2-D actions in [-0.5, 0.5]^2."""
    return 0.5 * torch.stack([torch.sin(math.pi * s[:, 0]), torch.cos(math.pi * s[:, 1]) * s[:, 0]],
                             dim=-1)


def states(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, 2, generator=gen) * 2 - 1


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_score_at_smallest_noise_level_matches_analytic_gaussian_score(precision):
    # Behaviour a ~ N(f(s), sigma_b^2 I): the data score is -(a - f(s)) / sigma_b^2. The
    # trained eps-predictor minimises E||eps_hat - eps||^2, whose minimiser is
    # eps_hat(x, k) = -sigma_k grad_x log p_k(x) (Tweedie), p_k = law of
    # sqrt(abar_k) a + sigma_k eps. At k = 1, sigma_1 = 0.042 << sigma_b, p_1 is the data law
    # barely blurred, so -eps_hat(a, 1) / sigma_1 points along the data score; for Gaussian
    # data it is exactly -(a - sqrt(abar_1) f) / (abar_1 sigma_b^2 + sigma_1^2).
    gen = torch.Generator().manual_seed(0)
    s = states(20_000, gen)
    a = behaviour_mean(s) + SIGMA_B * torch.randn(20_000, 2, generator=gen)
    w = torch.rand(20_000, generator=gen)  # a return signal unrelated to the actions
    # bfloat16: the training step's matmuls in bfloat16 (autocast), the score in float32
    config = DiffusionConfig(**{**TOY.__dict__, "precision": precision})
    score = train_score_model(s, a, w, config, "cpu", torch.Generator().manual_seed(1))

    s_test = states(2000, gen)
    a_test = behaviour_mean(s_test) + SIGMA_B * torch.randn(2000, 2, generator=gen)
    estimate = score(s_test, a_test)
    data_score = -(a_test - behaviour_mean(s_test)) / SIGMA_B**2
    # 0.9 is the task's bar; the mean includes points next to the mode, where the score is
    # near zero and its direction hardest to get (this setup reaches about 0.97).
    assert F.cosine_similarity(estimate, data_score, dim=-1).mean() > 0.9
    # scale: the median ratio to the exact blurred score is about 1.0; a missing 1/sigma_1 would
    # make it 0.04, dividing by sigma_1^2 24, and the wrong sign fails the cosine above
    abar_1 = float(alpha_bars(TOY)[1])
    blurred = -(a_test - math.sqrt(abar_1) * behaviour_mean(s_test)) \
        / (abar_1 * SIGMA_B**2 + score.sigma_1**2)
    assert 0.8 < (estimate.norm(dim=-1) / blurred.norm(dim=-1)).median() < 1.25


@pytest.mark.slow
def test_held_out_criterion_stops_early_with_the_same_score_quality(capsys):
    # the toy of the test above, with room for 20,000 steps: the held-out criterion ends
    # training well before, and the score is as good as after TOY's fixed 1,500 steps
    gen = torch.Generator().manual_seed(0)
    s = states(20_000, gen)
    a = behaviour_mean(s) + SIGMA_B * torch.randn(20_000, 2, generator=gen)
    w = torch.rand(20_000, generator=gen)
    config = DiffusionConfig(**{**TOY.__dict__, "steps": 20_000, "eval_every": 250,
                                "patience": 3, "tolerance": 0.01})
    score = train_score_model(s, a, w, config, "cpu", torch.Generator().manual_seed(1))
    info = score.train_info
    assert info["stopped_by"] == "held-out criterion"
    assert info["steps_trained"] < 5000 and info["heldout_rows"] == 1000
    history = info["heldout_history"]
    assert [row[0] for row in history] == list(range(250, info["steps_trained"] + 1, 250))
    best = min(loss for _, loss in history)
    # stopped after 3 evaluations without a 1% gain on the loss of the last gain (>= the best)
    assert all(loss >= 0.99 * best for _, loss in history[-3:])
    assert history[-1][1] == info["heldout_loss"]
    out = capsys.readouterr().out
    assert f"[dataset score model] step {info['steps_trained']}/20000 | held-out loss" in out
    assert out.rstrip().endswith("| converged")

    s_test = states(2000, gen)
    a_test = behaviour_mean(s_test) + SIGMA_B * torch.randn(2000, 2, generator=gen)
    estimate = score(s_test, a_test)
    assert F.cosine_similarity(estimate, -(a_test - behaviour_mean(s_test)), dim=-1).mean() > 0.9


@pytest.mark.slow
def test_high_return_condition_points_towards_high_return_mode():
    # Two behaviour modes f(s) +- d, d = 1.5 sigma_b along the first action axis: the "+" mode
    # has returns w in [0.6, 1], the "-" mode w in [0, 0.4]. At w* (0.9 quantile, ~0.92) the
    # score must be that of N(f + d, sigma_b^2), at w = 0.1 that of N(f - d, sigma_b^2).
    gen = torch.Generator().manual_seed(0)
    n, d = 20_000, torch.tensor([1.5 * SIGMA_B, 0.0])
    s = states(n, gen)
    high = torch.rand(n, generator=gen) < 0.5
    mode = behaviour_mean(s) + torch.where(high[:, None], d, -d)
    a = mode + SIGMA_B * torch.randn(n, 2, generator=gen)
    w = torch.where(high, 0.6 + 0.4 * torch.rand(n, generator=gen),
                    0.4 * torch.rand(n, generator=gen))
    score = train_score_model(s, a, w, TOY, "cpu", torch.Generator().manual_seed(1))
    assert score.condition_value == pytest.approx(float(torch.quantile(w, 0.9)))

    # test points halfway between the modes, where the two conditional scores disagree
    s_test = states(2000, gen)
    a_test = behaviour_mean(s_test) + SIGMA_B * torch.randn(2000, 2, generator=gen)
    towards_high = -(a_test - behaviour_mean(s_test) - d) / SIGMA_B**2
    towards_low = -(a_test - behaviour_mean(s_test) + d) / SIGMA_B**2
    # the test can fail: the two analytic answers are far apart (mean cosine about -0.3)
    assert F.cosine_similarity(towards_high, towards_low, dim=-1).mean() < 0.5
    at_high_w, at_low_w = score(s_test, a_test), score(s_test, a_test, condition=0.1)
    assert F.cosine_similarity(at_high_w, towards_high, dim=-1).mean() > 0.9
    assert F.cosine_similarity(at_low_w, towards_low, dim=-1).mean() > 0.9
    assert (at_high_w @ d).mean() > 0 > (at_low_w @ d).mean()


def _tiny_model(seed: int = 1, **overrides) -> DatasetScore:
    gen = torch.Generator().manual_seed(0)
    s, a = torch.randn(256, 3, generator=gen), torch.rand(256, 2, generator=gen) * 2 - 1
    config = DiffusionConfig(**{"hidden_dim": 16, "num_blocks": 1, "embed_dim": 8, "steps": 5,
                                "batch_size": 32, **overrides})
    return train_score_model(s, a, torch.rand(256, generator=gen), config, "cpu",
                             torch.Generator().manual_seed(seed))


def test_save_load_round_trip_and_shapes(tmp_path):
    score = _tiny_model(condition_dropout=0.2, guidance=1.0)
    gen = torch.Generator().manual_seed(5)
    obs, actions = torch.randn(4, 7, 3, generator=gen), torch.rand(4, 7, 2, generator=gen)
    out = score(obs, actions)
    assert out.shape == (4, 7, 2) and not out.requires_grad
    torch.testing.assert_close(out, score(obs.reshape(28, 3), actions.reshape(28, 2))
                               .reshape(4, 7, 2))
    assert all(not p.requires_grad for p in score.network.parameters())

    score.save(CheckpointArtifact(tmp_path / "score"))
    loaded = DatasetScore.load(CheckpointArtifact(tmp_path / "score"))
    assert loaded.config == score.config and loaded.condition_value == score.condition_value
    assert loaded.sigma_1 == score.sigma_1
    torch.testing.assert_close(loaded(obs, actions), out, rtol=0, atol=0)

    with pytest.raises(SmacError, match="no such checkpoint"):
        DatasetScore.load(CheckpointArtifact(tmp_path / "missing"))
    with pytest.raises(SmacError, match=r"obs \(\.\.\., 3\) and actions \(\.\.\., 2\)"):
        score(obs[..., :2], actions)


def test_frozen_path_equals_the_training_forward(monkeypatch):
    # DatasetScore's path (embeddings folded into the input bias, oneDNN layers on CPU) against
    # the eval-mode forward, conditioned and unconditioned, at the default (IDQL) network size
    torch.manual_seed(0)
    network = smac_core.diffusion.NoisePredictor(11, 3, DiffusionConfig()).eval()
    with torch.no_grad():
        for param in network.parameters():  # move off the zero init of "no condition"
            param.add_(0.05 * torch.randn_like(param))
        obs, actions = torch.randn(256, 11), torch.rand(256, 3) * 2 - 1
        w, k = torch.full((256,), 0.9), torch.full((256,), 7)
        for onednn in (True, False):  # the fallback without oneDNN as well
            monkeypatch.setattr(torch.backends.mkldnn, "enabled", onednn)
            for condition, use in ((0.9, None), (None, torch.zeros(256, dtype=torch.bool))):
                torch.testing.assert_close(network.frozen(obs, actions, condition, 7),
                                           network(obs, actions, w, k, use), rtol=1e-5, atol=1e-5)


def test_train_linear_equals_a_linear_layer_in_value_and_gradients():
    # the score network's training layers (oneDNN GEMMs on CPU) against nn.Linear
    torch.manual_seed(0)
    layer = torch.nn.Linear(256, 1024)
    x = torch.randn(256, 256, requires_grad=True)
    upstream = torch.randn(256, 1024)
    results = []
    for forward in (train_linear, F.linear):
        out = forward(x, layer.weight, layer.bias)
        results.append((out, *torch.autograd.grad(out, (x, layer.weight, layer.bias), upstream)))
    for value, reference in zip(*results, strict=True):
        torch.testing.assert_close(value, reference, rtol=1e-5, atol=1e-4)


def test_dropout_16bit_drops_each_element_independently_with_probability_p():
    # 2^18 elements: the drop fraction's standard error is 0.0012 per quarter (one 16-bit slot of
    # each 64-bit draw), so 0.006 is 5 standard errors
    torch.manual_seed(0)
    p16 = round(0.1 * 65536) / 65536
    dropped = dropout_16bit(torch.ones(1024, 256), 0.1) == 0
    for slot in range(4):
        assert abs(dropped.flatten()[slot::4].float().mean() - p16) < 0.006, slot
    # neighbours (the same draw) and the same element of the next row drop independently
    flat = dropped.flatten()
    for a, b in ((flat[0::4], flat[1::4]), (flat[2::4], flat[3::4]), (dropped[:-1], dropped[1:])):
        assert abs((a & b).float().mean() - p16**2) < 0.002


def test_dropout_16bit_drops_where_the_16_bits_are_below_65536_p():
    # the reference: the same draws as int16 v, dropped where v + 2^15 < round(65536 p)
    torch.manual_seed(2)
    dropped = dropout_16bit(torch.ones(2**20), 0.3) == 0
    torch.manual_seed(2)
    words = torch.empty(2**18, dtype=torch.int64).random_(-2**63, None)
    assert torch.equal(dropped, words.view(torch.int16).int() + 32768 < round(0.3 * 65536))


def test_dropout_16bit_scales_what_it_keeps_and_its_gradient():
    torch.manual_seed(1)
    x = torch.randn(64, 96, requires_grad=True)
    out = dropout_16bit(x, 0.25)
    kept, scale = out != 0, 65536 / (65536 - 16384)
    torch.testing.assert_close(out[kept], x[kept] * scale, rtol=0, atol=0)
    out.backward(torch.ones_like(out))
    torch.testing.assert_close(x.grad, kept.float() * scale, rtol=0, atol=0)
    assert dropout_16bit(x.detach().bfloat16(), 0.25).dtype == torch.bfloat16
    torch.manual_seed(1)  # the masks come from torch's RNG: the same seed, the same masks
    assert torch.equal(dropout_16bit(torch.randn(64, 96), 0.25), out.detach())


def test_dropout_16bit_module_edge_cases():
    x = torch.randn(8, 16)
    assert torch.equal(Dropout16Bit(0.5).eval()(x), x)
    assert torch.equal(Dropout16Bit(0.0)(x), x)
    assert torch.equal(Dropout16Bit(1.0)(x), torch.zeros_like(x))


def test_score_uses_the_moving_average_of_the_trained_weights(monkeypatch):
    # theta_ema = theta_1 after the first step, then decay theta_ema + (1 - decay) theta_t
    trained = []

    def record(optimizer, args, kwargs):
        trained.append([p.detach().clone() for p in optimizer.param_groups[0]["params"]])

    handle = register_optimizer_step_post_hook(record)
    try:
        score = _tiny_model(steps=4, ema_decay=0.8)
    finally:
        handle.remove()
    expected = trained[0]
    for weights in trained[1:]:
        expected = [0.8 * e + 0.2 * w for e, w in zip(expected, weights, strict=True)]
    for ema, reference in zip(score.network.parameters(), expected, strict=True):
        torch.testing.assert_close(ema, reference, rtol=1e-6, atol=1e-7)


def test_training_is_deterministic_given_the_generator():
    obs, actions = torch.randn(10, 3), torch.rand(10, 2)
    torch.testing.assert_close(_tiny_model(seed=1)(obs, actions), _tiny_model(seed=1)(obs, actions),
                               rtol=0, atol=0)
    assert not torch.equal(_tiny_model(seed=1)(obs, actions), _tiny_model(seed=2)(obs, actions))


def test_criterion_stops_after_patience_evaluations_without_a_gain():
    # tolerance 0.9: only a 90% drop counts as a gain, so evaluations 2 and 3 are stale and
    # training stops at the third one (step 15 of at most 40)
    score = _tiny_model(eval_every=5, steps=40, patience=2, tolerance=0.9)
    info = score.train_info
    assert info["stopped_by"] == "held-out criterion" and info["steps_trained"] == 15
    assert [row[0] for row in info["heldout_history"]] == [5, 10, 15]
    assert info["heldout_rows"] == 12  # 5% of 256
    unlimited = _tiny_model(eval_every=5, steps=40, patience=0).train_info
    assert unlimited["stopped_by"] == "steps" and unlimited["steps_trained"] == 40
    # the same losses up to step 15: evaluating never draws from the training's RNG
    assert unlimited["heldout_history"][:3] == info["heldout_history"]


def test_interrupted_training_resumes_exactly_with_its_held_out_record(tmp_path, monkeypatch):
    gen = torch.Generator().manual_seed(0)
    s, a, w = torch.randn(256, 3, generator=gen), torch.rand(256, 2, generator=gen) * 2 - 1, \
        torch.rand(256, generator=gen)
    config = DiffusionConfig(hidden_dim=16, num_blocks=1, embed_dim=8, steps=30, batch_size=32,
                             eval_every=4, patience=0)
    train = lambda: train_score_model(s, a, w, config, "cpu", torch.Generator().manual_seed(1),  # noqa: E731
                                      checkpoint=CheckpointArtifact(tmp_path / "partial"))
    straight = train()
    forward, calls = smac_core.diffusion.NoisePredictor.forward, []

    def forward_then_signal(self, *args):
        calls.append(1)
        if len(calls) == 13:  # the 11th training step (steps 4 and 8 evaluated on the way)
            signal.raise_signal(signal.SIGTERM)
        return forward(self, *args)

    with monkeypatch.context() as patch:
        patch.setattr(smac_core.diffusion.NoisePredictor, "forward", forward_then_signal)
        with pytest.raises(Interrupted, match="at step 11 of 30"):
            train()
    resumed = train()
    assert resumed.train_info == straight.train_info
    obs, actions = torch.randn(10, 3), torch.rand(10, 2)
    torch.testing.assert_close(resumed(obs, actions), straight(obs, actions), rtol=0, atol=0)
    assert not (tmp_path / "partial").exists()


def test_bad_input_is_rejected():
    s, a, w = torch.zeros(8, 3), torch.zeros(8, 2), torch.zeros(8)
    config = DiffusionConfig(steps=1)
    with pytest.raises(SmacError, match=r"actions must be in \[-1, 1\]"):
        train_score_model(s, a + 2, w, config, "cpu", None)
    with pytest.raises(SmacError, match="same non-zero length"):
        train_score_model(s, a, w[:5], config, "cpu", None)
    with pytest.raises(SmacError, match="observations contain NaN"):
        train_score_model(s.clone().fill_(math.nan), a, w, config, "cpu", None)
    with pytest.raises(SmacError, match="schedule 'linear' is not one of"):
        train_score_model(s, a, w, DiffusionConfig(schedule="linear"), "cpu", None)
    with pytest.raises(SmacError, match="condition_dropout > 0"):
        train_score_model(s, a, w, DiffusionConfig(guidance=1.0), "cpu", None)
    with pytest.raises(SmacError, match="precision 'float16' is not one of"):
        train_score_model(s, a, w, DiffusionConfig(precision="float16"), "cpu", None)
    with pytest.raises(SmacError, match=r"ema_decay must be in \[0, 1\)"):
        train_score_model(s, a, w, DiffusionConfig(ema_decay=1.0), "cpu", None)
    with pytest.raises(SmacError, match=r"holdout_fraction in \[0, 0.5\]"):
        train_score_model(s, a, w, DiffusionConfig(holdout_fraction=0.9), "cpu", None)
    with pytest.raises(SmacError, match=r"unknown DiffusionConfig option\(s\) \['T'\]"):
        DiffusionConfig.from_dict({"T": 5})


def test_noise_schedules():
    for schedule, sigma_1 in (("cosine", 0.042), ("vp", 0.063)):
        abar = alpha_bars(DiffusionConfig(schedule=schedule, num_noise_levels=50))
        assert abar.shape == (51,) and abar[0] == 1 and (abar.diff() < 0).all()
        assert math.sqrt(1 - abar[1]) == pytest.approx(sigma_1, abs=1e-3)
        assert abar[-1] < 0.01  # the last level is (almost) pure noise
    # IDQL's setting: 5 levels of the vp schedule, sigma_1 = 0.44
    assert math.sqrt(1 - alpha_bars(DiffusionConfig(schedule="vp", num_noise_levels=5))[1]) \
        == pytest.approx(0.443, abs=1e-3)
