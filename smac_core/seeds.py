"""Seed-stacked training: S independent seeds of one algorithm updated as one agent whose
tensors carry a leading seed axis, so that every layer is one batched matmul across seeds.

``SeedStack(agents, rng_states)`` takes the S agents as their single-seed runs build them (so
each starts from its own seed's initial weights) and:

- stacks every parameter and buffer of their networks into one tensor (S, *shape) of the
  *stacked agent*, a copy of seed 0's agent; each seed's own agent keeps its modules, whose
  tensors become views ``[k]`` of the stacked ones, so acting, evaluation and checkpoint
  writing read seed k's current values without a copy;
- rebuilds the stacked agent's optimizers over the stacked tensors with the same kinds, groups
  and hyperparameters: AdamW is elementwise, so seed k's slice moves exactly as seed k's own
  optimizer would move it; Muon orthogonalises each seed's matrices separately (its
  ``seed_axis`` groups);
- replaces methods of the stacked agent. ``gradient_step`` evaluates the algorithm's own loss
  function once for all seeds (``torch.func.vmap`` over the seed axis of the tensors and
  inputs, ``functional_call`` on the agent's modules) and backpropagates the sum of the S
  losses: seed k's parameters get seed k's gradient, since no seed's loss reads another's
  parameters. Every ``per_seed`` method (the random draws and no-gradient inputs of a step:
  SAC's ``critic_inputs``, ``policy_inputs``) runs seed by seed instead, seed k's own agent on
  seed k's random stream: torch's global generator in the state it has in seed k's
  single-seed run (``rng_states``, kept per seed and swapped in by ``seed_rng``), and the
  results are stacked.

So an update of the stacked agent computes, for every seed, the update its single-seed run
computes, in float32 arithmetic summed in another order (batched instead of single GEMMs): the
runs agree to rounding, which grows slowly over updates (tests/test_seeds.py states the
tolerance). A gradient clipped to a norm is clipped seed by seed. Algorithms whose update runs
through ``gradient_step`` and ``per_seed`` methods (``STACKABLE``: every registered one) can be
stacked.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from smac_core.algos.base import Agent, LossAndMetrics
from smac_core.data.buffers import Batch, ChunkBatch
from smac_core.errors import SmacError
from smac_core.optim import Muon

# the algorithms whose updates run through gradient_step and per_seed methods
STACKABLE = ("sac", "smac", "calql", "cql", "iql", "td3", "td3bc", "awr", "qam", "trqam")
PER_SEED_VALUES = ("target_entropy",)  # float attributes the losses read that differ by seed
SHARED_VALUES = ("reward_scale", "reward_bias", "cql_alpha", "expectile",  # attributes all
                 "actor_lr_horizon")                                       # seeds must share
SHARED_STATE = ("step",)  # optimizer-state entries all seeds share (AdamW's step count)

RngState = torch.Tensor  # torch.get_rng_state() (CPU), or that of the agent's CUDA device
AnyBatch = Batch | ChunkBatch


class _Networks(nn.Module):
    """The agent's networks as one module, so that ``functional_call`` swaps all their tensors:
    ``forward(fn, *args)`` calls ``fn(*args)`` (an agent method that uses the networks)."""

    def __init__(self, networks: dict[str, nn.Module]) -> None:
        super().__init__()
        self.networks = nn.ModuleDict(networks)

    def forward(self, fn: Callable[..., LossAndMetrics], *args: Any) -> LossAndMetrics:
        return fn(*args)


def stack_batches(batches: Sequence[AnyBatch]) -> AnyBatch:
    """S batches (``Batch`` or ``ChunkBatch``) of B transitions -> one of their kind whose
    fields are (S, B, ...)."""
    kind = type(batches[0])
    return kind(**{f.name: torch.stack([getattr(b, f.name) for b in batches])
                   for f in fields(kind)})


def _is_batch(value: Any) -> bool:
    return isinstance(value, Batch | ChunkBatch)


def rng_state(device: str | torch.device) -> RngState:
    """The state of torch's generator for ``device``: the CUDA device's, else the CPU one."""
    device = torch.device(device)
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_rng(state: RngState, device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


class SeedStack:
    """S agents of one algorithm and config trained as one stacked agent (module docstring).

    ``agents[k]`` is seed k's agent, ``rng_states[k]`` the state of torch's generator (that of
    the agents' device) in seed k's single-seed run at this point. ``update(batches)`` makes one
    update of every seed on its own batch and returns each seed's metrics.
    """

    def __init__(self, agents: Sequence[Agent], rng_states: Sequence[RngState]) -> None:
        _check_stackable(agents)
        if len(rng_states) != len(agents):
            raise SmacError(f"SeedStack: {len(agents)} agents but {len(rng_states)} rng states")
        self.agents, self.rng_states = list(agents), [s.clone() for s in rng_states]
        self.device = agents[0].device
        stacked = copy.deepcopy(agents[0])
        stacked_of: dict[int, torch.Tensor] = {}  # id(seed 0's tensor) -> stacked tensor
        for net_name, module in stacked.networks.items():
            seed_modules = [agent.networks[net_name] for agent in agents]
            for owner_name, owner in module.named_modules():
                seed_owners = [m.get_submodule(owner_name) for m in seed_modules]
                for kind in ("_parameters", "_buffers"):
                    for name, tensor in list(getattr(owner, kind).items()):
                        if tensor is None:
                            continue
                        per_seed = [getattr(o, kind)[name] for o in seed_owners]
                        value = torch.stack([t.detach() for t in per_seed])
                        if kind == "_parameters":
                            value = nn.Parameter(value, requires_grad=tensor.requires_grad)
                        getattr(owner, kind)[name] = value
                        for k, t in enumerate(per_seed):
                            t.data = value.data[k]  # seed k's tensor: a view into the stack
                        stacked_of[id(per_seed[0])] = value
        stacked.optimizers = {name: _stacked_optimizer(opt, stacked_of)
                              for name, opt in agents[0].optimizers.items()}
        stacked.gradient_step = self._gradient_step  # type: ignore[method-assign]
        for name, method in inspect.getmembers(type(stacked), callable):
            if getattr(method, "per_seed", False):
                setattr(stacked, name, functools.partial(self._per_seed_call, name))
        stacked.seed_stacked = True
        self.agent = stacked
        self._networks = _Networks(stacked.networks)
        self._tensors = dict(self._networks.named_parameters()) | dict(
            self._networks.named_buffers())
        self._stack_values()

    @property
    def seeds(self) -> int:
        return len(self.agents)

    # ------------------------------------------------------------------ random streams
    @contextmanager
    def seed_rng(self, k: int) -> Iterator[None]:
        """Inside the block torch's generator (of the agents' device) is seed k's stream: what
        seed k draws there is what its single-seed run draws. The stream is kept on exit and
        the generator's previous state restored."""
        previous = rng_state(self.device)
        _set_rng(self.rng_states[k], self.device)
        try:
            yield
        finally:
            self.rng_states[k] = rng_state(self.device)
            _set_rng(previous, self.device)

    def _per_seed_call(self, name: str, *args: Any) -> dict[str, torch.Tensor]:
        """The ``per_seed`` method ``name`` of every seed's own agent, on its slice of ``args``
        (a Batch or tensor with a seed axis) and its random stream; the results stacked."""
        results = []
        for k, agent in enumerate(self.agents):
            with self.seed_rng(k):
                results.append(getattr(agent, name)(*(_seed_slice(a, k) for a in args)))
        return {key: torch.stack([r[key] for r in results]) for key in results[0]}

    # ------------------------------------------------------------------ updates
    def _gradient_step(self, optimizers: Sequence[str], loss_fn: Callable[..., LossAndMetrics],
                       *inputs: Any, max_grad_norm: float | None = None
                       ) -> dict[str, torch.Tensor]:
        """``Agent.gradient_step`` for all seeds at once: ``loss_fn`` vmapped over the seed axis
        of the tensors and of every tensor, dict or batch input (any other input is shared); the
        named optimizers step on the gradient of the summed losses, clipped seed by seed.
        Metrics come back (S,)."""
        params = [p for name in optimizers
                  for group in self.agent.optimizers[name].param_groups for p in group["params"]]
        live = {id(p) for p in params}
        tensors = {name: t if id(t) in live else t.detach() for name, t in self._tensors.items()}
        kinds = {i: type(x) for i, x in enumerate(inputs) if _is_batch(x)}  # dicts inside vmap
        packed = [{f.name: getattr(x, f.name) for f in fields(x)} if i in kinds else x
                  for i, x in enumerate(inputs)]
        in_dims = tuple(0 if isinstance(x, dict | torch.Tensor) else None for x in packed)

        def one_seed(seed_tensors: dict[str, torch.Tensor], *seed_inputs: Any) -> LossAndMetrics:
            unpacked = [kinds[i](**x) if i in kinds else x for i, x in enumerate(seed_inputs)]
            return functional_call(self._networks, seed_tensors, (loss_fn, *unpacked))

        loss, metrics = vmap(one_seed, in_dims=(0, *in_dims), randomness="error")(
            tensors, *packed)
        for name in optimizers:
            self.agent.optimizers[name].zero_grad(set_to_none=True)
        loss.sum().backward()  # d(sum_j L_j)/d theta_k = dL_k/d theta_k
        if max_grad_norm is not None:
            _clip_grad_norm_per_seed(params, max_grad_norm)
        for name in optimizers:
            self.agent.optimizers[name].step()
        return metrics

    def update(self, batches: Sequence[AnyBatch]) -> list[dict[str, float]]:
        """One update of every seed, seed k on ``batches[k]``; each seed's metrics."""
        if len(batches) != self.seeds:
            raise SmacError(f"SeedStack.update: {self.seeds} seeds but {len(batches)} batches")
        metrics: dict[str, list[float]] = self.agent.update(stack_batches(batches))  # type: ignore[assignment]
        for agent in self.agents:
            agent.updates = self.agent.updates
        return [{name: values[k] for name, values in metrics.items()}
                for k in range(self.seeds)]

    # ------------------------------------------------------------------ state
    def export_state(self, k: int) -> None:
        """Write seed k's slice of the stacked optimizer states (and the update count) into
        seed k's own agent, so that its ``state_dict`` (a checkpoint's resume state) is the one
        its single-seed run would have."""
        agent = self.agents[k]
        for name, stacked_opt in self.agent.optimizers.items():
            state = stacked_opt.state_dict()
            seed_state = {i: {key: _slice(key, value, k) for key, value in s.items()}
                          for i, s in state["state"].items()}
            groups = [group | {"seed_axis": False} if "seed_axis" in group else group
                      for group in state["param_groups"]]
            agent.optimizers[name].load_state_dict({"state": seed_state, "param_groups": groups})
        agent.updates = self.agent.updates

    def import_state(self) -> None:
        """The inverse of ``export_state`` for all seeds: stack the optimizer states, update
        counts and per-seed values the seeds' agents hold (after each was restored from its
        checkpoint) into the stacked agent."""
        counts = {agent.updates for agent in self.agents}
        if len(counts) != 1:
            raise SmacError(f"the seeds' checkpoints are at different update counts {counts}; "
                            "a seed-stacked run resumes all its seeds from the same step")
        for name, stacked_opt in self.agent.optimizers.items():
            per_seed = [agent.optimizers[name].state_dict() for agent in self.agents]
            state = {i: {key: _stack(key, [sd["state"][i][key] for sd in per_seed]) for key in s}
                     for i, s in per_seed[0]["state"].items()}
            if any(sd["param_groups"] != per_seed[0]["param_groups"] for sd in per_seed[1:]):
                raise SmacError(f"the seeds' {name} optimizers have different settings (learning "
                                "rates); they cannot be resumed as one seed-stacked run")
            # the seeds' own settings (a learning rate annealed so far), Muon's seed axis on
            groups = [group | {"seed_axis": True} if "seed_axis" in group else group
                      for group in per_seed[0]["param_groups"]]
            stacked_opt.load_state_dict({"state": state, "param_groups": groups})
        self.agent.updates = counts.pop()
        self._stack_values()

    def _stack_values(self) -> None:
        """The stacked agent's per-seed float attributes as (S,) tensors (inputs the losses
        are vmapped over)."""
        for name in PER_SEED_VALUES:
            if hasattr(self.agents[0], name):
                setattr(self.agent, name, torch.tensor(
                    [float(getattr(agent, name)) for agent in self.agents], device=self.device))


