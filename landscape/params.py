"""Checkpoints as points of a parameter space: named, ordered parameter vectors.

A policy's parameter vector is the concatenation, in ``named_parameters()`` order, of its
``DeterministicPolicy`` parameters (the actor's ``trunk.*`` and ``mu.*``), flattened to float32;
for a flow agent's checkpoint (QAM, TRQAM) those of its ``FlowPolicy``, the fine-tuned velocity
field that acts (``field.net.*``; the base flows and critics are not part of the policy), which
every landscape point runs for the checkpoint's ``flow_steps`` Euler steps from the evaluation
noise of ``smac_core.rollout`` (common random numbers per episode and step).
``refuse_flow_policies`` keeps flow checkpoints out of the commands whose objective is not
defined for them (``critic``, ``risk``).
Observation normalisation and action bounds are buffers of the policy, not parameters: they do
not move when parameters are interpolated, and every vector is evaluated with those of the first
checkpoint (the template). ``check_compatible`` therefore refuses checkpoints that normalise
observations differently (B's weights with A's normalisation would be neither policy), as well
as checkpoints trained on different envs or action bounds. Runs share a normalisation when they
start from the same data: an offline run and the online runs started from it (``--from`` copies
the offline normalisation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from smac_core.checkpoint import Checkpoint, load_checkpoint, sub_state_dict
from smac_core.errors import SmacError


@dataclass(frozen=True)
class ParamSpec:
    """Names, shapes and dtypes of a module's parameters, in vector order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[torch.dtype, ...]

    @property
    def numels(self) -> tuple[int, ...]:
        return tuple(math.prod(shape) for shape in self.shapes)

    @property
    def size(self) -> int:
        """D, the length of a parameter vector."""
        return sum(self.numels)


def _spec_of(tensors: dict[str, torch.Tensor]) -> ParamSpec:
    return ParamSpec(tuple(tensors), tuple(tuple(t.shape) for t in tensors.values()),
                     tuple(t.dtype for t in tensors.values()))


def param_spec(module: nn.Module) -> ParamSpec:
    return _spec_of(dict(module.named_parameters()))


def _flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).to(torch.float32) for t in tensors])


def flatten_params(module: nn.Module) -> torch.Tensor:
    """The module's parameters as one (D,) float32 vector, in ``param_spec`` order."""
    return _flatten(list(module.parameters()))


def unflatten_params(vector: torch.Tensor, spec: ParamSpec) -> dict[str, torch.Tensor]:
    """Split a (D,) vector, or a (P, D) stack of them, into named tensors of shape
    ``(*shape)``, or ``(P, *shape)``, in the spec's dtypes (views when the dtype matches)."""
    if vector.dim() not in (1, 2) or vector.shape[-1] != spec.size:
        raise SmacError(f"expected a parameter vector of shape (D,) or (P, D) with D = "
                        f"{spec.size}, got shape {tuple(vector.shape)}")
    batch = vector.shape[:-1]
    chunks = torch.split(vector, spec.numels, dim=-1)
    return {name: chunk.reshape(*batch, *shape).to(dtype)
            for name, shape, dtype, chunk in zip(spec.names, spec.shapes, spec.dtypes, chunks,
                                                 strict=True)}


def check_finite(vectors: torch.Tensor, spec: ParamSpec, what: str) -> None:
    """SmacError naming the first parameter (and row, for a (P, D) stack) holding NaN/Inf."""
    bad = ~torch.isfinite(vectors.reshape(-1, spec.size))
    if not bad.any():
        return
    row, column = (int(i) for i in bad.nonzero()[0])
    offset = 0
    for name, numel in zip(spec.names, spec.numels, strict=True):
        if column < offset + numel:
            where = f"vector {row}, " if vectors.dim() == 2 else ""
            raise SmacError(f"{what}: {where}parameter '{name}' contains NaN/Inf values")
        offset += numel


def _as_checkpoint(source: str | Path | Checkpoint) -> Checkpoint:
    return source if isinstance(source, Checkpoint) else load_checkpoint(source)


def policy_vector(source: str | Path | Checkpoint) -> tuple[torch.Tensor, Checkpoint]:
    """A checkpoint (or run directory: its final checkpoint) -> ((D,) vector of its
    ``DeterministicPolicy`` parameters, the checkpoint). ``checkpoint.policy`` is the template
    the vector belongs to (``param_spec(checkpoint.policy)``)."""
    checkpoint = _as_checkpoint(source)
    vector = flatten_params(checkpoint.policy)
    check_finite(vector, param_spec(checkpoint.policy), f"checkpoint {checkpoint.path}")
    return vector, checkpoint


