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
a one-way encoder each prediction sees only the past). Normalising the targets (and undoing it)
is the caller's job; the model predicts in whatever units it is trained on.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..cells.base import check_positive_int
from .encoder import FLAT_SETTINGS, EncoderConfig, EncoderLike, build_encoder, encoder_from_flat, length_mask

DEFAULT_ENCODER = EncoderConfig("lstm", hidden_size=64)


class SequenceRegressor(nn.Module):
    r"""Real-valued outputs from sequences of feature vectors.

    Args:
        input_size: I, features per step.
        output_size: K, values predicted (per sequence, or per step with ``many_to_many``).
        encoder: the recurrent encoder (``rnnkit.models.encoder``): an ``EncoderConfig``, built here
            for I, or a built ``rnnkit.Recurrent`` / ``RecurrentEncoder`` reading I features. Default:
            one LSTM layer, H = 64. A bidirectional encoder's many-to-many predictions see the future too.
        dropout: dropout on the states before the output layer (between stacked layers:
            ``EncoderConfig.dropout``).
        many_to_many: predict at every step instead of once per sequence.
        *flat_settings, **flat_options: deprecated: ``hidden_size``, ``cell``, ``num_layers``,
            ``bidirectional`` (after ``output_size``, or by keyword) and the cell's options, as earlier
            releases took them (``dropout`` then also acts between layers); a DeprecationWarning shows
            the ``encoder=`` that replaces them.

    Call: ``predictions = model(x, lengths)``; ``predictions, loss = model(x, lengths, targets=targets)``

    * x: (B, T, I) floats; lengths: (B,) true lengths, 1 ≤ n ≤ T (None: all T).
    * predictions: (B, K) many-to-one; (B, T, K) many-to-many, zero past each sequence's end.
    * targets: the predictions' shape; the loss is the mean squared error over the B·K values
      (many-to-many: over the steps inside each sequence, n_b·K values of sequence b; targets past
      its end are not read).
    """

    def __init__(self, input_size: int, output_size: int, *flat_settings, encoder: EncoderLike = DEFAULT_ENCODER,
                 dropout: float = 0.0, many_to_many: bool = False, **flat_options) -> None:
        super().__init__()
        encoder = encoder_from_flat("SequenceRegressor", encoder, DEFAULT_ENCODER, dropout=dropout,
                                    args=flat_settings, names=FLAT_SETTINGS, options=flat_options)
        check_positive_int("input_size", input_size)
        check_positive_int("output_size", output_size)
        self.input_size, self.output_size, self.many_to_many = input_size, output_size, many_to_many
        self.encoder = build_encoder("SequenceRegressor", encoder, input_size, f"input_size={input_size}")
        self.output_dropout = nn.Dropout(dropout)
        self.output = nn.Linear(self.encoder.output_size, output_size)

    def forward(self, x: Tensor, lengths: Tensor | None = None, *, targets: Tensor | None = None):
        if x.dim() != 3 or x.shape[-1] != self.input_size or not x.is_floating_point():
            raise ValueError(f"x must be float features of shape (B, T, input_size={self.input_size}), "
                             f"got {x.dtype} of shape {tuple(x.shape)}")
        B, T, _ = x.shape
        outputs, summary, _ = self.encoder(x, lengths)                     # (B, T, D·H), (B, D·H)
        mask = None
        if not self.many_to_many:
            predictions = self.output(self.output_dropout(summary))        # (B, K)
        else:
            predictions = self.output(self.output_dropout(outputs))        # (B, T, K)
            if lengths is not None:
                mask = length_mask(lengths.to(x.device), T).unsqueeze(-1)  # (B, T, 1)
                predictions = predictions.masked_fill(~mask, 0.0)          # (B, T, K), 0 past the end
        if targets is None:
            return predictions
        if targets.shape != predictions.shape:
            raise ValueError(f"targets must have the predictions' shape {tuple(predictions.shape)}, "
                             f"got {tuple(targets.shape)}")
        squared = (predictions - targets.to(predictions)) ** 2                     # (B, K) or (B, T, K)
        if mask is None:
            return predictions, squared.mean()
        return predictions, squared.masked_fill(~mask, 0.0).sum() / (mask.sum() * self.output_size)

    def extra_repr(self) -> str:
        return f"many_to_many={self.many_to_many}"
