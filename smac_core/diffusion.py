"""The dataset score model of SMAC: a reward-conditioned diffusion model of the dataset's actions.

A denoising diffusion model (DDPM, Ho et al. 2020) of pi_D(a | s, w), with w a trajectory-level
return signal (reward-conditioned supervised learning, "RvS"), predicts the noise eps that was
added to a clean action a_0:

    forward process   a_k = sqrt(abar_k) a_0 + sigma_k eps,  eps ~ N(0, I),
                      sigma_k = sqrt(1 - abar_k),  k = 1..T  (variance preserving)
    loss              E_{(s, a_0, w) ~ D, k ~ U{1..T}, eps} || eps_omega(s, a_k, w, k) - eps ||^2

The minimiser is eps_omega(s, x, w, k) = -sigma_k grad_x log p_k(x | s, w), p_k the density of
a_k (Tweedie / denoising score matching, Vincent 2011). At the smallest noise level p_1 is the
data density blurred by noise of std sigma_1, so

    score_D(s, a) = grad_a log pi_D(a | s, w*) ~= -eps_omega(s, a, w*, k=1) / sigma_1,

up to O(sigma_1^2) (blur, and the sqrt(abar_1) = 1 - O(sigma_1^2) shrinkage). Note the sign:
the predicted noise points *away* from the data, the score towards it. ``DatasetScore`` is that
expression at a fixed high return w* (default: the 0.9 quantile of the training condition; SMAC
passes the 0.9 quantile of its trajectories' returns).

Noise schedules (``DiffusionConfig.schedule``), both variance preserving:
- "cosine" (Nichol & Dhariwal 2021): abar_k = f(k/T) / f(0), f(t) = cos^2((t + s)/(1 + s) pi/2),
  s = 0.008, betas clipped at 0.999. With the default T = 50, sigma_1 = 0.042.
- "vp" (IDQL, Diffusion-QL): beta_k = 1 - exp(-b_min/T - (b_max - b_min)(2k - 1)/(2 T^2)),
  b_min = 0.1, b_max = 10 (sigma_1 = 0.063 at T = 50, 0.44 at IDQL's T = 5).

Network (IDQL's LN_Resnet, Hansen-Estruch et al. 2023): the state, the noisy action and
embeddings of k (sinusoidal, then an MLP) and of w (an MLP; a learned "no condition" vector
for classifier-free-guidance-style condition dropout) are concatenated, projected to
``hidden_dim``, passed through residual blocks ``x + W2 silu(W1 LayerNorm(dropout(x)))`` and a
final linear layer. Activations are SiLU (IDQL's Mish is a near-identical curve that torch
computes 4x slower on CPU). Trained with fused AdamW (no weight decay); the score uses an
exponential moving average of the weights (``ema_decay``), which makes the small-noise
predictions far less noisy. ``precision="bfloat16"``: the training step's matrix products under
``torch.autocast`` (all else float32), 1.7-1.8x faster per step where the CPU has bfloat16
instructions, with float32's held-out losses on door and hopper (README, Benchmarks).

When to stop (``DiffusionConfig``): a fixed held-out split (``holdout_fraction`` of the rows, at
most ``HOLDOUT_MAX_ROWS``, chosen by a fixed permutation; never trained on) with fixed noise
draws (k, eps) per row, so its denoising loss is a deterministic function of the weights. Every
``eval_every`` steps the EMA network's held-out loss L is computed; a gain is L < (1 -
``tolerance``) L_ref, L_ref the loss of the last gain (the first evaluation is one); training
stops once ``patience`` evaluations in a row bring no gain, and after ``steps`` steps at the
latest. The held-out losses are printed as they are computed and kept in ``train_info``.

Storing: ``DatasetScore.save``/``load`` and an interrupted training write to and read from an
``Artifact`` (``smac_core.state``) that the caller hands in; this module does not know the files
(``smac_core.checkpoint.CheckpointArtifact`` stores them as a checkpoint directory).
"""

from __future__ import annotations

