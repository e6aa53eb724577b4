"""Independently recurrent neural network.

S. Li, W. Li, C. Cook, C. Zhu, Y. Gao, "Independently Recurrent Neural Network (IndRNN): Building
A Longer and Deeper RNN", CVPR 2018, arXiv:1803.04831.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .activations import nonlinearity as lookup
from .base import Params, RecurrentCell, State
from .functional import affine, masked
from .registry import register


@register("indrnn")
class IndRNNCell(RecurrentCell):
    r"""IndRNN: each unit has one recurrent weight of its own.

    .. math::
        h_t = f(W x_t + u ⊙ h_{t-1} + b)

    Parameters: ``weight_ih`` W (H, I), ``weight_hh`` u (H) (a vector, not a matrix), ``bias_ih`` b (H).
    ``f`` is relu by default (the paper's choice). ``recurrent_max``: if set, u is clipped to
    [-recurrent_max, recurrent_max] in every step (the paper uses 2^{1/T} to keep |u|^T ≤ 2).
    u starts uniform in [0, 1] (or [0, recurrent_max] when smaller), W and b as torch.nn.RNN.
    """

    def __init__(self, input_size: int, hidden_size: int, *, nonlinearity: str = "relu",
                 bias: bool = True, recurrent_max: float | None = None,
                 own_parameters: bool = True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, own_parameters=own_parameters,
                         device=device, dtype=dtype)
        self.f = lookup(nonlinearity)
        if recurrent_max is not None and not recurrent_max > 0:
            raise ValueError(f"recurrent_max must be positive or None, got {recurrent_max!r}")
        self.nonlinearity, self.bias, self.recurrent_max = nonlinearity, bias, recurrent_max
        self._build()

    def parameter_shapes(self):
        H, I = self.hidden_size, self.input_size
        shapes = {"weight_ih": (H, I), "weight_hh": (H,)}
        if self.bias:
            shapes["bias_ih"] = (H,)
        return shapes

    def init_parameters(self, p: Params) -> None:
        super().init_parameters(p)
        upper = 1.0 if self.recurrent_max is None else min(1.0, self.recurrent_max)
        with torch.no_grad():
            p["weight_hh"].uniform_(0.0, upper)

    def project_input(self, p: Params, x: Tensor) -> Tensor:
        return affine(x, p["weight_ih"], p.get("bias_ih"))                     # (T, B, H)

    def step(self, p: Params, u_t: Tensor, state: State, recurrent_mask=None):
        (h,) = state                                                            # (B, H)
        u = p["weight_hh"]
        if self.recurrent_max is not None:
            u = u.clamp(-self.recurrent_max, self.recurrent_max)
        h = self.f(u_t + u * masked(h, recurrent_mask))
        return h, (h,)

    def extra_repr(self):
        return f"{super().extra_repr()}, nonlinearity={self.nonlinearity!r}"
