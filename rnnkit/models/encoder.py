"""The recurrent encoder every model shares: any registered cell, stacked, bidirectional, with lengths.

Models embed their input (tokens, characters, features) and hand the vectors to a
``RecurrentEncoder``; it runs ``rnnkit.Recurrent`` with the true lengths (padding is never fed as
data) and returns every step's output and a summary of each whole sequence.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layers import Recurrent


class RecurrentEncoder(nn.Module):
    r"""Run a recurrent stack over a padded batch and summarise each sequence.

    Args:
        input_size: I, features of each input step.
        hidden_size: H, the hidden size of every cell.
        cell: a registered cell name (``rnnkit.cells.available()``), e.g. ``"lstm"``, ``"gru"``.
        num_layers: L, stacked layers.
        bidirectional: D = 2 when True.
        dropout: dropout between stacked layers (as torch.nn.LSTM).
        **cell_options: the cell's own options (``variant="cifg"``, ``nonlinearity="relu"``, ...).

    Call: ``outputs, summary, state = encoder(x, lengths)``

    * x: (B, T, I) padded batch; lengths: (B,) true lengths (None: all T).
    * outputs: (B, T, D·O), zero past each sequence's end.
    * summary: (B, D·O), the forward direction's output at each sequence's last step, concatenated
      with the backward direction's output at step 0 (which has read the whole sequence).
    * state: the final state as ``Recurrent`` returns it ((L·D, B, S) or a tuple of such).
    """

    def __init__(self, input_size: int, hidden_size: int, cell: str = "lstm", num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, **cell_options) -> None:
        super().__init__()
        self.rnn = Recurrent(cell, input_size, hidden_size, num_layers=num_layers,
                             bidirectional=bidirectional, batch_first=True, dropout=dropout,
                             **cell_options)
        self.num_directions = 2 if bidirectional else 1
        self.output_size = self.num_directions * self.rnn.cells[0].output_size

    def forward(self, x: Tensor, lengths: Tensor | None = None, state=None):
        B, T, _ = x.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long)
        lengths = lengths.to("cpu", torch.long)
        outputs, final_state = self.rnn(x, state, lengths=lengths)                 # (B, T, D·O)
        O = self.output_size // self.num_directions
        last = (lengths - 1).clamp(min=0).to(x.device)                             # (B,)
        forward_last = outputs[torch.arange(B, device=x.device), last, :O]         # (B, O)
        if self.num_directions == 1:
            return outputs, forward_last, final_state
        backward_first = outputs[:, 0, O:]                                         # (B, O)
        return outputs, torch.cat([forward_last, backward_first], dim=-1), final_state


def length_mask(lengths: Tensor, max_length: int) -> Tensor:
    """(B, T) booleans: True where step t is inside sequence b."""
    steps = torch.arange(max_length, device=lengths.device)                       # (T,)
    return steps.unsqueeze(0) < lengths.unsqueeze(1)                              # (B, T)
