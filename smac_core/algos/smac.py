"""SMAC: Score-Matched Actor-Critic (de Lara & Shkurti, arXiv 2602.17632), offline phase.

SAC whose critic loss adds a score-matching term (README, "SMAC's score-matching regulariser"):

    L(theta, psi) = kappa * L_SM(theta, psi) + L_TD(theta)
    L_SM = sum_i E_{s~D, a~B} || grad_a Q_i(s, a) - alpha_psi(s) * score_D(s, a) ||^2

for every critic Q_i of the ensemble, B drawing half of its actions from the current policy and
half uniformly from [-1, 1]^d, score_D(s, a) = grad_a log pi_D(a|s) the score of the dataset's
actions from a frozen reward-conditioned diffusion model (``smac_core.diffusion``; trained by
``prepare_offline``, cached in the run's ``score_model`` artifact). The motivation is the
soft-optimality identity grad_a log pi*(a|s) = grad_a Q*(s, a) / alpha: a critic whose
action-gradient follows the score of good behaviour is already the critic online SAC wants.
kappa * L_SM is SAC's critic regulariser (``critic_regularizer``); SAC's update, TD loss, actor
and temperature losses are unchanged.

alpha_psi(s) >= 0 is the scale of the score in L_SM; in the identity above it is SAC's temperature
alpha. How it is set (``alpha_psi_mode``):

- ``"fixed"`` (default): alpha_psi(s) = ``alpha_psi_value`` (0.2, the fixed temperature of the
  first SAC paper on MuJoCo): the temperature the critic is shaped for (a critic with grad_a Q =
  alpha_psi score_D makes the data's policy soft-optimal at temperature alpha_psi), chosen once
  rather than read off the offline run. No degenerate minimiser, and it does not decay with
  SAC's offline temperature.
- ``"temperature"``: alpha_psi(s) = alpha, the current SAC temperature, detached (L_SM moves only
  the critic): the identity read with the *offline* temperature. That temperature decays (1.0 ->
  ~0.02 over 20k updates on hopper and door, SAC tuning entropy to -act_dim), and the
  regulariser with it.
- ``"temperature_floor"``: alpha_psi(s) = alpha + softplus(MLP(s)): learned, never below the
  temperature (its learned surplus falls to ~0 within 2k updates: it behaves as "temperature").
- ``"learned"``: alpha_psi(s) = alpha_psi_min + softplus(MLP(s)), the paper's free state network
  trained with the critic. Its weakness: L_SM is smallest for alpha_psi -> 0 with a flat critic,
  so the scale drifts down to ``alpha_psi_min`` (measured: 0.28 -> 0.065 in 3k hopper updates,
  0.21 -> 0.025 in 3.5k door updates) and the regulariser fades.

The learned networks (``score_scale``) are trained by the critic's optimizer. The modes were
compared over 20k updates on hopper-medium-replay and door-binary (README, "SMAC's
score-matching regulariser").

``train/score_cosine`` (mean over critics and sampled (s, a) of cos(grad_a Q_i, score_D)) is the
quantity the method exists to raise; it is logged every update with the mean alpha_psi and the
norms of both vectors.

Defaults: SAC's (lr 3e-4, tau 5e-3, 2 critics), the Muon optimizer (``smac_core.optim``; "adam" for
the ablation), kappa = 1 (our choice: the paper's value is not public; L_SM and L_TD are both
squared errors in Q units per unit action), alpha_psi_min = 0.01 for the "learned" mode (about a
tenth of SAC's temperature on MuJoCo tasks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from smac_core.algos.base import check_config, per_seed
from smac_core.algos.sac import SAC, SACConfig
from smac_core.data.buffers import Batch, ReplayBuffer
from smac_core.data.dataset import TransitionDataset
from smac_core.diffusion import DatasetScore, DiffusionConfig, train_score_model
from smac_core.errors import SmacError
from smac_core.nets import MLP, CriticEnsemble
from smac_core.state import ArtifactStore

SCORE_MODEL_DIR = "score_model"  # the run's artifact (directory) holding the score model
SCORE_MODEL_TRAINING_DIR = "score_model_training"  # an interrupted training, continued on resume
ALPHA_PSI_MODES = ("fixed", "temperature", "temperature_floor", "learned")
CONDITION_KIND = "trajectory_return"
SCORE_MODEL_STREAM = 7  # SeedSequence stream of the score model's seed

ScoreFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SMACConfig(SACConfig):
    """SAC's fields plus the score-matching regulariser. ``score_model``: overrides of
    ``smac_core.diffusion.DiffusionConfig`` (e.g. {"steps": 20000})."""

    optimizer: str = "muon"
    kappa: float = 1.0
    alpha_psi_mode: str = "fixed"         # one of ALPHA_PSI_MODES (module docstring)
    alpha_psi_value: float = 0.2          # the constant of the "fixed" mode
    alpha_psi_hidden: int = 64
    alpha_psi_min: float = 0.01           # the floor of the "learned" mode
    score_model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config(self.kappa >= 0.0, self, f"kappa must be >= 0; got {self.kappa}")
        check_config(self.alpha_psi_hidden >= 1, self,
                     f"alpha_psi_hidden must be >= 1; got {self.alpha_psi_hidden}")
        check_config(self.alpha_psi_mode in ALPHA_PSI_MODES, self,
                     f"alpha_psi_mode must be one of {list(ALPHA_PSI_MODES)}; "
                     f"got {self.alpha_psi_mode!r}")
        check_config(self.alpha_psi_value > 0.0, self,
                     f"alpha_psi_value must be > 0; got {self.alpha_psi_value}")
        check_config(self.alpha_psi_min >= 0.0, self,
                     f"alpha_psi_min must be >= 0; got {self.alpha_psi_min}")
        DiffusionConfig.from_dict(self.score_model)


def trajectory_return_condition(dataset: TransitionDataset) -> tuple[np.ndarray, np.ndarray]:
    """The score model's return condition ("RvS"): w = (R_j - min_j R) / (max_j R - min_j R),
    R_j the undiscounted return of trajectory j, the same for every transition of j (1 when all
    returns tie). Not the per-step return-to-go, which only a trajectory's early states can
    reach: a high value of it is never seen with late states.

    Returns w per transition (N,) float32 and per trajectory (num_episodes,) float64.
    """
    returns = dataset.episode_returns()
    spread = float(returns.max() - returns.min())
    per_trajectory = (returns - returns.min()) / spread if spread > 0 else np.ones_like(returns)
    return np.repeat(per_trajectory, dataset.episode_lengths()).astype(np.float32), per_trajectory


class ScoreScale(nn.Module):
    """alpha_psi(s) = minimum + softplus(MLP(s)): (B, obs_dim) -> (B,), always >= minimum."""

    def __init__(self, obs_dim: int, hidden: int, minimum: float) -> None:
        super().__init__()
        self.net = MLP(obs_dim, (hidden,), 1)
        self.minimum = minimum

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.minimum + F.softplus(self.net(obs).squeeze(-1))


def score_matching_loss(critic: CriticEnsemble, obs: torch.Tensor, actions: torch.Tensor,
                        score: torch.Tensor, scale: torch.Tensor, fused: bool = True
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """L_SM = sum_i mean_b || grad_a Q_i(s_b, a_b) - scale_b * score_b ||^2, differentiable in
    the critic's weights and ``scale`` (grad_a Q by ``CriticEnsemble.action_gradient``: autograd's
    gradient of a gradient, written out; ``fused`` as there).

    ``obs`` (B, obs_dim), ``actions`` (B, act_dim), ``score`` (B, act_dim) (no gradient),
    ``scale`` (B,). Returns the loss and grad_a Q (N, B, act_dim), still in the graph.
    """
    grad_q = critic.action_gradient(obs, actions.detach(), fused)            # (N, B, act_dim)
    # || grad_a Q_i(s, a) - alpha_psi(s) score_D(s, a) ||^2, summed over action dims
    residual = grad_q - scale[None, :, None] * score.unsqueeze(0)
    return residual.pow(2).sum(-1).mean(1).sum(), grad_q


class SMAC(SAC):
    """SAC + the score-matching critic regulariser (module docstring). Networks: SAC's plus
    ``score_scale`` (alpha_psi); ``dataset_score`` is the frozen score_D, set by
    ``prepare_offline`` (or directly, e.g. to an analytic score in tests)."""

    name = "smac"
    config_class = SMACConfig
    phases = frozenset({"offline"})
    config: SMACConfig

    def __init__(self, obs_dim: int, act_dim: int, config: SMACConfig,
                 device: str | torch.device = "cpu") -> None:
        super().__init__(obs_dim, act_dim, config, device)
        if config.alpha_psi_mode in ("learned", "temperature_floor"):
            # "learned": alpha_psi_min + softplus(MLP); "temperature_floor": alpha + softplus(MLP)
            minimum = config.alpha_psi_min if config.alpha_psi_mode == "learned" else 0.0
            score_scale = ScoreScale(obs_dim, config.alpha_psi_hidden, minimum).to(self.device)
            self.networks["score_scale"] = score_scale
            # a learned alpha_psi is trained with the critic: one optimizer over both
            self.optimizers["critic"] = self.make_optimizer([self.critic, score_scale],
                                                            config.critic_lr)
        self.dataset_score: ScoreFunction | None = None

    def prepare_offline(self, dataset: TransitionDataset, buffer: ReplayBuffer,
                        artifacts: ArtifactStore) -> None:
        """Load the score model from the run's ``score_model`` artifact, or train it on
        ``dataset`` (the agent's view: normalised observations, actions in [-1, 1]) and save it
        there. A training stopped by SIGINT/SIGTERM is saved in the ``score_model_training``
        artifact and continued, exactly, by the next call (in a run directory, the trainer
        stores them as ``<run>/score_model/`` and ``<run>/score_model_training/``).

        Condition w: the return of the transition's trajectory (``trajectory_return_condition``);
        the score is taken at w* = the config's top quantile (``w_quantile``) of the
        trajectories' w, a high return every state of a good trajectory was seen with.
        """
        cached = artifacts.artifact(SCORE_MODEL_DIR)
        if cached.exists():
            score = DatasetScore.load(cached, self.device)
            if (score.obs_dim, score.act_dim) != (self.obs_dim, self.act_dim):
                raise SmacError(f"the cached score model in {cached} is for obs_dim "
                                f"{score.obs_dim}, act_dim {score.act_dim}; this run has "
                                f"{self.obs_dim}, {self.act_dim} (delete it to retrain)")
            if score.train_info.get("condition") != CONDITION_KIND:
                raise SmacError(f"the cached score model in {cached} was conditioned on "
                                f"{score.train_info.get('condition', 'return-to-go')!r}, not on "
                                f"{CONDITION_KIND!r}: delete it to retrain")
        else:
            condition, per_trajectory = trajectory_return_condition(dataset)
            config = DiffusionConfig.from_dict(self.config.score_model)
            # seeded by the run's seed (set by the trainer), not by the global RNG's position: a
            # run resumed before its first checkpoint retrains the same model, and runs that
            # differ only in networks drawn before this point share it
            seed = int(np.random.SeedSequence([torch.initial_seed(), SCORE_MODEL_STREAM])
                       .generate_state(1)[0])
            score = train_score_model(
                torch.as_tensor(dataset.observations), torch.as_tensor(dataset.actions),
                torch.as_tensor(condition), config, self.device,
                torch.Generator().manual_seed(seed),
                condition_value=float(np.quantile(per_trajectory, config.w_quantile)),
                checkpoint=artifacts.artifact(SCORE_MODEL_TRAINING_DIR))
            score.train_info["condition"] = CONDITION_KIND
            score.save(cached)
        self.dataset_score = score

    def alpha_psi(self, obs: torch.Tensor) -> torch.Tensor:
        """The score's scale alpha_psi(s) >= 0 of ``alpha_psi_mode``: (B, obs_dim) -> (B,)."""
        if self.config.alpha_psi_mode == "learned":
            return self.networks["score_scale"](obs)
        if self.config.alpha_psi_mode == "fixed":
            return torch.full(obs.shape[:1], self.config.alpha_psi_value, device=obs.device)
        alpha = self.temperature().detach().expand(obs.shape[0])
        if self.config.alpha_psi_mode == "temperature":
            return alpha
        return alpha + self.networks["score_scale"](obs)

    @per_seed
    def critic_inputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        """SAC's draws, then the score-matching term's, no gradient: ``sm_actions`` (B, d), a ~ B
        (half from the current policy pi(.|s), half from U([-1, 1]^d)), and ``sm_score``
        (B, d), the frozen score_D(s, a) at them."""
        if self.dataset_score is None:
            raise SmacError("smac needs its dataset score model: call prepare_offline(dataset, "
                            "buffer, artifacts) before update()")
        inputs = super().critic_inputs(batch)
        obs = batch.observations
        half = obs.shape[0] // 2
        with torch.no_grad():
            policy_actions, _ = self.actor(obs[:half])
            uniform_actions = torch.empty_like(batch.actions[half:]).uniform_(-1.0, 1.0)
            actions = torch.cat([policy_actions, uniform_actions])
            score = self.dataset_score(obs, actions)                               # (B, d)
        return inputs | {"sm_actions": actions, "sm_score": score}

    def critic_regularizer(self, batch: Batch, q: torch.Tensor, inputs: dict[str, torch.Tensor]
                           ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """kappa * L_SM, added to SAC's TD loss: L = L_TD + kappa * L_SM, at the actions and
        scores of ``critic_inputs``."""
        obs, actions, score = batch.observations, inputs["sm_actions"], inputs["sm_score"]
        half = obs.shape[0] // 2
        scale = self.alpha_psi(obs)                                                    # (B,)
        sm, grad_q = score_matching_loss(self.critic, obs, actions, score, scale,
                                         fused=not self.seed_stacked)
        with torch.no_grad():
            grad_norm, score_norm = grad_q.norm(dim=-1), score.norm(dim=-1)       # (N, B), (B,)
            # cos(grad_a Q_i, score_D) as F.cosine_similarity: each norm floored at 1e-8
            cosine = (grad_q * score).sum(-1) / (grad_norm.clamp_min(1e-8)
                                                 * score_norm.clamp_min(1e-8))
        return self.config.kappa * sm, {
            "sm_loss": sm, "score_cosine": cosine.mean(), "alpha_psi": scale.mean(),
            "grad_q_norm": grad_norm.mean(),
            # what a flat critic would pay: the regulariser's grip on the critic
            "sm_loss_flat_critic": (scale * score_norm).pow(2).mean() * self.critic.ensemble_size,
            # the score at uniform actions extrapolates the eps-model away from the data (times
            # 1/sigma_1): watch it apart from the on-policy half
            "score_norm_policy": score_norm[:half].mean(),
            "score_norm_uniform": score_norm[half:].mean()}
