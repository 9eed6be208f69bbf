"""Directions in parameter space for planes: raw differences and random filter-normalised ones.

Filter normalisation (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets"): draw
d ~ N(0, I) with the shape of the weights, then rescale every filter of every weight tensor to
the norm of the same filter in the weights,

    d_{i,j} <- d_{i,j} / ||d_{i,j}|| * ||theta_{i,j}||      (layer i, filter = output row j),

so a step of 1 along d changes each row by as much as the row itself is large and planes of
networks with different weight scales are comparable. 1-D parameters (biases, gains) get a zero
direction by default, as in Li et al.'s released code (``ignore='biasbn'``); with
``include_1d=True`` each 1-D parameter is rescaled as one filter to its own norm.
"""

from __future__ import annotations

import torch

from landscape.params import ParamSpec
from smac_core.errors import SmacError

FILTER_NORM_EPS = 1e-10  # Li et al.'s guard against an all-zero random row (probability 0)


def difference_direction(theta_from: torch.Tensor, theta_to: torch.Tensor) -> torch.Tensor:
    """The raw difference theta_to - theta_from (D,): the paper's plane directions."""
    return theta_to - theta_from


def filter_normalized_direction(weights: torch.Tensor, spec: ParamSpec,
                                generator: torch.Generator,
                                include_1d: bool = False) -> torch.Tensor:
    """One random filter-normalised direction (D,) for the flat parameter vector ``weights``.

    The Gaussian draw covers all D entries (so it does not depend on ``include_1d``) and is made
    on the CPU with ``generator``, so the same seed gives the same direction on every device.
    """
    if weights.shape != (spec.size,):
        raise ValueError(f"weights of shape {tuple(weights.shape)} do not match the parameter "
                         f"spec of {spec.size} entries")
    theta = weights.detach().to("cpu", torch.float32)
    direction = torch.randn(spec.size, generator=generator, dtype=torch.float32)
    offset = 0
    for shape in spec.shapes:
        numel = torch.Size(shape).numel()
        d = direction[offset:offset + numel]
        w = theta[offset:offset + numel]
        if len(shape) > 2:
            raise SmacError(f"filter normalisation of {len(shape)}-D parameters (e.g. a critic "
                            f"ensemble's stacked weights, shape {tuple(shape)}) is not "
                            "supported; use policy vectors or difference directions")
        if len(shape) == 2:
            rows_d, rows_w = d.view(shape[0], -1), w.view(shape[0], -1)
            rows_d.mul_(rows_w.norm(dim=1, keepdim=True)
                        / (rows_d.norm(dim=1, keepdim=True) + FILTER_NORM_EPS))
        elif include_1d:
            d.mul_(w.norm() / (d.norm() + FILTER_NORM_EPS))
        else:
            d.zero_()
        offset += numel
    return direction.to(weights.device)


def random_directions(weights: torch.Tensor, spec: ParamSpec, seed: int, count: int = 2,
                      include_1d: bool = False) -> list[torch.Tensor]:
    """``count`` filter-normalised directions, drawn in turn from one generator seeded ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return [filter_normalized_direction(weights, spec, generator, include_1d)
            for _ in range(count)]
