"""The offline -> online handoff: one rule for every (offline, online) pair (``train online
--from RUN --handoff matched|inherit``).

``matched`` (the default): the online agent starts from the offline policy as it was, and the
online algorithm's own knobs start where they leave that policy unchanged.

1. Networks: ``Agent.load_pretrained`` (actor, critics, target re-sync, reward units).
2. Policy: at step 0 the online agent acts as the offline one did.

   - Stochastic offline actor (SMAC, CalQL, CQL, IQL: all ``TanhGaussianActor``, a =
     tanh(u), u ~ N(mu(h), exp(clamp(log_std(h), -5, 2))^2), state-dependent log-std head) ->
     SAC, AWR: the whole actor, so the same mean action tanh(mu) and the same distribution.
   - Deterministic offline actor (TD3+BC) -> SAC, AWR: its tanh(mu) and a state-independent
     log-std of log(0.1) (head weights 0, bias log 0.1), not a fresh head (std ~1): pre-tanh
     std 0.1, TD3's exploration noise (``TD3Config.exploration_noise``) in action units where
     the mean is inside the box (tanh' = 1 at 0; near the bounds both shrink, TD3's by clipping).
   - -> TD3, TD3+BC: tanh(mu) (a stochastic actor's log-std is dropped), explored with their own
     N(0, 0.1^2) noise clipped to the box, part of their algorithm and the same for every source.

3. Temperature (SAC): the handed-over entropy is a fixed point of both SAC updates at step 0.

   - Target entropy H_0 = E_{s~D, a~pi}[-log pi(a|s)] on the offline dataset's states: the
     temperature's gradient E[-(log pi + H_target)] is then 0 at step 0, so the tuning does not
     push entropy up (SAC's default -act_dim does, for a policy narrower than that) or down.
   - Initial temperature alpha_0 = (dE[Q]/d delta) / (dE[log pi]/d delta), delta a common shift
     of every log-std: the actor's loss E[alpha log pi - Q] is stationary in delta, widening or
     narrowing the policy gains no soft value. For a critic locally quadratic in the action,
     alpha_0 = std^2 * curvature, the temperature whose soft-optimal std is the handed-over one;
     a SAC-trained actor (SMAC, CalQL, CQL) at convergence recovers its trained temperature.
     Floored at ``MIN_INITIAL_ALPHA`` when the critic rewards wider policies (no positive
     temperature is then stationary).

   Why not one fixed initial value: alpha is in Q units, which differ between the methods'
   critics (CalQL's 10 r + 5, IQL's 1000 / return spread), so one number is a different
   exploration pressure for each; and with Adam at lr 3e-4 on log alpha, the temperature moves
   by about a factor e^0.15 at most in 500 steps: alpha_0 *is* the temperature of the early
   window where transfer drops are measured.

``inherit`` (the behaviour before this rule): ``load_pretrained`` only. SAC from SMAC/CalQL/CQL
keeps their trained temperature, from IQL/TD3+BC starts at ``initial_alpha`` (1.0); the target
entropy is the config's (-act_dim); a deterministic actor leaves a fresh log-std head.

Both rules log the step-0 values (``hand_over``'s dict, in the run's ``config.json``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from smac_core.algos.base import Agent, reduce_ensemble
from smac_core.algos.sac import SAC
from smac_core.algos.td3 import TD3Config
from smac_core.nets import TanhGaussianActor, tanh_gaussian_log_prob

DETERMINISTIC_SOURCE_STD = TD3Config.exploration_noise  # 0.1, in action units
MIN_INITIAL_ALPHA = 1e-4
HANDOFF_PAIRS = 8192  # dataset states drawn (with replacement), each with noises eps and -eps
HANDOFF_STREAM = 8    # SeedSequence([run seed, stream]) seeds the measurement


def entropy_and_stationary_alpha(agent: SAC, observations: torch.Tensor,
                                 generator: torch.Generator) -> tuple[float, float]:
    """H = E_{s~D, a~pi}[-log pi(a|s)] and alpha* = (dE[Q]/d delta) / (dE[log pi]/d delta)
    of a SAC agent's policy (module docstring), Q the ensemble reduced as in SAC's actor loss.

    ``observations`` (N, obs_dim): normalised dataset states. Antithetic noise (eps, -eps)
    cancels the critic's slope in dE[Q]/d delta, leaving the curvature that sets alpha*.
    """
    cfg, device = agent.config, observations.device
    index = torch.randint(len(observations), (HANDOFF_PAIRS,), generator=generator)
    obs = observations[index.to(device)].repeat(2, 1)
    eps = torch.randn(HANDOFF_PAIRS, agent.act_dim, generator=generator).to(device)
    eps = torch.cat([eps, -eps])
    with torch.no_grad():
        mean, std = agent.actor.distribution(obs)
    delta = torch.zeros((), device=device, requires_grad=True)
    # u = mu + exp(log std + delta) eps,  a = tanh(u)
    shifted_std = std * delta.exp()
    u = mean + shifted_std * eps
    log_prob = tanh_gaussian_log_prob(u, mean, shifted_std)                         # (2P,)
    q = reduce_ensemble(agent.critic(obs, torch.tanh(u)), cfg.target_reduction,
                        cfg.target_std_weight)                                       # (2P,)
    (d_log_prob,) = torch.autograd.grad(log_prob.mean(), delta, retain_graph=True)
    (d_q,) = torch.autograd.grad(q.mean(), delta)
    return -log_prob.mean().item(), (d_q / d_log_prob).item()


def hand_over(agent: Agent, tensors: dict[str, torch.Tensor], metadata: dict[str, Any],
              observations: torch.Tensor, rule: str, seed: int) -> dict[str, Any]:
    """Start the online ``agent`` from an offline checkpoint under ``rule`` (module docstring).

    ``tensors``, ``metadata``: the checkpoint's; ``observations`` (N, obs_dim): its dataset's
    states, normalised as the agent sees them. Returns the values to log: the rule, the fixed
    log-std given to a deterministic actor (or None), and for SAC the step-0 entropy, target
    entropy, temperature and the stationary temperature alpha*.
    """
    agent.load_pretrained(tensors, metadata)
    values: dict[str, Any] = {"rule": rule, "fixed_log_std": None}
    deterministic_source = "actor.log_std.weight" not in tensors
    if rule == "matched" and deterministic_source and isinstance(agent.actor, TanhGaussianActor):
        log_std = math.log(DETERMINISTIC_SOURCE_STD)
        with torch.no_grad():
            agent.actor.log_std.weight.zero_()
            agent.actor.log_std.bias.fill_(log_std)
        values["fixed_log_std"] = log_std
    if isinstance(agent, SAC):
        seed_sequence = np.random.SeedSequence([seed, HANDOFF_STREAM])
        generator = torch.Generator().manual_seed(int(seed_sequence.generate_state(1)[0]))
        entropy, alpha = entropy_and_stationary_alpha(agent, observations, generator)
        if rule == "matched":
            agent.target_entropy = entropy
            with torch.no_grad():
                agent.temperature.log_alpha.fill_(math.log(max(alpha, MIN_INITIAL_ALPHA)))
        values |= {"entropy": entropy, "target_entropy": agent.target_entropy,
                   "initial_alpha": agent.temperature().item(), "stationary_alpha": alpha}
    return values