import copy
import json
import math
import signal
from collections import deque
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from smac_core.configs import build_config
from smac_core.errors import Interrupted, SmacError, signals_as_requests
from smac_core.nets import ResidualBlock, inference_linear, sinusoidal_embedding
from smac_core.progress import Progress
from smac_core.state import Artifact, flat_state_dict, sub_state_dict

SCHEDULES = ("cosine", "vp")
PRECISIONS = ("float32", "bfloat16")
ARTIFACT_KIND = "dataset_score"
PARTIAL_KIND = "dataset_score_training"  # an interrupted training (train_score_model)
NETWORK_NAME = "score_network"
HOLDOUT_MAX_ROWS = 4096
HOLDOUT_SEED = 20_231_101  # the held-out rows and their noise draws, the same for every run


@dataclass
class DiffusionConfig:
    """Hyperparameters of the dataset score model (defaults: IDQL's network, T = 50 levels)."""

    hidden_dim: int = 256
    num_blocks: int = 3
    embed_dim: int = 64            # width of the k and w embeddings
    dropout: float = 0.1           # in the residual blocks, as in IDQL (on CPU rounded to 2^-16)
    num_noise_levels: int = 50     # T; 50 puts sigma_1 at 0.042 (cosine): a negligible blur of
                                   # behaviour stds >= 0.1, yet a noise level still learnable
    schedule: str = "cosine"       # "cosine" | "vp" (module docstring)
    steps: int = 50_000            # the most gradient steps (the criterion below stops earlier)
    eval_every: int = 1000         # steps between held-out loss evaluations
    holdout_fraction: float = 0.05  # rows held out of training (at most HOLDOUT_MAX_ROWS)
    patience: int = 5              # stop after this many evaluations without a gain; 0: never
    tolerance: float = 0.01        # a gain: held-out loss < (1 - tolerance) * that of the last gain
    batch_size: int = 256
    lr: float = 3e-4               # Adam
    ema_decay: float = 0.999       # the score uses an exponential moving average of the weights
    w_quantile: float = 0.9        # w* = this quantile of the training condition
    condition_dropout: float = 0.0  # P(w replaced by the "no condition" vector) in training
    guidance: float = 0.0          # g: eps = (1 + g) eps(w*) - g eps(no condition); needs dropout
    precision: str = "float32"     # the training step's matmuls: "float32" | "bfloat16" (autocast)

    def validate(self) -> None:
        positive = ("hidden_dim", "num_blocks", "embed_dim", "num_noise_levels", "steps",
                    "batch_size", "lr", "eval_every")
        for name in positive:
            if not getattr(self, name) > 0:
                raise SmacError(f"DiffusionConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.schedule not in SCHEDULES:
            raise SmacError(f"DiffusionConfig.schedule {self.schedule!r} is not one of "
                            f"{list(SCHEDULES)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise SmacError(f"DiffusionConfig.ema_decay must be in [0, 1) (0: no averaging), "
                            f"got {self.ema_decay}")
        for name in ("dropout", "w_quantile", "condition_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SmacError(f"DiffusionConfig.{name} must be in [0, 1], "
                                f"got {getattr(self, name)}")
        if not (0.0 <= self.holdout_fraction <= 0.5 and 0.0 <= self.tolerance < 1.0
                and self.patience >= 0):
            raise SmacError("DiffusionConfig needs holdout_fraction in [0, 0.5], tolerance in "
                            f"[0, 1) and patience >= 0; got {self.holdout_fraction}, "
                            f"{self.tolerance} and {self.patience}")
        if self.precision not in PRECISIONS:
            raise SmacError(f"DiffusionConfig.precision {self.precision!r} is not one of "
                            f"{list(PRECISIONS)}")
        if self.guidance < 0 or (self.guidance > 0 and self.condition_dropout == 0):
            raise SmacError(f"DiffusionConfig.guidance={self.guidance} needs guidance >= 0 and, "
                            "when > 0, condition_dropout > 0 (to learn the unconditional model)")

    @classmethod
    def from_dict(cls, values: dict) -> DiffusionConfig:
        """Build from user values, type- and range-checked (``smac_core.configs``)."""
        config = build_config(cls, values)
        config.validate()
        return config


def alpha_bars(config: DiffusionConfig) -> Tensor:
    """abar_k for k = 0..T (abar_0 = 1: clean data), float64, shape (T + 1,)."""
    T = config.num_noise_levels
    k = torch.arange(1, T + 1, dtype=torch.float64)
    if config.schedule == "cosine":
        s = 0.008
        f = lambda t: torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
        abar = f(k / T) / f(torch.zeros(()))
        betas = (1 - abar / torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]]))
        betas = betas.clamp(max=0.999)
    else:
        b_min, b_max = 0.1, 10.0
        betas = 1 - torch.exp(-b_min / T - (b_max - b_min) * (2 * k - 1) / (2 * T**2))
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])


