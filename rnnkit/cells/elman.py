"""Elman's simple recurrent network.

J. L. Elman, "Finding Structure in Time", Cognitive Science 14 (1990).
Identity initialisation: Q. V. Le, N. Jaitly, G. E. Hinton, "A Simple Way to Initialize Recurrent
Networks of Rectified Linear Units" (IRNN), arXiv:1504.00941, 2015.
"""
from __future__ import annotations

from torch import Tensor

from .activations import DERIVATIVES_FROM_OUTPUT, nonlinearity as lookup
from .base import Params, RecurrentCell, State, check_choice
from .functional import affine, identity_recurrence, masked, summed, summed_outer
from .registry import register


@register("elman")
class ElmanCell(RecurrentCell):
    r"""Simple recurrent network (Elman 1990).

    .. math::
        h_t = f(W x_t + b_{ih} + U h_{t-1} + b_{hh})

    Args:
        input_size, hidden_size: I, H (``own_parameters``, ``device``, ``dtype``: see ``RecurrentCell``).
        nonlinearity: f, ``"tanh"`` (default), ``"relu"`` or ``"sigmoid"``.
        bias: whether the cell has ``bias_ih`` and ``bias_hh``.
        init: ``"default"`` (every tensor uniform in (−1/√H, 1/√H), as torch.nn.RNN) or
            ``"identity"``, the IRNN of Le et al. 2015: U = I and both biases zero (usually with
            ``nonlinearity="relu"``); W keeps the default.

    Attributes:
        weight_ih: W (H, I) (torch.nn.RNN's names and shapes).
        weight_hh: U (H, H).
        bias_ih, bias_hh: b_ih, b_hh (H); absent without ``bias``.

    Example:
        >>> import torch, rnnkit
        >>> irnn = rnnkit.cells.create("elman", 3, 5, nonlinearity="relu", init="identity")
        >>> y, (h,) = irnn(torch.randn(2, 3))            # one step from zeros: x_t (B, I)
        >>> y.shape, bool((y == h).all())                # y_t is h_t, (B, H)
        (torch.Size([2, 5]), True)
    """

    def __init__(self, input_size: int, hidden_size: int, *, nonlinearity: str = "tanh",
                 bias: bool = True, init: str = "default", own_parameters: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, own_parameters=own_parameters,
                         device=device, dtype=dtype)
        self.f = lookup(nonlinearity)
        check_choice("init", init, ("default", "identity"))
        self.nonlinearity, self.bias, self.init = nonlinearity, bias, init
        self._build()

    def parameter_shapes(self):
        H, I = self.hidden_size, self.input_size
        shapes = {"weight_ih": (H, I), "weight_hh": (H, H)}
        if self.bias:
            shapes.update(bias_ih=(H,), bias_hh=(H,))
        return shapes

    def init_parameters(self, p: Params) -> None:
        super().init_parameters(p)
        if self.init == "identity":
            identity_recurrence(p)

    def project_input(self, p: Params, x: Tensor) -> Tensor:
        return affine(x, p["weight_ih"], p.get("bias_ih"))         # (T, B, H)

    def step(self, p: Params, u_t: Tensor, state: State, recurrent_mask=None):
        (h,) = state                                                # (B, H)
        h = self.f(u_t + affine(masked(h, recurrent_mask), p["weight_hh"], p.get("bias_hh")))
        return h, (h,)

    # Hand BPTT: δa_t = δh_t ⊙ f'(a_t), δh_{t-1} = Uᵀ δa_t, dU = Σ_t δa_t h_{t-1}ᵀ, db_hh = Σ_t δa_t.
    def supports_hand_bptt(self):
        return True

    def step_saving(self, p, u_t, state):
        (h_prev,) = state
        h = self.f(u_t + affine(h_prev, p["weight_hh"], p.get("bias_hh")))      # (B, H)
        return (h,), {"h_prev": h_prev, "f_out": h}

    def step_backward(self, p, cache, grad_state):
        (dh,) = grad_state                                                      # (B, H)
        d_a = dh * DERIVATIVES_FROM_OUTPUT[self.nonlinearity](cache["f_out"])
        return d_a, (d_a @ p["weight_hh"],), {"d_a": d_a, "h_prev": cache["h_prev"]}

    def recurrent_grads(self, p, records):
        grads = {"weight_hh": summed_outer(records["d_a"], records["h_prev"])}
        if "bias_hh" in p:
            grads["bias_hh"] = summed(records["d_a"])
        return grads

    def extra_repr(self):
        return f"{super().extra_repr()}, nonlinearity={self.nonlinearity!r}, init={self.init!r}"