@torch.no_grad()
def _clip_grad_norm_per_seed(params: list[torch.Tensor], max_norm: float) -> None:
    """``nn.utils.clip_grad_norm_`` for each seed's slice of stacked parameters: seed k's
    gradients scaled by min(1, max_norm / (||g_k|| + 1e-6)), ||g_k|| the norm of all of them."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    norms = torch.stack([g.reshape(g.shape[0], -1).norm(dim=1) for g in grads])  # (P, S)
    scale = (max_norm / (norms.norm(dim=0) + 1e-6)).clamp(max=1.0)             # (S,)
    for g in grads:
        g.mul_(scale.view(-1, *[1] * (g.dim() - 1)))


def _seed_slice(value: Any, k: int) -> Any:
    """Seed k's part of a seed-stacked batch or tensor; anything else as is."""
    if _is_batch(value):
        return type(value)(**{f.name: getattr(value, f.name)[k] for f in fields(value)})
    return value[k] if isinstance(value, torch.Tensor) else value


def _slice(key: str, value: Any, k: int) -> Any:
    """Seed k's part of one optimizer-state entry: a shared one (``SHARED_STATE``) is copied,
    a tensor stacked like its parameter is sliced."""
    if key in SHARED_STATE or not isinstance(value, torch.Tensor):
        return value.clone() if isinstance(value, torch.Tensor) else value
    return value[k].clone()


