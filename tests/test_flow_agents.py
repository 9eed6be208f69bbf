"""Flow policies, adjoint matching (QAM) and the trust region (TRQAM): known-answer tests."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from smac_core.algos.flow import (
    TrustRegionDual,
    VelocityField,
    adjoint_matching_loss,
    adjoint_path,
    euler_sample,
    flow_matching_loss,
    flow_matching_noise,
    memoryless_schedule,
    path_kl,
)
from smac_core.nets import MLP


def gaussian_velocity(mean: float, std: float):
    """The exact flow-matching velocity from N(0, 1) to N(mean, std^2) (per dimension): along
    x_t = (1 - t) x_0 + t x_1 the marginal is N(m, s^2), m = t mean, s^2 = (1-t)^2 + t^2 std^2,
    and v(x, t) = m' + (s'/s)(x - m), s s' = -(1 - t) + t std^2."""
    def velocity(obs, x, t):
        s2 = (1 - t) ** 2 + t ** 2 * std ** 2
        return mean + (-(1 - t) + t * std ** 2) / s2 * (x - t * mean)
    return velocity


def tilted_gaussian(mean: float, std: float, curvature: float, centre: float,
                    temperature: float) -> tuple[float, float]:
    """p(a) ~ N(a; mean, std^2) exp(Q(a) / temperature), Q(a) = -curvature (a - centre)^2 / 2:
    Gaussian with precision 1/std^2 + curvature/temperature. Returns (mean, std)."""
    precision = 1.0 / std ** 2 + curvature / temperature
    return (mean / std ** 2 + curvature * centre / temperature) / precision, precision ** -0.5


def test_memoryless_schedule_values():
    t, g = memoryless_schedule(10)
    assert torch.allclose(t, torch.arange(10) / 10.0)
    # g_0 = sqrt(2 (1 + 0.1) / 0.1) = sqrt(22), g_9 = sqrt(2 * 0.2 / 1.0)
    assert g[0].item() == pytest.approx(math.sqrt(22.0))
    assert g[-1].item() == pytest.approx(math.sqrt(0.4))


@pytest.mark.slow
def test_flow_matching_bc_recovers_the_modes_of_a_multimodal_chunk_distribution():
    """Chunks of H = 2 two-dimensional actions whose both actions sit at the same one of four
    modes (+-0.6, +-0.6), std 0.05: the flow (10 Euler steps) must recover the four joint modes
    in equal shares, and not make chunks whose two actions come from different modes (what a
    policy factorised over the chunk would do 75% of the time)."""
    modes = torch.tensor([[0.6, 0.6], [0.6, -0.6], [-0.6, 0.6], [-0.6, -0.6]])
    field = VelocityField(obs_dim=1, act_dim=2, hidden=(64, 64), horizon=2)
    optimizer = torch.optim.Adam(field.parameters(), lr=3e-3)
    obs = torch.zeros(256, 1)
    for _ in range(1500):
        which = torch.randint(4, (256,))
        chunks = modes[which].repeat(1, 2) + 0.05 * torch.randn(256, 4)
        loss = flow_matching_loss(field, obs, chunks, **flow_matching_noise(chunks))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        samples = euler_sample(field, torch.zeros(4000, 1), torch.randn(4000, 4))
    first, second = samples[:, :2], samples[:, 2:]
    nearest = torch.cdist(first, modes).argmin(dim=1)
    distance = (first - modes[nearest]).norm(dim=1)
    # on a mode (6 data stds; 10 Euler steps leave a few samples between modes: 92% here),
    # the gaps between modes (|a_i| < 0.2, 5% of the samples here) nearly empty
    assert (distance < 0.3).float().mean() > 0.85
    assert (first.abs() < 0.2).any(dim=1).float().mean() < 0.1
    shares = torch.bincount(nearest, minlength=4).float() / len(nearest)
    assert torch.all((shares - 0.25).abs() < 0.08), shares      # every mode, ~equal shares
    same_mode = torch.cdist(second, modes).argmin(dim=1) == nearest
    assert same_mode.float().mean() > 0.97                     # the chunk's joint structure


