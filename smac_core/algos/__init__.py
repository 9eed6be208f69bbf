"""The algorithm registry: name -> Agent class, and ``make_agent`` to build one from a config dict.

Online: ``sac``, ``td3``, ``td3bc`` (also offline), ``awr``. Offline: ``smac``, ``calql``,
``cql``, ``iql``, ``td3bc``. Both: the flow-policy agents ``qam`` and ``trqam``. Each class
declares the ``phases`` ("offline", "online") it can run in.
"""

from __future__ import annotations

from typing import Any

import torch

from smac_core.algos.awr import AWR
from smac_core.algos.base import Agent, AgentConfig
from smac_core.algos.calql import CQL, CalQL
from smac_core.algos.iql import IQL
from smac_core.algos.qam import QAM
from smac_core.algos.sac import SAC
from smac_core.algos.smac import SMAC
from smac_core.algos.td3 import TD3
from smac_core.algos.td3bc import TD3BC
from smac_core.algos.trqam import TRQAM
from smac_core.errors import SmacError

ALGORITHMS: dict[str, type[Agent]] = {cls.name: cls for cls in (SAC, TD3, TD3BC, AWR,
                                                                 CalQL, CQL, IQL, SMAC,
                                                                 QAM, TRQAM)}


def make_agent(name: str, obs_dim: int, act_dim: int, config: dict[str, Any] | None = None,
               device: str | torch.device = "cpu") -> Agent:
    """Build the agent ``name`` with its config class's defaults overridden by ``config``."""
    if name not in ALGORITHMS:
        raise SmacError(f"unknown algorithm '{name}'; known: {sorted(ALGORITHMS)}")
    cls = ALGORITHMS[name]
    return cls(obs_dim, act_dim, cls.config_class.from_dict(config or {}), device)


__all__ = ["ALGORITHMS", "Agent", "AgentConfig", "make_agent"]
