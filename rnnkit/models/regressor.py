r"""Sequence → real values: forecasting from a window (many-to-one) or a value at every step (many-to-many).

A recurrent encoder reads the input vectors and a linear layer maps its state to real outputs
(Goodfellow, Bengio & Courville, *Deep Learning*, 2016, §10.2; for time series, e.g. Gers,
Eck & Schmidhuber, "Applying LSTM to Time Series Predictable through Time-Window Approaches",
ICANN 2001, and Jaeger & Haas, Science 2004, for the Mackey–Glass benchmark):

.. math::
    h_t &= \mathrm{cell}(x_t, h_{t-1})                                                  \\
    \text{many-to-one:}\quad  \hat y &= W_o\, s + b_o \in \mathbb{R}^{K}
        \quad (s\text{: the encoder's summary, } h_n \text{ for one direction})           \\
    \text{many-to-many:}\quad \hat y_t &= W_o\, h_t + b_o \in \mathbb{R}^{K}, \quad t \le n,
        \qquad \hat y_t = 0 \text{ for } t > n

Many-to-one forecasts the next K values after a window; many-to-many predicts at every step (with
``bidirectional=False`` each prediction sees only the past). Normalising the targets (and undoing it)
is the caller's job; the model predicts in whatever units it is trained on.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..cells.base import check_positive_int
from .encoder import RecurrentEncoder, length_mask


class SequenceRegressor(nn.Module):
    r"""Real-valued outputs from sequences of feature vectors.

    Args:
        input_size: I, features per step.
        output_size: K, values predicted (per sequence, or per step with ``many_to_many``).
        hidden_size: H, the hidden size of every recurrent cell.
        cell: a registered cell (``"lstm"``, ``"gru"``, ``"esn"``, ...).
        num_layers: L, stacked recurrent layers.
        bidirectional: read both ways (D = 2); many-to-many predictions then see the future too.
        dropout: dropout between stacked layers and on the states before the output layer.
        many_to_many: predict at every step instead of once per sequence.
        **cell_options: the cell's own options.

    Call: ``predictions = model(x, lengths)``

    * x: (B, T, I) floats; lengths: (B,) true lengths, 1 ≤ n ≤ T (None: all T).
    * predictions: (B, K) many-to-one; (B, T, K) many-to-many, zero past each sequence's end.
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int = 64, cell: str = "lstm",
                 num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.0,
                 many_to_many: bool = False, **cell_options) -> None:
        super().__init__()
        check_positive_int("input_size", input_size)
        check_positive_int("output_size", output_size)
        self.input_size, self.output_size, self.many_to_many = input_size, output_size, many_to_many
        self.encoder = RecurrentEncoder(input_size, hidden_size, cell, num_layers=num_layers,
                                        bidirectional=bidirectional,
                                        dropout=dropout if num_layers > 1 else 0.0, **cell_options)
        self.output_dropout = nn.Dropout(dropout)
        self.output = nn.Linear(self.encoder.output_size, output_size)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.input_size or not x.is_floating_point():
            raise ValueError(f"x must be float features of shape (B, T, input_size={self.input_size}), "
                             f"got {x.dtype} of shape {tuple(x.shape)}")
        B, T, _ = x.shape
        outputs, summary, _ = self.encoder(x, lengths)                     # (B, T, D·H), (B, D·H)
        if not self.many_to_many:
            return self.output(self.output_dropout(summary))               # (B, K)
        predictions = self.output(self.output_dropout(outputs))            # (B, T, K)
        if lengths is None:
            return predictions
        mask = length_mask(lengths.to(x.device), T)                        # (B, T)
        return predictions.masked_fill(~mask.unsqueeze(-1), 0.0)           # (B, T, K), 0 past the end

    def extra_repr(self) -> str:
        return f"many_to_many={self.many_to_many}"