class NoisePredictor(nn.Module):
    """eps_omega(s, a_k, w, k): (B, obs_dim), (B, act_dim), (B,) float, (B,) int -> (B, act_dim).

    ``use_condition`` (B,) bool: False replaces w's embedding by the learned "no condition"
    vector (classifier-free guidance); None uses w everywhere.
    """

    def __init__(self, obs_dim: int, act_dim: int, config: DiffusionConfig) -> None:
        super().__init__()
        e, h = config.embed_dim, config.hidden_dim
        self.embed_dim = e
        self.noise_level_mlp = nn.Sequential(nn.Linear(e, 2 * e), nn.SiLU(), nn.Linear(2 * e, e))
        self.condition_mlp = nn.Sequential(nn.Linear(1, 2 * e), nn.SiLU(), nn.Linear(2 * e, e))
        self.no_condition = nn.Parameter(torch.zeros(e))
        self.input = nn.Linear(obs_dim + act_dim + 2 * e, h)
        self.blocks = nn.Sequential(*[ResidualBlock(h, config.dropout)
                                      for _ in range(config.num_blocks)])
        self.output = nn.Linear(h, act_dim)

    def forward(self, obs: Tensor, noisy_actions: Tensor, condition: Tensor, noise_level: Tensor,
                use_condition: Tensor | None = None) -> Tensor:
        k_embedding = self.noise_level_mlp(sinusoidal_embedding(noise_level, self.embed_dim))
        w_embedding = self.condition_mlp(condition[:, None].float())
        if use_condition is not None:
            w_embedding = torch.where(use_condition[:, None], w_embedding, self.no_condition)
        x = self.input(torch.cat([obs, noisy_actions, k_embedding, w_embedding], dim=-1))
        return self.output(F.silu(self.blocks(x)))

    @torch.no_grad()
    def frozen(self, obs: Tensor, actions: Tensor, condition: float | None, noise_level: int
               ) -> Tensor:
        """``forward`` in eval mode (no dropout) for one w and k shared by all rows (w None: the
        "no condition" vector), no gradients: (B, obs_dim), (B, act_dim) -> (B, act_dim). The
        embeddings are computed once and folded into the input layer's bias, and the layers run
        by ``nets.inference_linear``: equal to ``forward`` up to float32 rounding."""
        d, device = obs.shape[-1] + actions.shape[-1], obs.device
        k_embedding = self.noise_level_mlp(sinusoidal_embedding(
            torch.tensor([noise_level], device=device), self.embed_dim))
        w_embedding = (self.no_condition[None] if condition is None
                       else self.condition_mlp(torch.tensor([[condition]], device=device)))
        bias = torch.addmm(self.input.bias, torch.cat([k_embedding, w_embedding], dim=-1),
                           self.input.weight[:, d:].T)[0]
        x = inference_linear(torch.cat([obs, actions], dim=-1), self.input.weight[:, :d], bias)
        for block in self.blocks:
            hidden = inference_linear(block.norm(x), block.expand.weight, block.expand.bias, True)
            x = x + inference_linear(hidden, block.contract.weight, block.contract.bias)
        return inference_linear(F.silu(x), self.output.weight, self.output.bias)