def _chain_through_autograd(fine_tuned, base, obs, noise, steps, reward):
    """x_0 .. x_K of ``adjoint_path``'s forward pass (same draws of torch's generator) with
    gradients, and d(-reward(x_K)) / d x_k for every k by autograd through the whole chain."""
    h = 1.0 / steps
    _, scales = memoryless_schedule(steps)
    states = [noise.clone().requires_grad_(True)]
    x = states[0]
    for k in range(steps - 1):
        t = torch.full_like(x[:, :1], k * h)
        x = x + h * (2 * fine_tuned(obs, x, t) - x / (k * h + h)) \
            + math.sqrt(h) * scales[k] * torch.randn_like(x)
        x.retain_grad()
        states.append(x)
    terminal = x + h * base(obs, x, torch.full_like(x[:, :1], (steps - 1) * h))
    (-reward(terminal).sum()).backward()
    return [s.grad for s in states]


@pytest.mark.parametrize("same_fields", [True, False])
def test_lean_adjoint_equals_autograd_through_the_chain_when_the_control_is_zero(same_fields):
    """With v_ft = v_base (zero control, as at the start of fine-tuning) the lean adjoint adj_k
    is exactly d(-r(x_K))/dx_k through the whole sampling chain, noise held fixed, for every k
    (float32 round-off). With v_ft != v_base the lean adjoint drops the control's Jacobian
    terms (Adjoint Matching's "lean" approximation) and differs from the full gradient."""
    torch.manual_seed(3)
    base = VelocityField(obs_dim=3, act_dim=2, hidden=(32, 32))
    torch.nn.init.normal_(base.net.layers[-1].weight, std=0.3)  # a non-trivial base field
    fine_tuned = copy.deepcopy(base)
    if not same_fields:
        torch.nn.init.normal_(fine_tuned.net.layers[-1].weight, std=0.3)
    obs, noise = torch.randn(64, 3), torch.randn(64, 2)
    centre = torch.tensor([0.3, -0.2])

    def reward(a):  # r(a) = -||a - c||^2 + sin(a_0): grad r = -2 (a - c) + (cos a_0, 0)
        return -((a - centre) ** 2).sum(-1) + torch.sin(a[:, 0])

    def terminal_adjoint(a):
        a = a.detach().requires_grad_(True)
        return -torch.autograd.grad(reward(a).sum(), a)[0]

    torch.manual_seed(4)
    path = adjoint_path(fine_tuned, base, obs, noise, terminal_adjoint, steps=10)
    torch.manual_seed(4)
    grads = _chain_through_autograd(fine_tuned, base, obs, noise, 10, reward)
    for k in range(10):
        if same_fields:
            torch.testing.assert_close(path.adjoints[k], grads[k], rtol=1e-4, atol=1e-5)
    if not same_fields:
        assert (path.adjoints[0] - grads[0]).abs().max() > 1e-2
    # the terminal step's adjoint is the reward gradient pulled back through one ODE step
    torch.testing.assert_close(path.adjoints[-1], grads[-1], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_adjoint_matching_reaches_the_tilted_gaussian():
    """Base N(0.3, 0.5^2) (its exact flow velocity), Q(a) = -2 (a + 0.5)^2, inverse temperature
    1: the optimum p_base(a) exp(Q(a)) is N(-0.1, 0.354^2). The fine-tuned field is the base plus
    a learned residual affine in x with t-dependent coefficients (the family the optimum lies
    in), trained by adjoint matching with K = 40 steps; its ODE samples must match the closed
    form within 0.03 in mean (the tilt moves it by 0.4) and 0.02 in std. The tolerance covers
    the time discretisation: at K = 10 the same run ends at mean -0.035 (the +h-shifted
    memoryless SDE of 10 steps is itself biased: its base samples have std 0.56, not 0.5)."""
    base_mean, base_std, curvature, centre = 0.3, 0.5, 4.0, -0.5
    target_mean, target_std = tilted_gaussian(base_mean, base_std, curvature, centre, 1.0)
    base = gaussian_velocity(base_mean, base_std)
    coefficients = MLP(1, (32, 32), 2, activation="gelu")

    def fine_tuned(obs, x, t):
        ab = coefficients(t)
        return base(obs, x, t) + ab[..., :1] + ab[..., 1:] * x

    steps, obs = 40, torch.zeros(256, 1)
    _, scales = memoryless_schedule(steps)
    optimizer = torch.optim.Adam(coefficients.parameters(), lr=3e-3)
    for _ in range(500):
        path = adjoint_path(fine_tuned, base, obs, torch.randn(256, 1),
                            lambda a: curvature * (a - centre), steps)   # -grad Q
        loss, _ = adjoint_matching_loss(fine_tuned, obs, path, scales)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        samples = euler_sample(fine_tuned, torch.zeros(50_000, 1), torch.randn(50_000, 1), steps)
    assert abs(samples.mean().item() - target_mean) < 0.03
    assert abs(samples.std().item() - target_std) < 0.02


def test_path_kl_is_girsanovs_formula():
    """gap = v_ft - v_base constant c per step: KL = sum_k (2 h / g_k^2) ||c||^2 / H."""
    _, g = memoryless_schedule(10)
    gap = torch.full((10, 5, 4), 0.5)
    expected = sum(2 * 0.1 / g[k].item() ** 2 * 4 * 0.25 for k in range(10)) / 2
    assert path_kl(gap, g, horizon=2).item() == pytest.approx(expected, rel=1e-6)


def test_dual_update_drives_the_kl_to_epsilon():
    """The policy the trust region acts on is the exact TRQAM optimum for a Gaussian base and a
    quadratic Q: sigma_k = g_k / sqrt(3 lambda) tilts the base by exp(Q / (3 lambda)), whose KL
    from the base is closed form and decreasing in lambda. Fed that KL with 30% multiplicative
    noise, the projected dual update must settle lambda where the KL equals epsilon = 1 (the
    paper's default), within 5%, from either side."""
    base_mean, base_std, curvature, centre = 0.0, 0.5, 40.0, 1.0

    def kl(lam: float) -> float:  # KL(N(m, s^2) || N(m0, s0^2)) of the tilted Gaussian
        m, s = tilted_gaussian(base_mean, base_std, curvature, centre, 3.0 * lam)
        return math.log(base_std / s) + (s ** 2 + (m - base_mean) ** 2) / (2 * base_std ** 2) - 0.5

    generator = torch.Generator().manual_seed(0)
    for initial in (0.5, 20.0):
        dual = TrustRegionDual(epsilon=1.0, initial_lambda=initial)
        for _ in range(20_000):
            noise = 1.0 + 0.3 * torch.randn((), generator=generator)
            dual.update(torch.tensor(kl(dual.lam.item())) * noise)
        assert kl(dual.lam.item()) == pytest.approx(1.0, rel=0.05)
        assert dual.kl_average.item() == pytest.approx(1.0, rel=0.1)


# ---------------------------------------------------------------------------------------- agents
FLOW_TINY = ["--eval-episodes", "1", "--log-every", "4", "--set", "actor_hidden=[16,16]",
             "--set", "critic_hidden=[16,16]", "--set", "batch_size=16",
             "--set", "num_critics=3", "--set", "flow_steps=4"]


@pytest.fixture(scope="module")
def door_dataset(tmp_path_factory) -> str:
    """The real door demonstrations (binary reward) imported into a private Minari store."""
    from conftest import DOOR_HUMAN

    from smac_core.data.__main__ import main as data_main

    root = tmp_path_factory.mktemp("flow-minari")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(root))
        assert data_main(["import", str(DOOR_HUMAN / "door-v0_demos_clipped.hdf5"),
                          "--id", "test/door-binary-v0", "--env", "AdroitHandDoor-v1",
                          "--reward", "binary", "--ignore-timeouts"]) == 0
    return str(root)


