r"""Backpropagation through time with the cells' hand-derived backward steps.

For h_t = F(u_t, h_{t−1}; θ) and a loss L over the outputs, BPTT runs the δ recursion backwards:

.. math::
    δ_t = ∂L/∂h_t\big|_{\text{direct}} + (∂h_{t+1}/∂h_t)ᵀ δ_{t+1}, \qquad
    ∂L/∂θ = Σ_t (∂h_t/∂θ)ᵀ δ_t .

Each cell supplies ``step_saving`` (the step, keeping what its backward needs), ``step_backward``
(one step of the δ recursion: the gradients of u_t and of the previous state, and per-step records;
records named ``d_*`` are gradients, the others forward values)
and ``recurrent_grads`` (its recurrent weights' gradients from the records of *all* steps, so that
dU = Σ_t δa_tᵀ h_{t−1} is one large matrix product over T·B rows instead of T small ones).
The input projection u = x Wᵀ + b stays in autograd: it is one large product already.

**Variable lengths cost what they compute.** With ``valid`` (T, B) the batch is sorted by length,
longest first, so that the sequences still running at step t are the first n_t rows: each step
computes only those rows (as torch's packed sequences do, without packing the data), a finished
sequence's state is set aside at its last step, and the backward pass takes the same prefixes in
reverse. A batch whose lengths are spread over 1..T costs about the mean length, not T.
"""
from __future__ import annotations

import functools

import torch
from torch.autograd.function import once_differentiable
from torch import Tensor

from ..cells.base import Params, RecurrentCell, State


def run_hand_bptt(cell: RecurrentCell, p: Params, u: Tensor, state: State,
                  valid: Tensor | None) -> tuple[Tensor, State]:
    """Outputs (T, B, O) and final state, with a backward pass that runs the hand-derived BPTT."""
    names = tuple(cell.recurrent_parameter_names(p))
    result = _HandBPTT.apply(cell, names, valid, len(state), u, *state, *(p[n] for n in names))
    return result[0], tuple(result[1:])


def run_compacted(cell: RecurrentCell, p: Params, u: Tensor, state: State,
                  valid: Tensor) -> tuple[Tensor, State]:
    """The forward pass alone (no gradient), computing only the steps inside each sequence."""
    order = _BatchOrder(valid)
    outputs, final, _ = _forward(lambda u_t, s: cell.step(p, u_t, s), order, u, state, save=False)
    return outputs, final


class _BatchOrder:
    """Sequences sorted longest first, and how many are still running at each step.

    ``valid`` (T, B) must be a prefix mask (step t of sequence b is valid iff t < length_b), as
    ``valid_mask`` and ``reverse_padded`` make it; None means every sequence runs all T steps.
    The sort is ordinary tensor ops that torch.compile can trace; only ``running``, a Python list
    read by the Python loops, depends on the data."""

    def __init__(self, valid: Tensor | None, T: int | None = None, B: int | None = None) -> None:
        self.valid, self.T, self.B = valid, T, B
        self.permutation = self.inverse = self.lengths = None
        if valid is not None:
            lengths = valid.sum(0)                                              # (B,)
            self.permutation = torch.argsort(lengths, descending=True, stable=True)
            self.inverse = torch.argsort(self.permutation)
            self.lengths = lengths.index_select(0, self.permutation)           # (B,) non-increasing

    @functools.cached_property
    def running(self) -> list[int]:
        """n_t for every t, non-increasing."""
        return [self.B] * self.T if self.valid is None else self.valid.sum(1).tolist()

    def sort(self, x: Tensor, dim: int) -> Tensor:
        return x if self.permutation is None else x.index_select(dim, self.permutation)

    def unsort(self, x: Tensor, dim: int) -> Tensor:
        return x if self.inverse is None else x.index_select(dim, self.inverse)


def _forward(step, order: _BatchOrder, u: Tensor, state: State, save: bool):
    """Run ``step(u_t, state) -> (y_t, state[, cache])`` over the running rows of each step.

    Returns outputs (T, B, O) (zero past each end), the final state (each (B, S)) in the caller's
    batch order, and the per-step caches when ``save``."""
    u, state = order.sort(u, 1), tuple(order.sort(s, 0) for s in state)
    outputs, finished, caches = None, [], []
    for t, u_t in enumerate(u.unbind(0)):
        n = order.running[t]
        if n < state[0].shape[0]:                  # rows n.. ended at step t − 1: set their state aside
            finished.append(tuple(s[n:] for s in state))
            state = tuple(s[:n] for s in state)
        if n < u_t.shape[0]:
            u_t = u_t[:n]
        y, state, *cache = step(u_t, state)
        if outputs is None:
            outputs = y.new_zeros(u.shape[0], u.shape[1], y.shape[-1])          # (T, B, O)
        outputs[t, :n] = y
        caches.append(cache[0] if save else None)
    final = tuple(torch.cat(parts) for parts in zip(state, *reversed(finished))) if finished else state
    return order.unsort(outputs, 1), tuple(order.unsort(s, 0) for s in final), caches


class _HandBPTT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cell, names, valid, n_state, u, *tensors):
        state, params = tuple(tensors[:n_state]), dict(zip(names, tensors[n_state:]))

        def step(u_t, s):
            new_state, cache = cell.step_saving(params, u_t, s)
            return new_state[0], new_state, cache

        order = _BatchOrder(valid, *u.shape[:2])
        outputs, final, caches = _forward(step, order, u, state, save=True)
        ctx.cell, ctx.names, ctx.order, ctx.caches = cell, names, order, caches
        ctx.save_for_backward(*tensors[n_state:])
        ctx.input_shape = u.shape
        return (outputs,) + final

    @staticmethod
    @once_differentiable            # a second derivative goes through engine.higher_order
    def backward(ctx, grad_outputs, *grad_final):
        cell, caches, order = ctx.cell, ctx.caches, ctx.order
        params = dict(zip(ctx.names, ctx.saved_tensors))
        T, B, _ = ctx.input_shape
        grad_outputs = order.sort(grad_outputs, 1)                              # (T, B, O)
        grad_final = [order.sort(g, 0) for g in grad_final]                     # each (B, S)
        grad_u, grad_state, records = None, None, []
        for t in range(T - 1, -1, -1):
            n = order.running[t]
            if grad_state is None:
                grad_state = [g[:n] for g in grad_final]
            elif n > grad_state[0].shape[0]:       # rows that end at step t join with their final grad
                grad_state = [torch.cat([g, g_final[g.shape[0]:n]]) for g, g_final in zip(grad_state, grad_final)]
            grad_state[0] = grad_state[0] + grad_outputs[t, :n]
            g_u, g_prev, record = cell.step_backward(params, caches[t], tuple(grad_state))
            if grad_u is None:
                grad_u = g_u.new_zeros(T, B, g_u.shape[-1])                     # (T, B, G)
            grad_u[t, :n] = g_u
            grad_state = list(g_prev)
            records.append(record)
        stacked = {k: torch.cat([r[k] for r in records]) for k in records[0]}  # each (Σ_t n_t, ·)
        param_grads = cell.recurrent_grads(params, stacked)
        return (None, None, None, None, order.unsort(grad_u, 1),
                *(order.unsort(g, 0) for g in grad_state),
                *(param_grads.get(n) for n in ctx.names))
