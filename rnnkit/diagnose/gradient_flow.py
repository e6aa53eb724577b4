r"""How far back a gradient reaches: ‖∂L/∂h_k‖ and ‖∂h_T/∂h_k‖ at every step k.

Backpropagation through time multiplies the gradient by one Jacobian per step. For the state
s_t = F(s_{t-1}, x_t) of any cell,

.. math::
    \frac{∂h_T}{∂h_k} = \prod_{t=k+1}^{T} \frac{∂h_t}{∂h_{t-1}}, \qquad
    \frac{∂L}{∂h_k} = \sum_{t ≥ k} \frac{∂L}{∂y_t} \frac{∂y_t}{∂h_k}
    \quad (= \frac{∂L}{∂h_T} \frac{∂h_T}{∂h_k} \text{ when } L \text{ reads only the last step}).

For the tanh Elman network h_t = tanh(W x_t + U h_{t-1} + b) each factor is

.. math::
    \frac{∂h_t}{∂h_{t-1}} = \operatorname{diag}(1 - h_t^2)\, U,

so ‖∂h_T/∂h_k‖₂ ≤ (max_t ‖diag(1 − h_t²)‖ · ‖U‖₂)^{T−k}: when ‖U‖₂ < 1 the gradient vanishes
geometrically in the distance T − k (Bengio, Simard, Frasconi 1994; Pascanu, Mikolov, Bengio 2013,
arXiv:1211.5063), and with large U it can explode. Gated cells add a direct path: the LSTM's cell
state c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t passes the gradient back through diag(f_t), the GRU's
h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1} through diag(z_t), factors close to the identity when the
gate keeps the state, with no squashing derivative and no weight matrix in the way.

``gradient_flow`` measures both quantities exactly, with autograd, for any registered cell.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..layers import Recurrent
from .unroll import check_single_layer, read_batch, unroll

Loss = Callable[[Tensor], Tensor]


@dataclass
class GradientFlow:
    r"""What ``gradient_flow`` measured, per step k (0-based here: k = 0 … T−1) and per sequence b.

    The distance of step k from the end of sequence b is d = T_b − 1 − k (T − k with steps
    counted from 1); ``by_distance`` lines the sequences up by it. The tensors are on the CPU, in
    the layer's dtype.

    Attributes:
        grad_norm: (T, B) ‖∂L/∂h_k‖₂, the Euclidean norm of the gradient reaching the state after
            step k (all paths from h_k to L), 0 past the sequence's end.
        jacobian_norm: (T, B) ‖∂h_T/∂h_k‖₂, the spectral norm (largest singular value) of the
            Jacobian of the sequence's last state with respect to h_k; 1 at k = T − 1 (the
            identity), 0 past the end. None when ``jacobian=False``.
        lengths: (B,) each sequence's length T_b.
        state: which state tensor h is (``"h"``, or ``"c"`` for the LSTM's cell state, ...).
    """
    grad_norm: Tensor
    jacobian_norm: Tensor | None
    lengths: Tensor
    state: str

    def distance(self) -> Tensor:
        """(T, B) distance T_b − 1 − k of each step from its sequence's last step (< 0 past it)."""
        T = self.grad_norm.shape[0]
        return self.lengths.unsqueeze(0) - 1 - torch.arange(T).unsqueeze(1)    # (T, B)

    def by_distance(self, which: str = "grad") -> Tensor:
        """(T,) the norm at each distance d = 0 … T−1, averaged over the sequences that reach that
        far back (NaN where none does). ``which``: ``"grad"`` or ``"jacobian"``."""
        norms = self._norms(which)                                              # (T, B)
        T, B = norms.shape
        d = torch.arange(T).unsqueeze(1)                                        # (T, 1)
        k = self.lengths.unsqueeze(0) - 1 - d                                   # (T, B): step at distance d
        inside = k >= 0
        at_distance = norms.gather(0, k.clamp(min=0)) * inside                  # (T, B)
        count = inside.sum(1)
        return torch.where(count > 0, at_distance.sum(1) / count.clamp(min=1), torch.nan)

    def rate(self, first: int = 10, last: int = 100, which: str = "grad") -> float:
        r"""The per-step factor ρ of a geometric fit norm(d) ≈ C ρ^d over distances first … last:
        ρ = 10^slope of the least-squares line through (d, log₁₀ norm(d)). ρ < 1 vanishes, ρ > 1
        explodes. Distances with a zero or missing norm are left out."""
        by_d = self.by_distance(which)
        last = min(last, by_d.shape[0] - 1)
        d = torch.arange(first, last + 1)
        norm = by_d[first:last + 1].double()
        keep = torch.isfinite(norm) & (norm > 0)
        if int(keep.sum()) < 2:
            raise ValueError(f"rate needs positive norms at two distances or more in {first}..{last}, "
                             f"got {int(keep.sum())}")
        d, log_norm = d[keep].double(), norm[keep].log10()
        slope = ((d - d.mean()) * (log_norm - log_norm.mean())).sum() / ((d - d.mean()) ** 2).sum()
        return float(10 ** slope)

    def _norms(self, which: str) -> Tensor:
        if which == "grad":
            return self.grad_norm
        if which == "jacobian":
            if self.jacobian_norm is None:
                raise ValueError("this GradientFlow was measured with jacobian=False")
            return self.jacobian_norm
        raise ValueError(f"which must be 'grad' or 'jacobian', got {which!r}")


def gradient_flow(layer: Recurrent, x: Tensor, loss: Loss | None = None, lengths=None, *,
                  state: str | None = None, jacobian: bool = True) -> GradientFlow:
    r"""Measure ‖∂L/∂h_k‖ and ‖∂h_T/∂h_k‖₂ at every step k of a single-layer, unidirectional layer.

    The Jacobian is exact: autograd backpropagates each unit vector e_j from h_T (S of them,
    batched with ``is_grads_batched``), which gives row j of ∂h_T/∂h_k for every k at once.
    Sequences in a batch do not interact, so each b gets its own (S, S) Jacobian.

    Args:
        layer: a ``Recurrent`` (or ``rnnkit.RNN``/``LSTM``/``GRU``) with one layer, one direction.
            It runs as at evaluation: no dropout, zoneout in expectation.
        x: (T, B, I), (B, T, I) with ``batch_first``, or one sequence (T, I).
        loss: ``loss(outputs) -> scalar`` on the outputs, shaped as ``layer(x)`` returns them. The
            default is L = Σ_b Σ_j y_{T_b, b, j}, the sum of each sequence's last output, so that
            ∂L/∂h_k = 1ᵀ ∂y_T/∂h_k follows the Jacobian.
        lengths: (B,) true lengths of a padded batch; T_b is then each sequence's own last step.
        state: the state tensor h stands for (default the cell's first: ``"h"``; ``"c"`` for the
            LSTM's cell state).
        jacobian: also compute the Jacobian norms (costs one batched backward pass of S vectors
            and T·B singular-value decompositions of S × S matrices).

    Returns:
        A ``GradientFlow``.
    """
    check_single_layer(layer, "gradient_flow")
    batch = read_batch(layer, x, lengths)
    cell = layer.cells[0]
    name = cell.state_names[0] if state is None else state
    if name not in cell.state_names:
        raise ValueError(f"state must be one of the cell's states {cell.state_names}, got {name!r}")
    index = cell.state_names.index(name)

    with torch.enable_grad():
        run = unroll(layer, batch)
        nodes = [s[index] for s in run.states]                                  # T × (B, S)
        B = batch.x.shape[1]
        ends = run.lengths - 1                                                  # (B,)
        if loss is None:
            objective = run.outputs[ends, torch.arange(B)].sum()               # Σ_b Σ_j y_{T_b, b, j}
        else:
            objective = _user_loss(loss, _as_layer_output(layer, run.outputs, batch.batched))
        grads = torch.autograd.grad(objective, nodes, retain_graph=jacobian, allow_unused=True)
        grad_norm = torch.stack([_norm_or_zero(g, node) for g, node in zip(grads, nodes)])  # (T, B)
        jacobian_norm = _jacobian_norms(run.last_state(index), nodes) if jacobian else None  # (T, B)

    past_end = torch.arange(len(nodes)).unsqueeze(1) > ends.unsqueeze(0)        # (T, B), on the CPU
    grad_norm = grad_norm.cpu().masked_fill(past_end, 0)
    if jacobian_norm is not None:
        jacobian_norm = jacobian_norm.cpu().masked_fill(past_end, 0)
    return GradientFlow(grad_norm, jacobian_norm, run.lengths, name)


def _jacobian_norms(last: Tensor, nodes: list[Tensor]) -> Tensor:
    r"""(T, B) ‖∂h_T/∂h_k‖₂ for every k, where ``last`` (B, S) is each sequence's h_T and
    ``nodes`` the T states h_k, each (B, S)."""
    B, S = last.shape
    unit = torch.eye(S, dtype=last.dtype, device=last.device)                   # (S, S)
    basis = unit.unsqueeze(1).expand(S, B, S)                                   # (S, B, S): e_j per b
    rows = torch.autograd.grad(last, nodes, grad_outputs=basis, is_grads_batched=True,
                               allow_unused=True)                               # T × (S, B, S)
    norms = []
    for row, node in zip(rows, nodes):
        if row is None:                                                         # h_T does not read h_k
            norms.append(node.new_zeros(B))
            continue
        J = row.permute(1, 0, 2)                                                # (B, S, S): J[b, j, m]
        norms.append(torch.linalg.matrix_norm(J, ord=2))                        # (B,)
    return torch.stack(norms).detach()                                          # (T, B)


def _norm_or_zero(grad: Tensor | None, node: Tensor) -> Tensor:
    """‖grad‖₂ per sequence, (B,); a missing gradient (L does not read h_k) is 0."""
    if grad is None:
        return node.new_zeros(node.shape[0]).detach()
    return torch.linalg.vector_norm(grad, dim=-1).detach()


def _as_layer_output(layer: Recurrent, outputs: Tensor, batched: bool) -> Tensor:
    """(T, B, O) time-major outputs in the layout ``layer(x)`` returns."""
    if not batched:
        return outputs.squeeze(1)                                               # (T, O)
    return outputs.transpose(0, 1) if layer.batch_first else outputs            # (B, T, O)


def _user_loss(loss: Loss, outputs: Tensor) -> Tensor:
    if not callable(loss):
        raise TypeError(f"loss must be a callable outputs -> scalar tensor, got {type(loss).__name__}")
    value = loss(outputs)
    if not isinstance(value, Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"loss must return a scalar tensor, got {shape}")
    if not value.requires_grad:
        raise ValueError("loss must depend on the outputs it is given (its result has no gradient)")
    return value.reshape(())