def _final_tensors(run) -> dict[str, torch.Tensor]:
    from smac_core.checkpoint import load_tensors

    return load_tensors(run / "checkpoints" / "final")[0]


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["qam", "trqam"])
def test_flow_agent_trains_offline_then_online_through_the_cli_and_resumes_exactly(
        algo, door_dataset, tmp_path, monkeypatch):
    """Offline 8 updates on door-binary, then online 8 env steps from that checkpoint (the
    handoff copies every network: at step 0 the online policy is the offline one), and an
    online run stopped at step 4 and resumed ends with bit-identical networks."""
    from smac_core.rundir import read_metrics
    from smac_core.train import main

    monkeypatch.setenv("MINARI_DATASETS_PATH", door_dataset)
    offline = tmp_path / "offline"
    assert main(["offline", "--algo", algo, "--dataset", "test/door-binary-v0", "--steps", "8",
                 "--eval-every", "8", "--checkpoint-every", "8", "--env", "door-binary",
                 "--out", str(offline), *FLOW_TINY]) == 0
    rows = read_metrics(offline)
    train_row = next(r for r in rows if "train/adjoint_matching_loss" in r)
    assert all(math.isfinite(v) for k, v in train_row.items() if k.startswith("train/"))
    if algo == "trqam":
        assert train_row["train/lambda"] != 1.0        # the dual variable moved
    offline_eval = next(r for r in rows if r["step"] == 8 and "eval_returns" in r)

    online = ["online", "--algo", algo, "--from", str(offline), "--steps", "8",
              "--early-eval-every", "8", "--eval-every", "8", *FLOW_TINY]
    assert main([*online, "--checkpoint-every", "8", "--out", str(tmp_path / "full")]) == 0
    step0 = next(r for r in read_metrics(tmp_path / "full") if r["step"] == 0)
    assert step0["eval_returns"] == offline_eval["eval_returns"]   # the handed-over policy

    # stop at step 4 (its checkpoint), then resume to 8
    assert main([*online, "--checkpoint-every", "4", "--out", str(tmp_path / "resumed")]) == 0
    import shutil
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "final")
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "step_8")
    assert main([*online, "--checkpoint-every", "4", "--out", str(tmp_path / "resumed"),
                 "--resume"]) == 0
    full, resumed = _final_tensors(tmp_path / "full"), _final_tensors(tmp_path / "resumed")
    assert full.keys() == resumed.keys()
    for key in full:
        assert torch.equal(full[key], resumed[key]), key


