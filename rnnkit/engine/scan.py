r"""The minGRU / minLSTM recurrence h_t = a_t ⊙ h_{t−1} + b_t: the log-space parallel scan and the
time-ordered scan (the Python form; ``rnnkit.engine.fused`` has the compiled one).

minGRU and minLSTM (Feng et al. 2024) reduce to it after one large input projection. On a GPU the
log-space parallel scan (``log_space_scan``, Heinsen 2023, arXiv:2311.06281) spreads the T steps
over many threads; on a CPU the B·H lanes of one step already fill the cores, and the parallel scan's ten or
so passes over (T, B, H) with transcendentals cost several times the plain loop
(``docs/fast-paths.md``, minGRU and minLSTM). So the CPU form is this loop, one fused multiply-add
per step, with a hand-derived backward that is one more per step:

.. math::
    δh_t = g_t + a_{t+1} ⊙ δh_{t+1}, \qquad ∂L/∂b_t = δh_t, \qquad ∂L/∂a_t = δh_t ⊙ h_{t−1},
    \qquad ∂L/∂h_0 = a_1 ⊙ δh_1,

with g_t = ∂L/∂h_t through the output at step t (plus the final state's gradient at t = T). The
two gradients over all steps are one elementwise product each, after the loop.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable
from torch import Tensor

from ..cells.functional import previous_steps


def log_space_scan(log_a: Tensor, log_b: Tensor, h0: Tensor, valid: Tensor | None = None) -> Tensor:
    r"""All h_t of h_t = a_t ⊙ h_{t-1} + b_t at once, from log a_t and log b_t (b_t > 0).

    With a*_t = Σ_{k≤t} log a_k:  h_t = e^{a*_t} h_0 + exp(a*_t + logcumsumexp_k≤t(log b_k − a*_k)).
    h_0 may have any sign (it is kept out of the logarithms). Where ``valid`` (T, B) is False the
    step is skipped (a = 1, b = 0), so the state stays at each sequence's last valid step.

    Shapes: log_a, log_b (T, B, H); h0 (B, H); returns (T, B, H).
    """
    if valid is not None:
        keep = valid.unsqueeze(-1)                                              # (T, B, 1)
        log_a = torch.where(keep, log_a, torch.zeros_like(log_a))
        log_b = torch.where(keep, log_b, torch.full_like(log_b, float("-inf")))
    a_star = torch.cumsum(log_a, dim=0)                                         # (T, B, H)
    return torch.exp(a_star) * h0 + torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=0))


def parallel_scan(cell, u: Tensor, h0: Tensor, valid: Tensor | None = None) -> Tensor:
    """h (T, B, H) of a minGRU / minLSTM layer by the log-space scan of ``cell.log_coefficients(u)``."""
    log_a, log_b = cell.log_coefficients(u)                                     # each (T, B, H)
    return log_space_scan(log_a, log_b, h0, valid)


def gated_scan(cell, u: Tensor, h0: Tensor, valid: Tensor | None = None) -> Tensor:
    r"""h_t = a_t ⊙ h_{t−1} + (1 − a_t) ⊙ h̃_t with (a_t, h̃_t) = ``cell.coefficients(u_t)``, all steps.

    The minGRU / minLSTM recurrence as one autograd node: the forward computes the coefficients of
    all steps at once and runs the scan; the backward runs the scan's δ recursion and then the
    cell's hand-derived ``coefficients_backward`` once over (T, B, ·), with

    .. math:: ∂L/∂a_t = δh_t ⊙ (h_{t−1} − h̃_t), \qquad ∂L/∂h̃_t = δh_t ⊙ (1 − a_t),

    so autograd keeps no per-op intermediates. u (T, B, G) -> h (T, B, H). Where ``valid`` (T, B)
    is False the step is skipped (a = 1, b = 0): the state stays at each sequence's last valid
    step, so h[-1] is the state at each sequence's true end. ``rnnkit.engine.fused.minimal_scan``
    runs the same computation in one C++ pass (the dispatcher's ``"fused"`` path).
    """
    return _GatedScan.apply(cell, valid, u, h0)


def _scan_forward(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """h (T, B, H) from contiguous a, b (T, B, H): one fused multiply-add per step."""
    h = torch.empty_like(b)
    h_prev = h0
    for a_t, b_t, h_t in zip(a.unbind(0), b.unbind(0), h.unbind(0)):
        torch.addcmul(b_t, a_t, h_prev, out=h_t)
        h_prev = h_t
    return h


def _scan_backward(a: Tensor, grad_h: Tensor) -> Tensor:
    """δh_t = g_t + a_{t+1} ⊙ δh_{t+1} for all t, (T, B, H), from the outputs' gradient g."""
    delta = grad_h.contiguous().clone()
    steps, a_steps = delta.unbind(0), a.unbind(0)
    for t in range(len(steps) - 1, 0, -1):
        steps[t - 1].addcmul_(a_steps[t], steps[t])                             # δh_{t−1} += a_t δh_t
    return delta


class _GatedScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cell, valid, u, h0):
        a, h_tilde = cell.coefficients(u)                                       # each (T, B, H)
        b = (1 - a) * h_tilde
        if valid is not None:
            keep = valid.unsqueeze(-1)                                          # (T, B, 1)
            a_run = torch.where(keep, a, torch.ones_like(a))
            b = b * keep
        else:
            a_run = a
        a_run = a_run.contiguous()
        h = _scan_forward(a_run, b.contiguous(), h0)
        ctx.cell, ctx.valid = cell, valid
        ctx.save_for_backward(u, a, a_run, h_tilde, h, h0)
        return h

    @staticmethod
    @once_differentiable            # a second derivative goes through engine.higher_order
    def backward(ctx, grad_h):
        u, a, a_run, h_tilde, h, h0 = ctx.saved_tensors
        delta = _scan_backward(a_run, grad_h)                                   # (T, B, H)
        d_h0 = a_run[0] * delta[0]
        if ctx.valid is not None:
            delta = delta * ctx.valid.unsqueeze(-1)                             # skipped steps: no gradient
        d_a = delta * (previous_steps(h, h0) - h_tilde)
        d_h_tilde = delta * (1 - a)
        return None, None, ctx.cell.coefficients_backward(u, a, d_a, d_h_tilde), d_h0
