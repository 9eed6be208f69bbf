"""smac_core: offline pre-training (SMAC, CalQL/CQL, IQL, TD3+BC) and online fine-tuning
(SAC, TD3, TD3+BC, AWR) of actor-critics, with safe checkpoints for landscape analysis."""

from smac_core.errors import SmacError

__version__ = "0.1.0"
__all__ = ["SmacError", "__version__"]
