"""A correct cell written as a user writes one (docs/custom-cells.md), for the tests of the cell
contract, the resolver and ``rnnkit.testing``; they break it one piece at a time, and copy this file
under another module name where a module on PYTHONPATH is needed (``--cell module:TinyCell``)."""
import torch

from rnnkit.cells import RecurrentCell
from rnnkit.cells.functional import affine, masked


class TinyCell(RecurrentCell):
    """h_t = tanh(W x_t + b + U h_{t−1})."""

    def __init__(self, input_size, hidden_size, *, own_parameters=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, own_parameters=own_parameters, device=device, dtype=dtype)
        self._build()

    def parameter_shapes(self):
        H, I = self.hidden_size, self.input_size
        return {"weight_ih": (H, I), "bias_ih": (H,), "weight_hh": (H, H)}

    def project_input(self, p, x):
        return affine(x, p["weight_ih"], p["bias_ih"])                          # (T, B, H)

    def step(self, p, u_t, state, recurrent_mask=None):
        (h,) = state                                                            # (B, H)
        h = torch.tanh(u_t + affine(masked(h, recurrent_mask), p["weight_hh"]))
        return h, (h,)
