"""CalQL (Nakamoto et al. 2023, arXiv 2303.05479) and CQL (Kumar et al. 2020, arXiv 2006.04779).

Both are SAC (actor, temperature and target networks unchanged) whose critic loss adds CQL's
conservative term

    alpha_cql * E_s[ logsumexp_a Q(s, a) - Q(s, a_data) ],

the log-sum-exp estimated, as in CQL(H) and CORL's ``algorithms/finetune/cal_ql.py``, by
importance sampling over ``num_sampled_actions`` actions from each of: the uniform distribution
on [-1, 1]^d (density 0.5^d), the current policy at s and the current policy at s' (evaluated at
s, as in CORL and the CQL authors' code), each Q-value minus the log-density of its proposal. As
in CORL, the constant log(3 n) is not subtracted and the gap is clipped from below at
``cql_clip_diff_min``. CalQL additionally floors the policy-action Q-values by the Monte-Carlo
return-to-go of the state (``max(Q(s, a~pi), G(s))``) before the log-sum-exp, so the critic is
never pushed below the value of the behaviour policy; CQL is the same with the floor off.

The TD target follows CORL's CalQL configs: max target backup (the best of
``num_sampled_actions`` next actions) and no entropy term in the backup.

Defaults (CORL ``cal_ql.py`` and ``configs/finetune/cal_ql/*``, the Cal-QL authors'
``scripts/run_{adroit,kitchen}.sh``): policy and temperature lr 1e-4, critic lr 3e-4, 10 sampled
actions, gap clipped at -200; ``None`` in the config means the value below, resolved by
``prepare_offline`` from the dataset (the dense, non-Adroit values until then):

- alpha_cql: 1 on Adroit (task family of the dataset's task, CORL's door config), 5 otherwise
  (AntMaze, Kitchen: CORL and Cal-QL's run_kitchen.sh).
- reward scale, bias: 10, 5 on binary-reward data (every reward -1 or 0, the AWAC/CalQL Adroit
  convention: -1 -> -5, 0 -> +5, Cal-QL's run_adroit.sh), 1, 0 otherwise (CORL's dense
  configs). Rewards are scaled inside ``update``; the buffer keeps the dataset's rewards.

CORL and Cal-QL use 3-layer critics on Adroit; here the network sizes stay the shared defaults
(set ``critic_hidden``).

Returns-to-go (the floor) are recomputed by ``prepare_offline`` from the scaled rewards and
written into the buffer. Binary-reward data get CORL's sparse-reward rule: an episode whose
*last* reward is the failure reward r_fail (-1 scaled) is a failure, and every one of its
returns-to-go is r_fail / (1 - gamma), the value of failing forever, rather than a truncated sum
that would overstate a failing policy's value near the end of the data. (The Cal-QL authors'
code tests "all rewards are r_fail"; CORL tests the last one.) A NaN return-to-go (online data
without a Monte-Carlo return) disables the floor for that transition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from smac_core.algos.base import check_config, dataset_task, per_seed, reduce_ensemble
from smac_core.algos.sac import SAC, SACConfig
from smac_core.data.buffers import Batch, ReplayBuffer
from smac_core.data.dataset import TransitionDataset
from smac_core.errors import SmacError
from smac_core.state import ArtifactStore

BINARY_FAILURE_REWARD = -1.0


ADROIT_CQL_ALPHA, DEFAULT_CQL_ALPHA = 1.0, 5.0
BINARY_REWARD_SCALE_BIAS, DENSE_REWARD_SCALE_BIAS = (10.0, 5.0), (1.0, 0.0)


@dataclass
class CalQLConfig(SACConfig):
    """SAC's fields plus the conservative term; ``None`` = the dataset's default (module
    docstring)."""

    actor_lr: float = 1e-4
    alpha_lr: float = 1e-4
    cql_alpha: float | None = None
    num_sampled_actions: int = 10
    cql_temperature: float = 1.0
    cql_clip_diff_min: float = -200.0
    max_target_backup: bool = True
    calibrated: bool = True           # the Monte-Carlo floor: CalQL True, CQL False
    reward_scale: float | None = None
    reward_bias: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_config(self.num_sampled_actions >= 1, self,
                     f"num_sampled_actions must be >= 1; got {self.num_sampled_actions}")
        check_config(self.cql_temperature > 0.0, self,
                     f"cql_temperature must be positive; got {self.cql_temperature}")
        check_config(self.cql_alpha is None or self.cql_alpha >= 0.0, self,
                     f"cql_alpha must be >= 0; got {self.cql_alpha}")


@dataclass
class CQLConfig(CalQLConfig):
    """CalQL with the floor off."""

    calibrated: bool = False


def conservative_gap(q_data: torch.Tensor, q_random: torch.Tensor, q_current: torch.Tensor,
                     q_next: torch.Tensor, log_pi_current: torch.Tensor,
                     log_pi_next: torch.Tensor, act_dim: int, floor: torch.Tensor | None,
                     temperature: float = 1.0) -> torch.Tensor:
    """CQL's gap logsumexp_a Q(s, a) - Q(s, a_data) per ensemble member and state: (N, B).

    ``q_data`` (N, B); ``q_random``, ``q_current``, ``q_next`` (N, B, n): Q at actions drawn
    uniformly from [-1, 1]^act_dim, from pi(.|s) and from pi(.|s'); ``log_pi_current``,
    ``log_pi_next`` (B, n) the log-densities of the policy actions; ``floor`` (B,) CalQL's lower
    bound of the policy-action Q-values, or None (CQL).
    """
    if floor is not None:
        # CalQL: Q(s, a~pi) <- max(Q(s, a~pi), G(s)); NaN (no Monte-Carlo return) = no floor
        bound = torch.nan_to_num(floor, nan=-math.inf)[None, :, None]
        q_current, q_next = torch.maximum(q_current, bound), torch.maximum(q_next, bound)
    # importance sampling: each Q(s, a_j) minus log mu(a_j), mu = U([-1, 1]^d) (density 0.5^d)
    # or the policy that proposed a_j
    weighted = torch.cat([q_random - act_dim * math.log(0.5),
                          q_next - log_pi_next.unsqueeze(0),
                          q_current - log_pi_current.unsqueeze(0)], dim=-1)     # (N, B, 3n)
    # T * logsumexp_j(x_j / T) - Q(s, a_data)
    return temperature * torch.logsumexp(weighted / temperature, dim=-1) - q_data


class CalQL(SAC):
    """SAC + CQL's conservative critic term, with the Monte-Carlo floor (module docstring): SAC's
    update and critic loss J_Q + R, with its own TD target (``td_target``) and R the conservative
    term (``critic_regularizer``)."""

    name = "calql"
    config_class = CalQLConfig
    phases = frozenset({"offline"})
    config: CalQLConfig

    def __init__(self, obs_dim: int, act_dim: int, config: CalQLConfig,
                 device: str | torch.device = "cpu") -> None:
        super().__init__(obs_dim, act_dim, config, device)
        self.set_defaults(adroit=False, binary=False)

    def set_defaults(self, adroit: bool, binary: bool) -> None:
        """Fill the config's ``None`` fields (cql_alpha, reward scale, bias); module docstring."""
        cfg = self.config
        default_alpha = ADROIT_CQL_ALPHA if adroit else DEFAULT_CQL_ALPHA
        default_scale, default_bias = BINARY_REWARD_SCALE_BIAS if binary \
            else DENSE_REWARD_SCALE_BIAS
        self.cql_alpha = default_alpha if cfg.cql_alpha is None else cfg.cql_alpha
        self.reward_scale = default_scale if cfg.reward_scale is None else cfg.reward_scale
        self.reward_bias = default_bias if cfg.reward_bias is None else cfg.reward_bias

    def prepare_offline(self, dataset: TransitionDataset, buffer: ReplayBuffer,
                        artifacts: ArtifactStore) -> None:
        """Resolve the dataset's defaults; write calibrated returns-to-go into ``buffer``."""
        task = dataset_task(dataset)
        binary = bool(np.isin(dataset.rewards, (BINARY_FAILURE_REWARD, 0.0)).all())
        self.set_defaults(adroit=task is not None and task.family == "adroit", binary=binary)
        if buffer.size != dataset.size:
            raise SmacError(f"{self.name}: the replay buffer holds {buffer.size} transitions, "
                            f"the dataset {dataset.size}; it must hold exactly the dataset")
        returns = self.calibration_returns(dataset, sparse=binary)
        buffer.storage["returns_to_go"][: buffer.size] = torch.as_tensor(returns,
                                                                         device=buffer.device)

    def calibration_returns(self, dataset: TransitionDataset, sparse: bool) -> np.ndarray:
        """Discounted returns-to-go of the scaled rewards (N,), with the sparse-reward rule."""
        scaled = replace(dataset, rewards=self.reward_scale * dataset.rewards + self.reward_bias)
        returns = scaled.returns_to_go(self.config.gamma)
        if sparse:
            failure = self.reward_scale * BINARY_FAILURE_REWARD + self.reward_bias
            for episode in dataset.episode_slices():
                if scaled.rewards[episode.stop - 1] == np.float32(failure):
                    returns[episode] = failure / (1.0 - self.config.gamma)
        return returns

    @per_seed
    def critic_inputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        """CalQL's draws, no gradient: ``next_actions`` (B k, act_dim), k next actions per state
        for the max backup (k = ``num_sampled_actions``, 1 without ``max_target_backup``), and
        the CQL proposals, n = ``num_sampled_actions`` per state, all evaluated at s:
        ``random_actions`` ~ U([-1, 1]^d), ``current_actions`` ~ pi(.|s) and ``next_actions_cql``
        ~ pi(.|s'), (B n, act_dim) each, with their log-densities ``log_pi_current``,
        ``log_pi_next`` (B n,)."""
        cfg = self.config
        k = cfg.num_sampled_actions if cfg.max_target_backup else 1
        n, (batch_size, act_dim) = cfg.num_sampled_actions, batch.actions.shape
        obs, next_obs = batch.observations, batch.next_observations
        with torch.no_grad():
            # a'_j ~ pi(.|s'), k per state
            next_actions, _ = self.actor(next_obs.repeat_interleave(k, dim=0))
            # CQL samples, n per state: a ~ U([-1, 1]^d), a ~ pi(.|s), a ~ pi(.|s'), all at s
            random_actions = torch.empty(batch_size * n, act_dim, device=obs.device).uniform_(-1, 1)
            current_actions, log_pi_current = self.actor(obs.repeat_interleave(n, dim=0))
            next_actions_cql, log_pi_next = self.actor(next_obs.repeat_interleave(n, dim=0))
        return {"next_actions": next_actions, "random_actions": random_actions,
                "current_actions": current_actions, "log_pi_current": log_pi_current,
                "next_actions_cql": next_actions_cql, "log_pi_next": log_pi_next}

    def td_target(self, batch: Batch, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """y = r + gamma (1 - d) max_j reduce_i Q_target_i(s', a'_j), a'_j ~ pi(.|s')
        (``inputs["next_actions"]``): the max over ``num_sampled_actions`` next actions (one
        without ``max_target_backup``), no entropy term (CORL's CalQL configs)."""
        cfg = self.config
        k = cfg.num_sampled_actions if cfg.max_target_backup else 1
        with torch.no_grad():
            next_obs_k = batch.next_observations.repeat_interleave(k, dim=0)
            # V(s') = max_j reduce_i Q_target_i(s', a'_j)
            next_q = reduce_ensemble(self.critic_target(next_obs_k, inputs["next_actions"]),
                                     cfg.target_reduction, cfg.target_std_weight)
            next_v = next_q.view(-1, k).max(dim=1).values
            # y = r + gamma (1 - d) V(s')
            return self.learning_rewards(batch) + cfg.gamma * (1.0 - batch.dones) * next_v

    def critic_regularizer(self, batch: Batch, q_data: torch.Tensor,
                           inputs: dict[str, torch.Tensor]
                           ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The conservative term alpha_cql * sum_i E_s[max(gap_i(s), clip_min)] (module
        docstring); ``q_data`` (N, B) = Q_i(s, a_data), the proposals from ``inputs``."""
        cfg = self.config
        obs = batch.observations
        n, (batch_size, act_dim) = cfg.num_sampled_actions, batch.actions.shape
        sampled = torch.cat([inputs["random_actions"], inputs["current_actions"],
                             inputs["next_actions_cql"]])
        q_sampled = self.critic(obs.repeat_interleave(n, dim=0).repeat(3, 1), sampled)
        q_random, q_current, q_next = q_sampled.view(-1, 3, batch_size, n).unbind(1)
        # gap_i(s) = logsumexp_a Q_i(s, a) - Q_i(s, a_data), CalQL's floor max(Q, G(s)) inside
        floor = batch.returns_to_go if cfg.calibrated else None
        gap = conservative_gap(q_data, q_random, q_current, q_next,
                               inputs["log_pi_current"].view(batch_size, n),
                               inputs["log_pi_next"].view(batch_size, n), act_dim, floor,
                               cfg.cql_temperature)
        # alpha_cql * sum_i E_s[max(gap_i(s), clip_min)]
        conservative = self.cql_alpha * gap.clamp(min=cfg.cql_clip_diff_min).mean(dim=1).sum()

        # fraction of policy-action Q-values below the return-to-go (lifted when calibrated)
        below = torch.stack([q_current, q_next]) < batch.returns_to_go[:, None]
        return conservative, {"cql_loss": conservative, "cql_gap": gap.mean(),
                              "q_random": q_random.mean(),
                              "below_return_rate": below.float().mean()}


class CQL(CalQL):
    """CalQL with the Monte-Carlo floor off (``calibrated=False``)."""

    name = "cql"
    config_class = CQLConfig
