"""A cell written as a user writes one (docs/custom-cells.md), for the benchmark's user-defined row.

It lives outside ``rnnkit.cells`` and is not registered: the benchmark names it as a user names their
own cell, ``rnnkit.bench.user_cell:UserGatedCell`` (``package.module:ClassName``), so it takes the path
the dispatcher gives any cell of one's own — the generated loop (its ``step`` compiled by
torch.compile) wherever a gradient is needed.
"""
from __future__ import annotations

import torch

from ..cells import RecurrentCell
from ..cells.functional import affine, masked


class UserGatedCell(RecurrentCell):
    r"""A gated cell with one update gate z and a candidate n: less arithmetic than the GRU (two
    gates' products per step where the GRU has three, and no reset gate).

        z_t = σ(W_z x_t + U_z h_{t−1} + b_z)
        n_t = tanh(W_n x_t + U_n h_{t−1} + b_n)
        h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ n_t

    Parameters (gates stacked z, n): ``weight_ih`` [W_z; W_n] (2H, I), ``bias`` [b_z; b_n] (2H),
    ``weight_hh`` [U_z; U_n] (2H, H).
    """

    def __init__(self, input_size, hidden_size, *, own_parameters=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, own_parameters=own_parameters, device=device, dtype=dtype)
        self._build()

    def parameter_shapes(self):
        H, I = self.hidden_size, self.input_size
        return {"weight_ih": (2 * H, I), "bias": (2 * H,), "weight_hh": (2 * H, H)}

    def project_input(self, p, x):
        return affine(x, p["weight_ih"], p["bias"])                     # (T, B, 2H)

    def step(self, p, u_t, state, recurrent_mask=None):
        (h,) = state                                                    # (B, H)
        h_in = masked(h, recurrent_mask)            # variational recurrent dropout, when asked for
        x_z, x_n = u_t.chunk(2, dim=-1)                                 # each (B, H)
        h_z, h_n = affine(h_in, p["weight_hh"]).chunk(2, dim=-1)        # each (B, H)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + h_n)
        h = (1 - z) * h + z * n
        return h, (h,)