class DatasetScore:
    """score_D(s, a) = -eps_omega(s, a, w*, k=1) / sigma_1 of a trained, frozen ``NoisePredictor``.

    ``__call__(obs (..., obs_dim), actions (..., act_dim)) -> (..., act_dim)``, no gradients
    (neither to the network nor to the inputs). ``condition_value`` is w*; a call may pass
    another ``condition`` (a float) to look at the score of other returns.
    """

    def __init__(self, network: NoisePredictor, config: DiffusionConfig, obs_dim: int,
                 act_dim: int, condition_value: float, train_info: dict | None = None) -> None:
        self.network = network.eval().requires_grad_(False)
        self.config = config
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.condition_value = float(condition_value)
        self.sigma_1 = float(torch.sqrt(1 - alpha_bars(config)[1]))
        self.train_info = dict(train_info or {})

    @property
    def device(self) -> torch.device:
        return self.network.output.weight.device

    def to(self, device: str | torch.device) -> DatasetScore:
        self.network.to(device)
        return self

    @torch.no_grad()
    def __call__(self, obs: Tensor, actions: Tensor, condition: float | None = None) -> Tensor:
        if obs.shape[:-1] != actions.shape[:-1] or obs.shape[-1] != self.obs_dim \
                or actions.shape[-1] != self.act_dim:
            raise SmacError(f"DatasetScore expects obs (..., {self.obs_dim}) and actions "
                            f"(..., {self.act_dim}) with the same leading shape, got "
                            f"{tuple(obs.shape)} and {tuple(actions.shape)}")
        leading = actions.shape[:-1]
        obs, actions = obs.reshape(-1, self.obs_dim), actions.reshape(-1, self.act_dim)
        w = self.condition_value if condition is None else condition
        obs, actions = obs.float(), actions.float()
        eps = self.network.frozen(obs, actions, w, 1)
        if self.config.guidance > 0:
            # classifier-free guidance: eps = (1 + g) eps(s, a, w) - g eps(s, a, no condition)
            unconditional = self.network.frozen(obs, actions, None, 1)
            eps = (1 + self.config.guidance) * eps - self.config.guidance * unconditional
        # score_D(s, a) = -eps_omega(s, a, w*, 1) / sigma_1
        return (-eps / self.sigma_1).reshape(*leading, self.act_dim)

    def save(self, artifact: Artifact) -> None:
        """Store the network's weights and what rebuilds the score (metadata kind
        ``ARTIFACT_KIND``) in ``artifact``."""
        metadata = {"kind": ARTIFACT_KIND, "config": asdict(self.config), "obs_dim": self.obs_dim,
                    "act_dim": self.act_dim, "condition_value": self.condition_value,
                    "sigma_1": self.sigma_1, "train_info": self.train_info}
        artifact.save(flat_state_dict({NETWORK_NAME: self.network}), metadata)

    @classmethod
    def load(cls, artifact: Artifact, device: str | torch.device = "cpu") -> DatasetScore:
        """The score that ``save`` stored in ``artifact``, on ``device``."""
        tensors, meta = artifact.load()
        if meta.get("kind") != ARTIFACT_KIND:
            raise SmacError(f"{artifact} is not a saved dataset score model "
                            f"(metadata kind {meta.get('kind')!r}, expected {ARTIFACT_KIND!r})")
        config = DiffusionConfig.from_dict(meta["config"])
        # the initialisation is overwritten: draw it without moving the global RNG, so that a
        # run that loads its cached score model draws what a run that trained it draws
        with torch.random.fork_rng(devices=[]):
            network = NoisePredictor(meta["obs_dim"], meta["act_dim"], config)
        try:
            network.load_state_dict(sub_state_dict(tensors, NETWORK_NAME))
        except RuntimeError as exc:
            raise SmacError(f"the score network in {artifact} does not match its config: "
                            f"{exc}") from exc
        return cls(network, config, meta["obs_dim"], meta["act_dim"], meta["condition_value"],
                   meta.get("train_info")).to(device)


