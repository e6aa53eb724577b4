"""Jordan network: the recurrence feeds back the previous output, not the hidden state.

M. I. Jordan, "Serial Order: A Parallel Distributed Processing Approach", ICS Report 8604, 1986.
"""
from __future__ import annotations

from torch import Tensor

from .activations import DERIVATIVES_FROM_OUTPUT, nonlinearity as lookup
from .base import Params, RecurrentCell, State, check_positive_int
from .functional import affine, masked, summed, summed_outer
from .registry import register


@register("jordan")
class JordanCell(RecurrentCell):
    r"""Jordan network cell.

    .. math::
        h_t &= f(W x_t + U y_{t-1} + b)      \\
        y_t &= o(V h_t + c)

    The state is the output y (B, O), which is what the layer returns and what is fed back;
    the hidden h_t is internal.

    Args:
        input_size, hidden_size: I, H (``own_parameters``, ``device``, ``dtype``: see ``RecurrentCell``).
        output_size: O, the size of y (default H).
        nonlinearity: f, ``"tanh"`` (default), ``"relu"`` or ``"sigmoid"``.
        output_nonlinearity: o, ``"tanh"`` (default), ``"identity"``, ``"sigmoid"`` or ``"relu"``.
        bias: whether the cell has b and c.

    Attributes:
        weight_ih: W (H, I).
        weight_hh: U (H, O).
        bias_ih: b (H).
        weight_ho: V (O, H).
        bias_ho: c (O).

    Example:
        >>> import torch, rnnkit
        >>> layer = rnnkit.Recurrent("jordan", 3, 8, output_size=2)
        >>> output, y_last = layer(torch.randn(7, 4, 3))   # x (T, B, I)
        >>> output.shape, y_last.shape                     # (T, B, O); the state is y: (L·D, B, O)
        (torch.Size([7, 4, 2]), torch.Size([1, 4, 2]))
    """

    def __init__(self, input_size: int, hidden_size: int, *, output_size: int | None = None,
                 nonlinearity: str = "tanh", output_nonlinearity: str = "tanh", bias: bool = True,
                 own_parameters: bool = True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, own_parameters=own_parameters,
                         device=device, dtype=dtype)
        if output_size is not None:
            check_positive_int("output_size", output_size)
        self._output_size = output_size or hidden_size
        self.f = lookup(nonlinearity)
        self.o = lookup(output_nonlinearity, "output_nonlinearity",
                        ("tanh", "relu", "sigmoid", "identity"))
        self.nonlinearity, self.output_nonlinearity, self.bias = nonlinearity, output_nonlinearity, bias
        self.state_names = ("y",)
        self._build()

    @property
    def output_size(self) -> int:
        return self._output_size

    def state_sizes(self):
        return (self._output_size,)

    def parameter_shapes(self):
        H, I, O = self.hidden_size, self.input_size, self._output_size
        shapes = {"weight_ih": (H, I), "weight_hh": (H, O), "weight_ho": (O, H)}
        if self.bias:
            shapes.update(bias_ih=(H,), bias_ho=(O,))
        return shapes

    def project_input(self, p: Params, x: Tensor) -> Tensor:
        return affine(x, p["weight_ih"], p.get("bias_ih"))                     # (T, B, H)

    def step(self, p: Params, u_t: Tensor, state: State, recurrent_mask=None):
        (y,) = state                                                            # (B, O)
        h = self.f(u_t + affine(masked(y, recurrent_mask), p["weight_hh"]))    # (B, H)
        y = self.o(affine(h, p["weight_ho"], p.get("bias_ho")))                # (B, O)
        return y, (y,)

    # Hand BPTT: δz_t = δy_t ⊙ o'(z_t), δh_t = Vᵀ δz_t, δa_t = δh_t ⊙ f'(a_t), δy_{t-1} = Uᵀ δa_t;
    # dU = Σ δa_t y_{t-1}ᵀ, dV = Σ δz_t h_tᵀ, dc = Σ δz_t.
    def supports_hand_bptt(self):
        return True

    def step_saving(self, p, u_t, state):
        (y_prev,) = state
        h = self.f(u_t + affine(y_prev, p["weight_hh"]))                        # (B, H)
        y = self.o(affine(h, p["weight_ho"], p.get("bias_ho")))                 # (B, O)
        return (y,), {"y_prev": y_prev, "h": h, "y": y}

    def step_backward(self, p, cache, grad_state):
        (dy,) = grad_state                                                      # (B, O)
        d_z = dy * DERIVATIVES_FROM_OUTPUT[self.output_nonlinearity](cache["y"])
        d_a = (d_z @ p["weight_ho"]) * DERIVATIVES_FROM_OUTPUT[self.nonlinearity](cache["h"])
        record = {"d_a": d_a, "d_z": d_z, "y_prev": cache["y_prev"], "h": cache["h"]}
        return d_a, (d_a @ p["weight_hh"],), record

    def recurrent_grads(self, p, records):
        grads = {"weight_hh": summed_outer(records["d_a"], records["y_prev"]),
                 "weight_ho": summed_outer(records["d_z"], records["h"])}
        if "bias_ho" in p:
            grads["bias_ho"] = summed(records["d_z"])
        return grads

    def extra_repr(self):
        return f"{super().extra_repr()}, output_size={self._output_size}"
