"""Independently recurrent neural network.

S. Li, W. Li, C. Cook, C. Zhu, Y. Gao, "Independently Recurrent Neural Network (IndRNN): Building
A Longer and Deeper RNN", CVPR 2018, arXiv:1803.04831.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .activations import DERIVATIVES_FROM_OUTPUT, nonlinearity as lookup
from .base import Params, RecurrentCell, State
from .functional import affine, masked, summed
from .registry import register


@register("indrnn")
class IndRNNCell(RecurrentCell):
    r"""IndRNN: each unit has one recurrent weight of its own.

    .. math::
        h_t = f(W x_t + u ⊙ h_{t-1} + b)

    u starts uniform in [0, 1] (or [0, recurrent_max] when smaller), W and b as torch.nn.RNN.

    Args:
        input_size, hidden_size: I, H (``own_parameters``, ``device``, ``dtype``: see ``RecurrentCell``).
        nonlinearity: f, ``"relu"`` (default, the paper's choice), ``"tanh"`` or ``"sigmoid"``.
        bias: whether the cell has b.
        recurrent_max: if set, u is clipped to [−recurrent_max, recurrent_max] in every step (the
            paper uses 2^{1/T} to keep |u|^T ≤ 2); None (default) leaves u free.

    Attributes:
        weight_ih: W (H, I).
        weight_hh: u (H), a vector, not a matrix.
        bias_ih: b (H).

    Example:
        >>> import torch, rnnkit
        >>> layer = rnnkit.Recurrent("indrnn", 3, 8, num_layers=2, recurrent_max=2 ** (1 / 100))
        >>> output, h = layer(torch.randn(100, 4, 3))                # x (T, B, I)
        >>> output.shape, layer.cells[0].weight_hh.shape             # (T, B, H); u is (H,)
        (torch.Size([100, 4, 8]), torch.Size([8]))
    """

    def __init__(self, input_size: int, hidden_size: int, *, nonlinearity: str = "relu",
                 bias: bool = True, recurrent_max: float | None = None,
                 own_parameters: bool = True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, own_parameters=own_parameters,
                         device=device, dtype=dtype)
        self.f = lookup(nonlinearity)
        if recurrent_max is not None and (isinstance(recurrent_max, bool)
                                          or not isinstance(recurrent_max, (int, float))):
            raise TypeError(f"recurrent_max must be a positive number or None, got "
                            f"{type(recurrent_max).__name__} ({recurrent_max!r})")
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

    def _recurrent_weight(self, p: Params) -> Tensor:
        u = p["weight_hh"]                                                      # (H,)
        return u if self.recurrent_max is None else u.clamp(-self.recurrent_max, self.recurrent_max)

    def step(self, p: Params, u_t: Tensor, state: State, recurrent_mask=None):
        (h,) = state                                                            # (B, H)
        h = self.f(u_t + self._recurrent_weight(p) * masked(h, recurrent_mask))
        return h, (h,)

    # Hand BPTT: δa_t = δh_t ⊙ f'(a_t), δh_{t-1} = u ⊙ δa_t, du = Σ_t δa_t ⊙ h_{t-1}
    # (zero where the clip to ±recurrent_max is active, as for torch.clamp).
    def supports_hand_bptt(self):
        return True

    def step_saving(self, p, u_t, state):
        (h_prev,) = state
        h = self.f(u_t + self._recurrent_weight(p) * h_prev)                    # (B, H)
        return (h,), {"h_prev": h_prev, "h": h}

    def step_backward(self, p, cache, grad_state):
        (dh,) = grad_state
        d_a = dh * DERIVATIVES_FROM_OUTPUT[self.nonlinearity](cache["h"])       # (B, H)
        return d_a, (d_a * self._recurrent_weight(p),), {"d_u": d_a * cache["h_prev"]}

    def recurrent_grads(self, p, records):
        grad = summed(records["d_u"])                                           # (H,)
        if self.recurrent_max is not None:
            u = p["weight_hh"]
            grad = grad * ((u >= -self.recurrent_max) & (u <= self.recurrent_max)).to(grad.dtype)
        return {"weight_hh": grad}

    def extra_repr(self):
        return f"{super().extra_repr()}, nonlinearity={self.nonlinearity!r}"