def _check_inputs(observations: Tensor, actions: Tensor, condition: Tensor) -> None:
    if observations.dim() != 2 or actions.dim() != 2 or condition.dim() != 1:
        raise SmacError("train_score_model expects observations (N, obs_dim), actions "
                        f"(N, act_dim) and condition (N,); got {tuple(observations.shape)}, "
                        f"{tuple(actions.shape)} and {tuple(condition.shape)}")
    n = {len(observations), len(actions), len(condition)}
    if len(n) != 1 or len(observations) == 0:
        raise SmacError("train_score_model: observations, actions and condition must have the "
                        f"same non-zero length, got {len(observations)}, {len(actions)}, "
                        f"{len(condition)}")
    for name, t in (("observations", observations), ("actions", actions),
                    ("condition", condition)):
        if not torch.isfinite(t).all():
            raise SmacError(f"train_score_model: {name} contain NaN/Inf values")
    if actions.abs().max() > 1.0 + 1e-6:
        raise SmacError("train_score_model: actions must be in [-1, 1] (map them with the env's "
                        f"action bounds first); max |a| = {actions.abs().max().item():.4g}")


class HeldOut:
    """The held-out rows of ``DiffusionConfig`` (module docstring) with fixed noise draws.

    ``loss(network)``: (1/M) sum_j || eps_omega(s_j, a_kj, w_j, k_j) - eps_j ||^2 over the M
    held-out rows, a_kj = sqrt(abar_kj) a_0j + sigma_kj eps_j; no gradients, no RNG draws.
    """

    def __init__(self, obs: Tensor, actions: Tensor, condition: Tensor, config: DiffusionConfig,
                 sqrt_abar: Tensor, sigma: Tensor) -> None:
        gen = torch.Generator().manual_seed(HOLDOUT_SEED)
        k = torch.randint(1, config.num_noise_levels + 1, (len(obs),), generator=gen)
        eps = torch.randn(actions.shape, generator=gen)
        self.k, self.eps = k.to(obs.device), eps.to(obs.device)
        self.obs, self.condition = obs, condition
        self.noisy = sqrt_abar[self.k, None] * actions + sigma[self.k, None] * self.eps

    @torch.no_grad()
    def loss(self, network: NoisePredictor) -> float:
        was_training = network.training
        network.eval()
        prediction = network(self.obs, self.noisy, self.condition, self.k)
        network.train(was_training)
        return float((prediction - self.eps).pow(2).sum(-1).mean())


def split_holdout(n: int, fraction: float) -> tuple[Tensor, Tensor | None]:
    """(training rows, held-out rows or None): min(HOLDOUT_MAX_ROWS, floor(fraction n)) rows of a
    fixed permutation held out; none when that is 0 rows or all of them."""
    held = min(HOLDOUT_MAX_ROWS, int(fraction * n))
    if held == 0 or held == n:
        return torch.arange(n), None
    order = torch.randperm(n, generator=torch.Generator().manual_seed(HOLDOUT_SEED))
    return order[held:].sort().values, order[:held].sort().values


