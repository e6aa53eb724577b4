r"""Gate activity over time: the values of a gated cell's gates at every step of one sequence.

The gates are the cell's own (``RecurrentCell.step_with_gates``): the LSTM's input, forget and
output gates

.. math::
    i_t = σ(W_i x_t + U_i h_{t-1} + b_i), \quad f_t = σ(W_f x_t + U_f h_{t-1} + b_f), \quad
    o_t = σ(W_o x_t + U_o h_{t-1} + b_o),

the GRU's reset and update gates r_t, z_t, minGRU's z_t. Each is a sigmoid, so each value lies in
[0, 1]: f_t ≈ 1 keeps the cell state (and its gradient, see ``gradient_flow``), f_t ≈ 0 forgets it.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..layers import Recurrent
from .unroll import check_single_layer, read_batch, unroll


def gate_activity(layer: Recurrent, x: Tensor) -> dict[str, Tensor]:
    """Each gate's activation at every step of one sequence, by gate name, each (T, H).

    Args:
        layer: a single-layer, unidirectional ``Recurrent`` whose cell has gates (lstm: i, f, o;
            gru: r, z; mingru: z; minlstm: i'), run as at evaluation.
        x: one sequence, (T, I), or a batch holding one sequence ((T, 1, I), or (1, T, I) with
            ``batch_first``).
    """
    check_single_layer(layer, "gate_activity")
    batch = read_batch(layer, x, None)
    if batch.x.shape[1] != 1:
        raise ValueError(f"gate_activity takes one sequence, (T, I) or a batch of 1; got a batch of "
                         f"{batch.x.shape[1]} (input shape {tuple(x.shape)})")
    with torch.no_grad():
        run = unroll(layer, batch)
    if not run.gates[0]:
        raise ValueError(f"cell {layer.cell_name!r} has no gates to show "
                         "(gated cells: lstm, gru, mingru, minlstm)")
    names = run.gates[0].keys()
    return {name: torch.stack([step[name][0] for step in run.gates]) for name in names}   # each (T, H)
