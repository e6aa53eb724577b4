"""The adding problem (Hochreiter & Schmidhuber 1997; the form of Le et al. 2015, arXiv:1504.00941).

Each step carries two numbers: a value uniform in [0, 1] and a marker, 1 at exactly two steps
(one in the first half, one in the second) and 0 elsewhere. The target is the sum of the two
marked values. Always answering the mean, 1, gives MSE 1/6 ≈ 0.167: a network only beats that if
it remembers values across up to T steps.
"""
from __future__ import annotations

import torch
from torch import Tensor

BASELINE_MSE = 1.0 / 6.0   # variance of the sum of two U[0, 1] values


def adding_problem(batch_size: int, length: int, *, generator: torch.Generator | None = None,
                   dtype=torch.float32) -> tuple[Tensor, Tensor]:
    """Inputs (T, B, 2) and targets (B, 1)."""
    if length < 2:
        raise ValueError(f"length must be at least 2, got {length}")
    values = torch.rand(length, batch_size, generator=generator, dtype=dtype)           # (T, B)
    half = length // 2
    first = torch.randint(0, half, (batch_size,), generator=generator)
    second = torch.randint(half, length, (batch_size,), generator=generator)
    markers = torch.zeros(length, batch_size, dtype=dtype)
    batch = torch.arange(batch_size)
    markers[first, batch] = 1.0
    markers[second, batch] = 1.0
    targets = (values * markers).sum(0, keepdim=True).T                                 # (B, 1)
    return torch.stack([values, markers], dim=-1), targets
