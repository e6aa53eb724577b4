"""Residual recurrent network: the state is carried forward and a learned update is added.

The additive path h_{t-1} -> h_t has Jacobian I + ∂g/∂h, so the gradient over many steps does not
have to shrink geometrically (the remedy the chapter gives for vanishing gradients; compare
K. He et al., "Deep Residual Learning", arXiv:1512.03385, and Y. Wang, F. Tian, "Recurrent Residual
Learning for Sequence Classification", EMNLP 2016).
"""
from __future__ import annotations

from torch import Tensor

from .base import Params, State
from .elman import ElmanCell
from .functional import affine, masked
from .registry import register


@register("residual")
class ResidualCell(ElmanCell):
    r"""Residual RNN cell.

    .. math::
        h_t = h_{t-1} + g(x_t, h_{t-1}), \qquad g(x_t, h_{t-1}) = f(W x_t + U h_{t-1} + b)

    ``g`` is exactly the Elman cell's update, so this class keeps the Elman cell's parameters, input
    projection and weight gradients and adds the identity path.

    Args:
        input_size, hidden_size: I, H (``own_parameters``, ``device``, ``dtype``: see ``RecurrentCell``).
        nonlinearity: f, ``"tanh"`` (default), ``"relu"`` or ``"sigmoid"``.
        bias: whether the cell has ``bias_ih`` and ``bias_hh``.

    Attributes:
        weight_ih, weight_hh, bias_ih, bias_hh: W (H, I), U (H, H) and the biases (H), as ``ElmanCell``.

    Example:
        >>> import torch, rnnkit
        >>> cell = rnnkit.cells.create("residual", 3, 5)
        >>> h_prev = torch.randn(2, 5)
        >>> y, (h,) = cell(torch.randn(2, 3), (h_prev,))
        >>> h.shape, bool(((h - h_prev).abs() <= 1).all())   # h_t − h_{t−1} = tanh(·) ∈ (−1, 1)
        (torch.Size([2, 5]), True)
    """

    def __init__(self, input_size: int, hidden_size: int, *, nonlinearity: str = "tanh",
                 bias: bool = True, own_parameters: bool = True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, nonlinearity=nonlinearity, bias=bias,
                         own_parameters=own_parameters, device=device, dtype=dtype)

    def step(self, p: Params, u_t: Tensor, state: State, recurrent_mask=None):
        (h,) = state                                                            # (B, H)
        g = self.f(u_t + affine(masked(h, recurrent_mask), p["weight_hh"], p.get("bias_hh")))
        h = h + g
        return h, (h,)

    # Hand BPTT: δa_t = δh_t ⊙ f'(a_t), δh_{t-1} = δh_t + Uᵀ δa_t (the identity path), dU = Σ δa h_{t-1}ᵀ.
    def step_saving(self, p, u_t, state):
        (h_prev,) = state
        g = self.f(u_t + affine(h_prev, p["weight_hh"], p.get("bias_hh")))      # (B, H)
        return (h_prev + g,), {"h_prev": h_prev, "f_out": g}

    def step_backward(self, p, cache, grad_state):
        (dh,) = grad_state                                                      # (B, H)
        d_a, (dh_through_g,), records = super().step_backward(p, cache, grad_state)
        return d_a, (dh + dh_through_g,), records

    def extra_repr(self):
        return f"{super(ElmanCell, self).extra_repr()}, nonlinearity={self.nonlinearity!r}"
