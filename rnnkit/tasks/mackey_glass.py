"""The Mackey–Glass delay differential equation, a standard chaotic benchmark series.

M. C. Mackey, L. Glass, "Oscillation and chaos in physiological control systems", Science 197, 1977.
"""
from __future__ import annotations

import numpy as np


def mackey_glass(n_samples: int, *, tau: float = 17.0, beta: float = 0.2, gamma: float = 0.1,
                 n: float = 10.0, x0: float = 1.2, dt: float = 0.1, sample_every: float = 1.0,
                 discard: int = 500) -> np.ndarray:
    r"""Sample dx/dt = β x(t−τ) / (1 + x(t−τ)^n) − γ x(t) every ``sample_every`` time units.

    Integrated with the classical Runge–Kutta method at step ``dt`` (the delayed value is taken
    from the stored history, linearly interpolated at half steps); the history before t = 0 is
    constant ``x0``; the first ``discard`` samples (the transient) are dropped. τ = 17 gives the
    usual mildly chaotic series with values in about [0.4, 1.3].
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    delay_steps = int(round(tau / dt))
    stride = int(round(sample_every / dt))
    total_steps = (n_samples + discard) * stride
    x = np.empty(delay_steps + total_steps + 1)
    x[:delay_steps + 1] = x0

    def dxdt(x_now: float, x_delayed: float) -> float:
        return beta * x_delayed / (1.0 + x_delayed ** n) - gamma * x_now

    for k in range(delay_steps, delay_steps + total_steps):
        lag, lag_next = x[k - delay_steps], x[k - delay_steps + 1]
        lag_half = 0.5 * (lag + lag_next)
        k1 = dxdt(x[k], lag)
        k2 = dxdt(x[k] + 0.5 * dt * k1, lag_half)
        k3 = dxdt(x[k] + 0.5 * dt * k2, lag_half)
        k4 = dxdt(x[k] + dt * k3, lag_next)
        x[k + 1] = x[k] + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    samples = x[delay_steps::stride]
    return samples[discard:discard + n_samples].copy()
