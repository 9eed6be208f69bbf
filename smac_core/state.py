"""State as plain data, and where an agent's lasting state goes without it knowing the files.

Networks become flat dicts of tensors named "<network>.<parameter>" (``flat_state_dict``) and
come back one network at a time (``sub_state_dict``). ``Artifact`` is what an agent is handed to
keep state that outlives one call (SMAC's score model, its interrupted training): it saves and
loads tensors, JSON metadata and a resume state, and the layer above (``smac_core.checkpoint``:
one checkpoint directory each) decides how they are stored. Agents and the score model import
this module, never the checkpoint format.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn


def flat_state_dict(modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """The state dicts of named modules as one dict: "<name>.<key>" -> tensor."""
    return {f"{name}.{key}": value for name, module in modules.items()
            for key, value in module.state_dict().items()}


def sub_state_dict(tensors: dict[str, torch.Tensor], network: str) -> dict[str, torch.Tensor]:
    """The tensors of one network, with its "<network>." prefix removed."""
    prefix = f"{network}."
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


class Artifact(Protocol):
    """One stored artifact: tensors, JSON metadata and an optional resume state (plain tensors
    and containers). ``str()`` names it in messages (a path)."""

    def exists(self) -> bool:
        """Whether it has been saved (and not removed)."""

    def load(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Its tensors and metadata, checked; ``SmacError`` when it is missing or damaged."""

    def load_state(self) -> dict[str, Any]:
        """Its resume state; ``SmacError`` when it has none or it is damaged."""

    def save(self, tensors: dict[str, torch.Tensor], metadata: dict[str, Any],
             state: dict[str, Any] | None = None) -> None:
        """Store it, replacing what was there, all or nothing."""

    def remove(self) -> None:
        """Delete it (nothing when it is not there)."""


class ArtifactStore(Protocol):
    """The artifacts of one run, by name (``Agent.prepare_offline`` receives it)."""

    def artifact(self, name: str) -> Artifact:
        """The artifact called ``name`` (saved or not)."""
