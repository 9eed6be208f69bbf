"""Optimizers: ``make_optimizer(modules, lr, kind)`` builds AdamW or Muon (+ AdamW) for a network.

Which parameters Muon gets (kind "muon"): the weights of *hidden* layers. The linear layers of
each module (``nn.Linear`` and ``nets.VectorizedLinear``) are taken in traversal order
(``module.modules()``); a layer is hidden when it is neither the first nor the last, reads the
output width of the layer before it and writes the input width of the layer after it. So the
input layer, the output layer and sibling output heads (an actor's ``mu`` writes ``act_dim``
features that ``log_std`` does not read) are not hidden. Everything else (those layers, all
biases, LayerNorm gains, other parameters) gets AdamW. Frozen parameters are skipped and a
parameter shared by several modules is optimised once.

Learning rates: ``lr`` is AdamW's. Muon's update has a spectral norm of about its learning rate
(per-entry size lr/sqrt(width)), so it needs a larger one: by default
``lr * MUON_LR_PER_ADAM_LR``, the ratio of Keller Jordan's MuonWithAuxAdam defaults
(0.02 for Muon with 3e-4 for AdamW), which keeps an algorithm's actor/critic ratio of rates.
AdamW uses torch's defaults (betas (0.9, 0.999), eps 1e-8) in both kinds, so the Adam/Muon
ablation differs only in the hidden matrices. ``weight_decay`` (decoupled) applies to every
parameter in both kinds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from smac_core.errors import SmacError
from smac_core.nets import VectorizedLinear
from smac_core.optim.muon import Muon, newton_schulz

__all__ = ["MUON_LR_PER_ADAM_LR", "OPTIMIZER_KINDS", "Muon", "hidden_matrices",
           "make_optimizer", "newton_schulz"]

OPTIMIZER_KINDS = ("adam", "muon")
MUON_LR_PER_ADAM_LR = 0.02 / 3e-4


def _widths(layer: nn.Linear | VectorizedLinear) -> tuple[int, int]:
    """(in_features, out_features) of a linear layer."""
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    return layer.weight.shape[1], layer.weight.shape[2]


def hidden_matrices(module: nn.Module) -> list[nn.Parameter]:
    """The weights of ``module``'s hidden linear layers (the rule in the module docstring)."""
    layers = [m for m in module.modules() if isinstance(m, nn.Linear | VectorizedLinear)]
    widths = [_widths(layer) for layer in layers]
    return [layers[i].weight for i in range(1, len(layers) - 1)
            if widths[i][0] == widths[i - 1][1] and widths[i][1] == widths[i + 1][0]]


def make_optimizer(modules: nn.Module | Sequence[nn.Module], lr: float, kind: str,
                   weight_decay: float = 0.0, muon_lr: float | None = None
                   ) -> torch.optim.Optimizer:
    """One optimizer over the trainable parameters of ``modules``.

    ``kind`` "adam": ``torch.optim.AdamW`` on everything. "muon": one ``Muon`` object with a
    ``use_muon=True`` group (hidden weight matrices, learning rate ``muon_lr``, default
    ``lr * MUON_LR_PER_ADAM_LR``) and a ``use_muon=False`` AdamW group (the rest, ``lr``).
    """
    modules = [modules] if isinstance(modules, nn.Module) else list(modules)
    params = list({id(p): p for m in modules for p in m.parameters() if p.requires_grad}.values())
    if not params:
        raise SmacError("make_optimizer: the given modules have no trainable parameters")
    if kind == "adam":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if kind == "muon":
        hidden_ids = {id(p) for m in modules for p in hidden_matrices(m)}
        groups = [
            {"params": [p for p in params if id(p) in hidden_ids], "use_muon": True,
             "lr": lr * MUON_LR_PER_ADAM_LR if muon_lr is None else muon_lr},
            {"params": [p for p in params if id(p) not in hidden_ids], "use_muon": False,
             "lr": lr},
        ]
        return Muon([g for g in groups if g["params"]], weight_decay=weight_decay)
    raise SmacError(f"unknown optimizer kind {kind!r}; valid: {list(OPTIMIZER_KINDS)}")
