r"""Pooling a recurrent encoder's outputs over time into one vector per sequence, padding excluded.

For outputs :math:`h_1 \dots h_n` of a sequence of true length :math:`n` (steps past :math:`n` are
padding and never count):

.. math::
    \text{last:}\quad      p &= s \quad \text{(the encoder's summary: forward } h_n
                                \,\Vert\, \text{backward } h_1\text{)}              \\
    \text{mean:}\quad      p &= \tfrac{1}{n} \textstyle\sum_{t=1}^{n} h_t            \\
    \text{max:}\quad       p_j &= \max_{t \le n} h_{t,j}                           \\
    \text{attention:}\quad e_t &= v^\top \tanh(U h_t + W q), \quad
                           a_t = \frac{\exp e_t}{\sum_{t' \le n} \exp e_{t'}}, \quad
                           p = \textstyle\sum_{t=1}^{n} a_t h_t

Attention pooling scores each step against a learned query vector q with an additive score
(Bahdanau, Cho & Bengio, ICLR 2015, arXiv:1409.0473), which is the word attention of Yang et al.,
"Hierarchical Attention Networks for Document Classification", NAACL 2016 (their context vector
:math:`u_w` is v here, and W q their bias). Max pooling over recurrent states follows Conneau et al.,
"Supervised Learning of Universal Sentence Representations from Natural Language Inference Data",
EMNLP 2017, arXiv:1705.02364.

Shapes: B batch, T padded length, F features per step (the encoder's D·O), A the score's hidden size.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..cells.base import check_choice
from ..engine import check_lengths
from .attention import Attention
from .encoder import length_mask

POOLING_METHODS = ("last", "mean", "max", "attention")


def _valid_mask(outputs: Tensor, lengths: Tensor) -> Tensor:
    """(B, T) bool after checking outputs is (B, T, F) and 1 ≤ lengths ≤ T."""
    if outputs.dim() != 3:
        raise ValueError(f"outputs must have shape (B, T, F), got {tuple(outputs.shape)}")
    B, T, _ = outputs.shape
    lengths = check_lengths(lengths, B, T)
    return length_mask(lengths.to(outputs.device), T)                      # (B, T)


def mean_weights(outputs: Tensor, lengths: Tensor) -> Tensor:
    """(B, T): 1/n on each sequence's n valid steps, 0 past its end (mean pooling as attention)."""
    mask = _valid_mask(outputs, lengths).to(outputs.dtype)                 # (B, T)
    return mask / mask.sum(dim=1, keepdim=True)                            # (B, T)


def mean_pool(outputs: Tensor, lengths: Tensor) -> Tensor:
    """The mean of each sequence's valid outputs: (B, T, F), (B,) -> (B, F)."""
    weights = mean_weights(outputs, lengths)                               # (B, T)
    return torch.bmm(weights.unsqueeze(1), outputs).squeeze(1)             # (B, F)


def max_pool(outputs: Tensor, lengths: Tensor) -> Tensor:
    """The feature-wise maximum over each sequence's valid outputs: (B, T, F), (B,) -> (B, F).

    Padding is set to -inf first, so that it never wins (the encoder's zero padding would beat an
    all-negative feature)."""
    mask = _valid_mask(outputs, lengths)                                   # (B, T)
    return outputs.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)   # (B, F)


class AttentionPooling(nn.Module):
    r"""A learned query attends over each sequence's valid steps (additive scores, masked softmax).

    Args:
        input_size: F, features of each step.
        attention_size: A, the hidden size of the additive score (default F).

    Parameters: ``query`` q (A,), and the additive score's U (A, F), W (A, A), v (1, A) inside
    ``attention`` (an ``rnnkit.models.attention.Attention`` of kind ``"bahdanau"``).

    Call: ``pooled, weights = pooling(outputs, lengths)``: outputs (B, T, F), lengths (B,) →
    pooled (B, F), weights (B, T) summing to 1 over each sequence's steps and exactly 0 past its end.
    """

    def __init__(self, input_size: int, attention_size: int | None = None) -> None:
        super().__init__()
        A = attention_size or input_size
        self.attention = Attention(A, input_size, kind="bahdanau", attention_size=A)
        self.query = nn.Parameter(torch.empty(A).uniform_(-A ** -0.5, A ** -0.5))   # (A,)

    def forward(self, outputs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        mask = _valid_mask(outputs, lengths)                               # (B, T)
        query = self.query.expand(outputs.shape[0], -1)                    # (B, A)
        return self.attention(query, outputs, mask)                        # (B, F), (B, T)


class Pooling(nn.Module):
    """One of the poolings above, chosen by name, with one call for all.

    Args:
        method: ``"last"``, ``"mean"``, ``"max"`` or ``"attention"``.
        input_size: F, features of each step (used by ``"attention"``).
        attention_size: A for ``"attention"`` (default F).

    Call: ``pooled, weights = pooling(outputs, lengths, summary)``

    * outputs (B, T, F); lengths (B,); summary (B, F), the encoder's summary (``"last"`` returns it).
    * pooled (B, F); weights (B, T) for ``"attention"`` (for plotting) and ``"mean"`` (1/n on valid
      steps), None for ``"last"`` and ``"max"``.
    """

    def __init__(self, method: str, input_size: int, attention_size: int | None = None) -> None:
        super().__init__()
        check_choice("pooling", method, POOLING_METHODS)
        if attention_size is not None and method != "attention":
            raise ValueError(f"attention_size is for pooling='attention' only; got attention_size="
                             f"{attention_size} with pooling={method!r}")
        self.method, self.output_size = method, input_size
        self.attention = AttentionPooling(input_size, attention_size) if method == "attention" else None

    def forward(self, outputs: Tensor, lengths: Tensor,
                summary: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if self.method == "last":
            if summary is None or summary.shape != (outputs.shape[0], outputs.shape[-1]):
                raise ValueError(f"pooling='last' needs the encoder's summary of shape (B, F)="
                                 f"{(outputs.shape[0], outputs.shape[-1])}, got "
                                 f"{None if summary is None else tuple(summary.shape)}")
            return summary, None
        if self.method == "mean":
            weights = mean_weights(outputs, lengths)                       # (B, T)
            return torch.bmm(weights.unsqueeze(1), outputs).squeeze(1), weights   # (B, F), (B, T)
        if self.method == "max":
            return max_pool(outputs, lengths), None
        return self.attention(outputs, lengths)

    def extra_repr(self) -> str:
        return f"method={self.method!r}"
