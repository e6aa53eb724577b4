"""Residual recurrent network: the state is carried forward and a learned update is added.

The additive path h_{t-1} -> h_t has Jacobian I + ∂g/∂h, so the gradient over many steps does not
have to shrink geometrically (the remedy the chapter gives for vanishing gradients; compare
K. He et al., "Deep Residual Learning", arXiv:1512.03385, and Y. Wang, F. Tian, "Recurrent Residual
Learning for Sequence Classification", EMNLP 2016).
"""
from __future__ import annotations

from torch import Tensor

from .activations import DERIVATIVES_FROM_OUTPUT, nonlinearity as lookup
from .base import Params, RecurrentCell, State
from .functional import affine, masked, summed, summed_outer
from .registry import register


@register("residual")
class ResidualCell(RecurrentCell):
    r"""Residual RNN cell.

    .. math::
        h_t = h_{t-1} + g(x_t, h_{t-1}), \qquad g(x_t, h_{t-1}) = f(W x_t + U h_{t-1} + b)

    with ``f`` = tanh (default), relu or sigmoid. Parameters as torch.nn.RNN: ``weight_ih`` (H, I),
    ``weight_hh`` (H, H), ``bias_ih``, ``bias_hh`` (H).
    """

    def __init__(self, input_size: int, hidden_size: int, *, nonlinearity: str = "tanh",
                 bias: bool = True, own_parameters: bool = True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, own_parameters=own_parameters,
                         device=device, dtype=dtype)
        self.f = lookup(nonlinearity)
        self.nonlinearity, self.bias = nonlinearity, bias
        self._build()

    def parameter_shapes(self):
        H, I = self.hidden_size, self.input_size
        shapes = {"weight_ih": (H, I), "weight_hh": (H, H)}
        if self.bias:
            shapes.update(bias_ih=(H,), bias_hh=(H,))
        return shapes

    def project_input(self, p: Params, x: Tensor) -> Tensor:
        return affine(x, p["weight_ih"], p.get("bias_ih"))                     # (T, B, H)

    def step(self, p: Params, u_t: Tensor, state: State, recurrent_mask=None):
        (h,) = state                                                            # (B, H)
        g = self.f(u_t + affine(masked(h, recurrent_mask), p["weight_hh"], p.get("bias_hh")))
        h = h + g
        return h, (h,)

    # Hand BPTT: δa_t = δh_t ⊙ f'(a_t), δh_{t-1} = δh_t + Uᵀ δa_t (the identity path), dU = Σ δa h_{t-1}ᵀ.
    def supports_hand_bptt(self):
        return True

    def step_saving(self, p, u_t, state):
        (h_prev,) = state
        g = self.f(u_t + affine(h_prev, p["weight_hh"], p.get("bias_hh")))      # (B, H)
        return (h_prev + g,), {"h_prev": h_prev, "g": g}

    def step_backward(self, p, cache, grad_state):
        (dh,) = grad_state                                                      # (B, H)
        d_a = dh * DERIVATIVES_FROM_OUTPUT[self.nonlinearity](cache["g"])
        return d_a, (dh + d_a @ p["weight_hh"],), {"d_a": d_a, "h_prev": cache["h_prev"]}

    def recurrent_grads(self, p, records):
        grads = {"weight_hh": summed_outer(records["d_a"], records["h_prev"])}
        if "bias_hh" in p:
            grads["bias_hh"] = summed(records["d_a"])
        return grads

    def extra_repr(self):
        return f"{super().extra_repr()}, nonlinearity={self.nonlinearity!r}"
