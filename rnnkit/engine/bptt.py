r"""Backpropagation through time with the cells' hand-derived backward steps.

For h_t = F(u_t, h_{t−1}; θ) and a loss L over the outputs, BPTT runs the δ recursion backwards:

.. math::
    δ_t = ∂L/∂h_t\big|_{\text{direct}} + (∂h_{t+1}/∂h_t)ᵀ δ_{t+1}, \qquad
    ∂L/∂θ = Σ_t (∂h_t/∂θ)ᵀ δ_t .

Each cell supplies ``step_saving`` (the step, keeping what its backward needs), ``step_backward``
(one step of the δ recursion: the gradients of u_t and of the previous state, and per-step records;
records named ``d_*`` are gradients, zeroed past each sequence's end, the others forward values)
and ``recurrent_grads`` (its recurrent weights' gradients from the records of *all* steps, so that
dU = Σ_t δa_tᵀ h_{t−1} is one large matrix product over T·B rows instead of T small ones).
The input projection u = x Wᵀ + b stays in autograd: it is one large product already.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..cells.base import Params, RecurrentCell, State


def run_hand_bptt(cell: RecurrentCell, p: Params, u: Tensor, state: State,
                  valid: Tensor | None) -> tuple[Tensor, State]:
    """Outputs (T, B, O) and final state, with a backward pass that runs the hand-derived BPTT."""
    names = tuple(cell.recurrent_parameter_names(p))
    result = _HandBPTT.apply(cell, names, valid, len(state), u, *state, *(p[n] for n in names))
    return result[0], tuple(result[1:])


class _HandBPTT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cell, names, valid, n_state, u, *tensors):
        state, params = tuple(tensors[:n_state]), dict(zip(names, tensors[n_state:]))
        keeps = valid.unsqueeze(-1).unbind(0) if valid is not None else None      # each (B, 1)
        outputs, caches = [], []
        for t, u_t in enumerate(u.unbind(0)):
            new_state, cache = cell.step_saving(params, u_t, state)
            if keeps is not None:
                new_state = tuple(torch.where(keeps[t], new, old) for new, old in zip(new_state, state))
            state = new_state
            outputs.append(new_state[0] if keeps is None else new_state[0] * keeps[t])
            caches.append(cache)
        ctx.cell, ctx.names, ctx.valid, ctx.n_state, ctx.caches = cell, names, valid, n_state, caches
        ctx.save_for_backward(*tensors[n_state:])
        ctx.T, ctx.state_templates = u.shape[0], [s.new_zeros(()).expand_as(s) for s in tensors[:n_state]]
        return (torch.stack(outputs),) + state

    @staticmethod
    def backward(ctx, grad_outputs, *grad_final):
        cell, caches, valid = ctx.cell, ctx.caches, ctx.valid
        params = dict(zip(ctx.names, ctx.saved_tensors))
        T = ctx.T
        grad_state = [g if g is not None else torch.zeros_like(template)
                      for g, template in zip(grad_final, ctx.state_templates)]
        grad_u = [None] * T
        records: list[dict[str, Tensor]] = [None] * T
        for t in range(T - 1, -1, -1):
            g_out = grad_outputs[t] if grad_outputs is not None else None
            keep = valid[t].unsqueeze(-1) if valid is not None else None             # (B, 1)
            g_new = list(grad_state)
            if g_out is not None:
                g_new[0] = g_new[0] + (g_out if keep is None else g_out * keep)
            g_u, g_prev, record = cell.step_backward(params, caches[t], tuple(g_new))
            if keep is not None:
                # Past a sequence's end the state is carried unchanged and nothing is computed.
                g_prev = tuple(torch.where(keep, gp, gs) for gp, gs in zip(g_prev, grad_state))
                g_u = g_u * keep
                record = {k: v * keep if k.startswith("d_") else v for k, v in record.items()}
            grad_state, grad_u[t], records[t] = list(g_prev), g_u, record
        stacked = {k: torch.stack([r[k] for r in records]) for k in records[0]}     # each (T, B, ·)
        param_grads = cell.recurrent_grads(params, stacked)
        return (None, None, None, None, torch.stack(grad_u), *grad_state,
                *(param_grads.get(n) for n in ctx.names))

