r"""NARMA: the nonlinear autoregressive moving-average system, a standard reservoir benchmark.

A. F. Atiya, A. G. Parlos, "New results on recurrent network training: unifying the algorithms
and accelerating convergence", IEEE Trans. Neural Networks 11(3), 2000; in the form used for echo
state networks by H. Jaeger, "Adaptive nonlinear system identification with echo state networks",
NIPS 2002. NARMA-n, for inputs u(t) drawn uniformly from [0, 0.5]:

.. math::
    y(t+1) = α\, y(t) + β\, y(t) \sum_{i=0}^{n-1} y(t-i) + γ\, u(t-n+1)\, u(t) + δ,

with α = 0.3, β = 0.05, γ = 1.5, δ = 0.1 and y(t) = 0 for t < n. Predicting y(t+1) from the inputs
up to u(t) needs a memory of the last n inputs and a product of two of them.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def narma_targets(inputs: Tensor, order: int = 10, *, alpha: float = 0.3, beta: float = 0.05,
                  gamma: float = 1.5, delta: float = 0.1) -> Tensor:
    """The NARMA-``order`` outputs for inputs u (T,): a (T,) float64 tensor whose entry t is
    y(t+1), what a system that has read u(0) … u(t) must output (0 while t + 1 < order)."""
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be a positive int, got {order!r}")
    if not isinstance(inputs, Tensor) or inputs.dim() != 1:
        shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(f"inputs must be a 1-D tensor u of shape (T,), got {shape}")
    u = inputs.double().tolist()
    T = len(u)
    y = [0.0] * (T + 1)                                   # y[t] = y(t); y(t) = 0 for t < order
    for t in range(order - 1, T):
        window = sum(y[t - order + 1:t + 1])              # Σ_{i=0}^{n-1} y(t − i)
        y[t + 1] = alpha * y[t] + beta * y[t] * window + gamma * u[t - order + 1] * u[t] + delta
        if not math.isfinite(y[t + 1]) or abs(y[t + 1]) > 1e6:
            raise ValueError(f"NARMA-{order} diverged at step {t + 1} (y = {y[t + 1]:.3g}); "
                             "use inputs in [0, 0.5] or a lower order")
    return torch.tensor(y[1:], dtype=torch.float64)       # (T,)


def narma(n_samples: int, order: int = 10, *, generator: torch.Generator | None = None
          ) -> tuple[Tensor, Tensor]:
    """Inputs u (T,) uniform in [0, 0.5] and targets (T,), entry t being y(t+1) (float64)."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
    u = 0.5 * torch.rand(n_samples, generator=generator, dtype=torch.float64)       # (T,)
    return u, narma_targets(u, order)