def train_score_model(observations: Tensor, actions: Tensor, condition: Tensor,
                      config: DiffusionConfig, device: str | torch.device,
                      generator: torch.Generator | None, progress: bool = True,
                      condition_value: float | None = None,
                      checkpoint: Artifact | None = None) -> DatasetScore:
    """Fit eps_omega on (s, a, w) triples and return the frozen score at w*.

    ``observations`` (N, obs_dim), already normalised; ``actions`` (N, act_dim) in [-1, 1];
    ``condition`` (N,) the return signal w (e.g. the trajectory's normalised return, in [0, 1]).
    ``condition_value`` is w* (default: the ``w_quantile`` quantile of ``condition``).
    ``generator`` seeds everything (initialisation, minibatches, noise, dropout); None uses the
    global RNG. Training stops by the held-out criterion (module docstring) or after
    ``config.steps`` steps. ``progress`` shows it (``smac_core.progress``: a bar in a terminal,
    else a line every few seconds) with the running loss, and each held-out loss (a line of its
    own in a log; printed even without ``progress``). ``checkpoint``, an ``Artifact`` (with a
    ``generator``): SIGINT and SIGTERM stop training after the current step, save its exact
    state there and raise ``Interrupted``; a later call with the same inputs continues from it
    bit for bit, and removes it when done.
    """
    config.validate()
    _check_inputs(observations, actions, condition)
    device = torch.device(device)
    obs_all, actions_all, condition_all = (x.to(device, torch.float32)
                                           for x in (observations, actions, condition))
    if condition_value is None:
        condition_value = float(torch.quantile(condition.double().cpu(), config.w_quantile))
    abar = alpha_bars(config).to(device, torch.float32)
    sqrt_abar, sigma = abar.sqrt(), (1 - abar).sqrt()
    n, (obs_dim, act_dim) = len(obs_all), (obs_all.shape[1], actions_all.shape[1])
    train_rows, held_rows = split_holdout(n, config.holdout_fraction)
    train_rows = train_rows.to(device)
    heldout = None if held_rows is None else HeldOut(
        *(x[held_rows] for x in (obs_all, actions_all, condition_all)), config, sqrt_abar, sigma)

    seed = None if generator is None else int(torch.randint(2**62, (1,), generator=generator))
    low_precision = config.precision == "bfloat16"
    resumable = checkpoint is not None and seed is not None
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices, enabled=seed is not None), \
            signals_as_requests() if resumable else nullcontext([]) as stop:
        if seed is not None:
            torch.manual_seed(seed)
        network = NoisePredictor(obs_dim, act_dim, config).to(device)
        # fused: one kernel per parameter, 4 -> 0.8 ms per step on one CPU thread
        optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=0.0,
                                      fused=device.type in ("cpu", "cuda"))
        ema = copy.deepcopy(network).requires_grad_(False)
        ema_params, params = list(ema.parameters()), list(network.parameters())
        recent_losses: deque[Tensor] = deque(maxlen=100)
        # held-out evaluations: [step, loss] rows, the loss of the last gain, evaluations since
        criterion: dict = {"history": [], "reference": math.inf, "stale": 0}
        identity = {"config": asdict(config), "seed": seed, "num_samples": n}
        start = 0
        if resumable and checkpoint.exists():
            start = _restore_partial(checkpoint, identity, network, optimizer, ema,
                                     recent_losses, criterion, device)
        converged = False
        with (Progress(config.steps, "dataset score model", initial=start) if progress
              else nullcontext()) as bar:
            for step in range(start, config.steps):
                idx = train_rows[torch.randint(len(train_rows), (config.batch_size,),
                                               device=device)]
                obs, a0, w = obs_all[idx], actions_all[idx], condition_all[idx]
                k = torch.randint(1, config.num_noise_levels + 1, (len(idx),), device=device)
                eps = torch.randn_like(a0)
                # a_k = sqrt(abar_k) a_0 + sigma_k eps
                noisy = sqrt_abar[k, None] * a0 + sigma[k, None] * eps
                use_condition = (torch.rand(len(idx), device=device) >= config.condition_dropout
                                 if config.condition_dropout > 0 else None)
                # L = || eps_omega(s, a_k, w, k) - eps ||^2  (DDPM's "simple" loss)
                with torch.autocast(device.type, torch.bfloat16, enabled=low_precision):
                    prediction = network(obs, noisy, w, k, use_condition)
                loss = (prediction.float() - eps).pow(2).sum(-1).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():  # EMA (step 0: a copy): decay ema + (1 - decay) theta
                    torch._foreach_lerp_(ema_params, params, 1 - config.ema_decay if step else 1.0)
                recent_losses.append(loss.detach())
                if bar is not None:
                    bar.update()
                    if step % 100 == 0:
                        bar.note(f"loss {float(torch.stack(list(recent_losses)).mean()):.4f}")
                if heldout is not None and ((step + 1) % config.eval_every == 0
                                            or step + 1 == config.steps):
                    converged = _evaluate(heldout, ema, step + 1, config, criterion, bar)
                    if converged:
                        break
                if stop and step + 1 < config.steps:
                    _save_partial(checkpoint, identity, step + 1, network, optimizer, ema,
                                  recent_losses, criterion, device)
                    signum = stop[0]
                    raise Interrupted(signum, f"stopped by {signal.Signals(signum).name} at step "
                                      f"{step + 1} of {config.steps} of the dataset score model; "
                                      f"its state is saved in {checkpoint} (continue with the same "
                                      "command and --resume)")
    if resumable:
        checkpoint.remove()
    history = criterion["history"]
    train_info = {"final_loss": float(torch.stack(list(recent_losses)).mean()), "num_samples": n,
                  "condition_min": float(condition.min()), "condition_max": float(condition.max()),
                  "steps_trained": history[-1][0] if history else config.steps,
                  "stopped_by": "held-out criterion" if converged else "steps",
                  "heldout_rows": 0 if held_rows is None else len(held_rows),
                  "heldout_loss": history[-1][1] if history else None,
                  "heldout_history": history}
    return DatasetScore(ema, config, obs_dim, act_dim, condition_value, train_info)