def _stack(key: str, values: list[Any]) -> Any:
    """The inverse of ``_slice``: per-seed tensors are stacked; a shared entry must be equal
    in every seed."""
    first = values[0]
    if key not in SHARED_STATE and isinstance(first, torch.Tensor):
        return torch.stack(values)
    if any(not _equal(first, v) for v in values[1:]):
        raise SmacError(f"the seeds' optimizer states differ in their shared '{key}'; they "
                        "cannot be resumed as one seed-stacked run")
    return first


def _equal(a: Any, b: Any) -> bool:
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def _stacked_optimizer(optimizer: torch.optim.Optimizer,
                       stacked_of: dict[int, torch.Tensor]) -> torch.optim.Optimizer:
    """``optimizer``'s kind, groups and hyperparameters over the stacked tensors of its
    parameters; Muon groups get ``seed_axis`` (each seed's matrices orthogonalised apart)."""
    groups = []
    for group in optimizer.param_groups:
        stacked_group = {**group, "params": [stacked_of[id(p)] for p in group["params"]]}
        if isinstance(optimizer, Muon):
            stacked_group["seed_axis"] = True
        groups.append(stacked_group)
    return type(optimizer)(groups)


def _check_stackable(agents: Sequence[Agent]) -> None:
    if not agents:
        raise SmacError("SeedStack needs at least one agent")
    first = agents[0]
    if first.name not in STACKABLE:
        raise SmacError(f"{first.name} cannot be trained seed-stacked; algorithms that can: "
                        f"{list(STACKABLE)}")
    for agent in agents[1:]:
        if type(agent) is not type(first) or agent.config != first.config:
            raise SmacError("seed-stacked agents must share the algorithm and its config")
        if agent.device != first.device:
            raise SmacError("seed-stacked agents must live on one device")
        for name in SHARED_VALUES:
            if getattr(agent, name, None) != getattr(first, name, None):
                raise SmacError(f"seed-stacked agents must share {name}: {getattr(first, name)} "
                                f"!= {getattr(agent, name)} (their datasets or checkpoints "
                                "differ)")
