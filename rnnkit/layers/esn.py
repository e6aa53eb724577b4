"""``EchoStateNetwork``: a fixed reservoir (the ``"esn"`` cell) and a ridge-regression readout."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..cells import fit_ridge
from ..engine import valid_mask
from .recurrent import Recurrent


class EchoStateNetwork(nn.Module):
    r"""Reservoir computing: y_t = W_out [h_t; x_t] + c, with W_out fitted in closed form.

    The reservoir is ``Recurrent("esn", input_size, reservoir_size, **reservoir_options)`` (options:
    ``spectral_radius``, ``leak_rate``, ``sparsity``, ``input_scaling``, ``bias_scaling``, ``seed``,
    ``num_layers``, ``batch_first``). ``fit(x, y)`` runs it, drops the first ``washout`` steps of
    every sequence (the reservoir's transient), and solves the ridge regression of the targets on
    the states (and the inputs, when ``include_input``). Nothing is trained by gradient descent.

    Example (one-step-ahead forecasting of a series s, shape (T,)):
        >>> esn = EchoStateNetwork(1, 100, 1, seed=0)
        >>> esn.fit(s[:-1].view(-1, 1, 1), s[1:].view(-1, 1, 1))
        >>> prediction, state = esn(s[:-1].view(-1, 1, 1))
    """

    def __init__(self, input_size: int, reservoir_size: int, output_size: int, *, washout: int = 100,
                 ridge: float = 1e-6, include_input: bool = True, device=None, dtype=None,
                 **reservoir_options) -> None:
        super().__init__()
        if washout < 0:
            raise ValueError(f"washout must be non-negative, got {washout}")
        self.reservoir = Recurrent("esn", input_size, reservoir_size, device=device, dtype=dtype,
                                   **reservoir_options)
        self.washout, self.ridge, self.include_input = washout, ridge, include_input
        features = self.reservoir.output_size + (input_size if include_input else 0)
        self.register_buffer("readout_weight", torch.zeros(output_size, features, device=device, dtype=dtype))
        self.register_buffer("readout_bias", torch.zeros(output_size, device=device, dtype=dtype))
        self.register_buffer("fitted", torch.tensor(False))

    def features(self, x: Tensor, state=None, lengths=None):
        """Reservoir states, with the input appended: (T, B, F) (or (B, T, F)), and the final state."""
        states, final = self.reservoir(x, state, lengths)
        if self.include_input:
            states = torch.cat([states, x.to(states.dtype)], dim=-1)
        return states, final

    @torch.no_grad()
    def fit(self, x: Tensor, y: Tensor, lengths=None) -> "EchoStateNetwork":
        """Fit the readout so that y ≈ readout(features(x)); x (T, B, I), y (T, B, O) (or batch-first)."""
        if y.dim() != x.dim() or y.shape[:-1] != x.shape[:-1]:
            raise ValueError(f"targets must have the input's leading shape {tuple(x.shape[:-1])} plus "
                             f"output_size, got {tuple(y.shape)}")
        if y.shape[-1] != self.readout_weight.shape[0]:
            raise ValueError(f"targets must have output_size={self.readout_weight.shape[0]} features, "
                             f"got {y.shape[-1]}")
        states, _ = self.features(x, lengths=lengths)
        if self.reservoir.batch_first:
            states, y = states.transpose(0, 1), y.transpose(0, 1)            # (T, B, ·)
        T, B = states.shape[:2]
        if T <= self.washout:
            raise ValueError(f"sequences must be longer than washout={self.washout}, got length {T}")
        keep = torch.ones(T, B, dtype=torch.bool) if lengths is None else \
            valid_mask(torch.as_tensor(lengths), T, "cpu")
        keep[:self.washout] = False
        keep = keep.to(states.device)
        weight, bias = fit_ridge(states[keep], y[keep].to(states.dtype), self.ridge)  # (N, F) -> (O, F)
        self.readout_weight.copy_(weight)
        self.readout_bias.copy_(bias)
        self.fitted.fill_(True)
        return self

    def forward(self, x: Tensor, state=None, lengths=None):
        """Predictions (same layout as x, O features) and the reservoir's final state."""
        if not bool(self.fitted):
            raise RuntimeError("EchoStateNetwork: call fit(x, y) before predicting")
        states, final = self.features(x, state, lengths)
        return states @ self.readout_weight.T + self.readout_bias, final