def critic_vector(source: str | Path | Checkpoint) -> tuple[torch.Tensor, ParamSpec]:
    """The (D,) vector of a checkpoint's ``critic.*`` tensors and its spec (names without the
    ``critic.`` prefix, so ``unflatten_params`` gives a state dict for the critic module)."""
    checkpoint = _as_checkpoint(source)
    critic = sub_state_dict(checkpoint.tensors, "critic")
    if not critic:
        networks = sorted({name.split(".", 1)[0] for name in checkpoint.tensors})
        raise SmacError(f"checkpoint {checkpoint.path} has no critic (no 'critic.*' tensors); "
                        f"its networks are: {', '.join(networks)}")
    spec = _spec_of(critic)
    vector = _flatten(list(critic.values()))
    check_finite(vector, spec, f"checkpoint {checkpoint.path} (critic)")
    return vector, spec


def refuse_flow_policies(checkpoints: Sequence[Checkpoint], command: str) -> None:
    """SmacError when a checkpoint holds a flow policy (QAM, TRQAM): ``command``'s objective
    (a critic's value of the policy's actions on dataset states, differentiated or not) is
    defined here for deterministic actors only; ``interpolate``, ``surface``, ``trajectory`` and
    ``path`` take flow checkpoints."""
    from smac_core.rollout import noise_dim

    for checkpoint in checkpoints:
        if noise_dim(checkpoint.policy) > 0:
            raise SmacError(
                f"landscape.{command} does not take flow-policy checkpoints yet "
                f"({checkpoint.metadata['algorithm']}: {checkpoint.path}): its critic objective "
                "is defined for deterministic actors only; landscape.interpolate, surface, "
                "trajectory and path evaluate flow policies (common random numbers per episode and "
                "step)")


def _first_difference(a: ParamSpec, b: ParamSpec) -> str | None:
    for i in range(max(len(a.names), len(b.names))):
        if i >= len(a.names) or i >= len(b.names):
            name = a.names[i] if i < len(a.names) else b.names[i]
            return f"parameter '{name}' exists in only one of them"
        if a.names[i] != b.names[i]:
            return f"parameter {i} is '{a.names[i]}' in one and '{b.names[i]}' in the other"
        if a.shapes[i] != b.shapes[i]:
            return f"parameter '{a.names[i]}' has shape {a.shapes[i]} vs {b.shapes[i]}"
        if a.dtypes[i] != b.dtypes[i]:
            return f"parameter '{a.names[i]}' has dtype {a.dtypes[i]} vs {b.dtypes[i]}"
    return None


def check_compatible(checkpoints: Sequence[Checkpoint], same_normalisation: bool = True) -> None:
    """Make sure the checkpoints' policies are points of one parameter space and one task.

    SmacError naming the first parameter whose name, shape or dtype differs (and the two
    checkpoints), or a differing env or action bounds, or (``same_normalisation``, for
    checkpoints evaluated with the first one's normalisation) differing observation
    normalisation, with the largest difference of the mean and of the std.
    """
    if not checkpoints:
        raise SmacError("no checkpoints given")
    first = checkpoints[0]
    spec = param_spec(first.policy)
    for other in checkpoints[1:]:
        pair = f"checkpoints {first.path} and {other.path}"
        difference = _first_difference(spec, param_spec(other.policy))
        if difference is not None:
            raise SmacError(f"{pair} have different policy architectures: {difference}")
        steps = [getattr(c.policy, "steps", None) for c in (first, other)]
        if steps[0] != steps[1]:
            raise SmacError(f"{pair} integrate their flows with different numbers of Euler "
                            f"steps (flow_steps {steps[0]} vs {steps[1]})")
        if other.env_name != first.env_name:
            raise SmacError(f"{pair} were trained on different envs: "
                            f"{first.env_name!r} vs {other.env_name!r}")
        for bound in ("action_low", "action_high"):
            if not torch.equal(getattr(first.policy, bound), getattr(other.policy, bound)):
                raise SmacError(f"{pair} have different action bounds ({bound})")
        gaps = {stat: (getattr(first.policy, stat) - getattr(other.policy, stat)).abs()
                for stat in ("obs_mean", "obs_std")}
        if same_normalisation and any(gap.max() > 0 for gap in gaps.values()):
            differences = ", ".join(f"max |{stat} difference| = {gap.max():.3g} (dimension "
                                    f"{int(gap.argmax())})" for stat, gap in gaps.items())
            raise SmacError(f"{pair} normalise observations differently ({differences}): the "
                            f"parameters of {other.path} would be evaluated with the "
                            f"normalisation of {first.path}, which is neither policy. Give "
                            "checkpoints of runs that share a normalisation (an offline run and "
                            "the online runs started from it with --from)")