def test_flow_agents_refuse_gaussian_checkpoints():
    from smac_core.algos import make_agent
    from smac_core.errors import SmacError

    agent = make_agent("qam", 3, 2, {"actor_hidden": [8], "critic_hidden": [8]})
    with pytest.raises(SmacError, match="flow-policy checkpoint"):
        agent.load_pretrained({}, {"algorithm": "smac"})


@pytest.mark.parametrize(("source", "target"), [("qam", "trqam"), ("trqam", "qam"),
                                                ("trqam", "trqam")])
def test_flow_agents_hand_over_among_themselves(source, target):
    """Every network both have is copied: same actions (deterministic and, with the same noise,
    stochastic), same critic, same reward units; TRQAM's lambda comes along from TRQAM."""
    from smac_core.algos import make_agent
    from smac_core.checkpoint import network_tensors

    small = {"actor_hidden": [16], "critic_hidden": [16], "num_critics": 3}
    offline = make_agent(source, 5, 2, small)
    offline.update(_random_batch(32, 5, 2))
    online = make_agent(target, 5, 2, small)
    online.load_pretrained(network_tensors(offline.networks),
                           {"algorithm": source, "reward_scale": 10.0, "reward_bias": 5.0})
    obs, actions = torch.randn(20, 5), torch.rand(20, 2) * 2 - 1
    assert torch.equal(online.act(obs, True), offline.act(obs, True))
    torch.manual_seed(1)
    sampled = offline.act(obs, False)
    torch.manual_seed(1)
    assert torch.equal(online.act(obs, False), sampled)
    assert torch.equal(online.networks["critic"](obs, actions),
                       offline.networks["critic"](obs, actions))
    assert (online.reward_scale, online.reward_bias) == (10.0, 5.0)
    if source == target == "trqam":
        assert torch.equal(online.trust_region.lam, offline.trust_region.lam)