def _evaluate(heldout: HeldOut, ema_network: NoisePredictor, step: int, config: DiffusionConfig,
              criterion: dict, progress: Progress | None) -> bool:
    """Record the held-out loss at ``step`` in ``criterion``, print it; whether to stop."""
    loss = heldout.loss(ema_network)
    criterion["history"].append([step, loss])
    if loss < (1 - config.tolerance) * criterion["reference"]:
        criterion["reference"], criterion["stale"] = loss, 0
    else:
        criterion["stale"] += 1
    converged = 0 < config.patience <= criterion["stale"]
    line = (f"held-out loss {loss:.4f} ({criterion['stale']}/{config.patience} evaluations "
            f"without a {config.tolerance:.0%} gain on {criterion['reference']:.4f})"
            + (" | converged" if converged else ""))
    if progress is not None:
        progress.event(line)
    else:
        print(f"[dataset score model] step {step}/{config.steps} | {line}", flush=True)
    return converged


def _rng_states(device: torch.device) -> dict[str, Tensor]:
    cuda = {"cuda": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}
    return {"torch": torch.get_rng_state(), **cuda}


def _save_partial(artifact: Artifact, identity: dict, step: int, network: NoisePredictor,
                  optimizer: torch.optim.Optimizer, ema: NoisePredictor,
                  recent_losses: deque[Tensor], criterion: dict, device: torch.device) -> None:
    artifact.save(flat_state_dict({NETWORK_NAME: network, "ema": ema}),
                  {"kind": PARTIAL_KIND, "step": step, **identity},
                  {"optimizer": optimizer.state_dict(), "rng": _rng_states(device),
                   "recent_losses": torch.stack(list(recent_losses)).cpu(),
                   "criterion": criterion})


def _restore_partial(artifact: Artifact, identity: dict, network: NoisePredictor,
                     optimizer: torch.optim.Optimizer, ema: NoisePredictor,
                     recent_losses: deque[Tensor], criterion: dict, device: torch.device) -> int:
    """Load an interrupted training's state (``_save_partial``); the step to continue at."""
    tensors, meta = artifact.load()
    stored = {key: meta.get(key) for key in identity}
    if meta.get("kind") != PARTIAL_KIND or stored != json.loads(json.dumps(identity)):
        raise SmacError(f"{artifact} holds an interrupted score-model training of other settings "
                        "or data; delete it to train afresh")
    state = artifact.load_state()
    try:
        network.load_state_dict(sub_state_dict(tensors, NETWORK_NAME))
        ema.load_state_dict(sub_state_dict(tensors, "ema"))
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        recent_losses.extend(state["recent_losses"].to(device))
        criterion.update(state["criterion"])
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise SmacError(f"cannot continue the score-model training saved in {artifact} "
                        f"({type(exc).__name__}: {exc}); delete it to train afresh") from exc
    return int(meta["step"])