def _random_batch(size: int, obs_dim: int, act_dim: int):
    from smac_core.data.buffers import Batch

    return Batch(observations=torch.randn(size, obs_dim), actions=torch.rand(size, act_dim) * 2 - 1,
                 rewards=torch.randn(size), next_observations=torch.randn(size, obs_dim),
                 dones=torch.zeros(size), returns_to_go=torch.randn(size))


def test_trqam_update_moves_lambda_by_the_dual_step():
    """One update: lambda = clip(lambda_0 + 0.01 (KL_hat_clipped - epsilon)) with the first
    clipped estimate as the average (logged as path_kl)."""
    from smac_core.algos import make_agent

    agent = make_agent("trqam", 5, 2, {"actor_hidden": [16], "critic_hidden": [16],
                                       "num_critics": 3, "initial_lambda": 2.0, "epsilon": 0.5})
    metrics = agent.update(_random_batch(32, 5, 2))
    expected = 2.0 + 0.01 * (min(metrics["path_kl"], 1.0) - 0.5)
    assert metrics["lambda"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.slow
def test_flow_agent_with_action_chunks_trains_offline_then_online_and_resumes_exactly(
        door_dataset, tmp_path, monkeypatch):
    """``--set horizon=3``: offline on chunks of the door data, online (chunks played
    open-loop, an unfinished chunk at the checkpoint of step 4) with exact resume; the final
    checkpoint's landscape point is its evaluation (the kernel plays chunks too)."""
    import json
    import shutil

    from landscape import interpolate
    from smac_core.checkpoint import load_checkpoint
    from smac_core.rundir import read_metrics
    from smac_core.train import main

    monkeypatch.setenv("MINARI_DATASETS_PATH", door_dataset)
    chunked = [*FLOW_TINY, "--set", "horizon=3", "--eval-episodes", "2"]
    offline = tmp_path / "offline"
    assert main(["offline", "--algo", "trqam", "--dataset", "test/door-binary-v0",
                 "--steps", "4", "--eval-every", "4", "--checkpoint-every", "4",
                 "--env", "door-binary", "--out", str(offline), *chunked]) == 0
    policy = load_checkpoint(offline).policy
    assert policy.horizon == 3 and policy.noise_dim == 3 * 28
    online = ["online", "--algo", "trqam", "--from", str(offline), "--steps", "8",
              "--early-eval-every", "8", "--eval-every", "8", *chunked]
    assert main([*online, "--checkpoint-every", "8", "--out", str(tmp_path / "full")]) == 0
    assert main([*online, "--checkpoint-every", "4", "--out", str(tmp_path / "resumed")]) == 0
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "final")
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "step_8")
    assert main([*online, "--checkpoint-every", "4", "--out", str(tmp_path / "resumed"),
                 "--resume"]) == 0
    full, resumed = _final_tensors(tmp_path / "full"), _final_tensors(tmp_path / "resumed")
    for key in full:
        assert torch.equal(full[key], resumed[key]), key

    out = tmp_path / "line"
    assert interpolate.main([str(offline), str(tmp_path / "full"), "--points", "3",
                             "--range", "0", "1", "--episodes", "2", "--workers", "0",
                             "--out", str(out)]) == 0
    curve = json.loads((out / "interpolation.json").read_text())["curves"][0]
    final_eval = [r for r in read_metrics(tmp_path / "full") if "eval_returns" in r][-1]
    assert curve["returns"][2] == final_eval["eval_returns"]
