r"""Attention of a decoder over the encoder's outputs: additive (Bahdanau) and multiplicative (Luong).

D. Bahdanau, K. Cho, Y. Bengio, "Neural Machine Translation by Jointly Learning to Align and
Translate", ICLR 2015, arXiv:1409.0473 (additive scores).
M.-T. Luong, H. Pham, C. D. Manning, "Effective Approaches to Attention-based Neural Machine
Translation", EMNLP 2015, arXiv:1508.04025 (dot and general scores).

A query q (the decoder's state) scores every key k_s (the encoder's output at source step s):

.. math::
    \text{bahdanau:}\quad      e_s &= v^\top \tanh(W q + U k_s)          \\
    \text{luong-dot:}\quad     e_s &= q^\top k_s                         \\
    \text{luong-general:}\quad e_s &= q^\top W_a k_s                     \\
    a_s &= \frac{\exp e_s}{\sum_{s' \text{ valid}} \exp e_{s'}}, \qquad a_s = 0 \text{ on padding} \\
    c &= \sum_s a_s k_s

Shapes: B batch, S source steps, Hq query size, Hk key size, A the additive score's hidden size.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..cells.base import check_choice

KINDS = ("bahdanau", "luong-dot", "luong-general")


class Attention(nn.Module):
    r"""Scores a query against keys, softmax over the valid source steps, and the weighted context.

    Args:
        query_size: Hq, features of the query.
        key_size: Hk, features of each key (the keys are also the values).
        kind: ``"bahdanau"`` (additive), ``"luong-dot"`` (needs Hq = Hk) or ``"luong-general"``.
        attention_size: A, the hidden size of the additive score (``"bahdanau"`` only; default Hq).

    Parameters: bahdanau ``query_projection`` W (A, Hq), ``key_projection`` U (A, Hk), ``score``
    v (1, A); luong-general ``bilinear`` W_a (Hq, Hk) stored as a Linear from Hk to Hq, so that
    q^T W_a k = q · (W_a k); luong-dot none.

    Call: ``context, weights = attention(query, keys, mask)``

    * query (B, Hq), keys (B, S, Hk), mask (B, S) bool, True on valid steps.
    * context (B, Hk); weights (B, S), summing to 1 over the valid steps and exactly 0 on padding
      (a row with no valid step gets all-zero weights and a zero context).

    Decoders that attend to the same keys at every step call ``prepare(keys)`` once and pass it as
    ``prepared``: the part of the score that depends on the keys only (U k, W_a k, or k itself).
    """

    def __init__(self, query_size: int, key_size: int, kind: str = "bahdanau",
                 attention_size: int | None = None) -> None:
        super().__init__()
        check_choice("kind", kind, KINDS)
        if kind == "luong-dot" and query_size != key_size:
            raise ValueError(f"kind='luong-dot' needs query_size == key_size (q^T k); got "
                             f"query_size={query_size}, key_size={key_size}")
        if attention_size is not None and kind != "bahdanau":
            raise ValueError(f"attention_size is the additive score's hidden size, for kind='bahdanau' "
                             f"only; got attention_size={attention_size} with kind={kind!r}")
        self.query_size, self.key_size, self.kind = query_size, key_size, kind
        if kind == "bahdanau":
            A = attention_size or query_size
            self.query_projection = nn.Linear(query_size, A, bias=False)   # W
            self.key_projection = nn.Linear(key_size, A, bias=False)       # U
            self.score = nn.Linear(A, 1, bias=False)                       # v^T
        elif kind == "luong-general":
            self.bilinear = nn.Linear(key_size, query_size, bias=False)    # W_a: k -> W_a k

    def prepare(self, keys: Tensor) -> Tensor:
        """The keys' share of the score, computed once per source: (B, S, Hk) -> (B, S, ·)."""
        if self.kind == "bahdanau":
            return self.key_projection(keys)                               # (B, S, A)
        if self.kind == "luong-general":
            return self.bilinear(keys)                                     # (B, S, Hq)
        return keys                                                        # (B, S, Hk)

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor,
                prepared: Tensor | None = None) -> tuple[Tensor, Tensor]:
        self._check(query, keys, mask)
        if prepared is None:
            prepared = self.prepare(keys)
        if self.kind == "bahdanau":
            hidden = torch.tanh(self.query_projection(query).unsqueeze(1) + prepared)   # (B, S, A)
            scores = self.score(hidden).squeeze(-1)                                       # (B, S)
        else:
            scores = torch.bmm(prepared, query.unsqueeze(-1)).squeeze(-1)                # (B, S)
        # The smallest finite number rather than -inf keeps a row without valid steps free of NaN;
        # exp underflows to exactly 0 next to any finite score, and masked_fill makes it certain.
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1).masked_fill(~mask, 0.0)                  # (B, S)
        context = torch.bmm(weights.unsqueeze(1), keys).squeeze(1)                         # (B, Hk)
        return context, weights

    def _check(self, query: Tensor, keys: Tensor, mask: Tensor) -> None:
        if query.dim() != 2 or query.shape[1] != self.query_size:
            raise ValueError(f"query must have shape (B, query_size={self.query_size}), "
                             f"got {tuple(query.shape)}")
        if keys.dim() != 3 or keys.shape[0] != query.shape[0] or keys.shape[2] != self.key_size:
            raise ValueError(f"keys must have shape (B={query.shape[0]}, S, key_size={self.key_size}), "
                             f"got {tuple(keys.shape)}")
        if mask.dtype != torch.bool or tuple(mask.shape) != tuple(keys.shape[:2]):
            raise ValueError(f"mask must be a bool tensor of shape (B, S)={tuple(keys.shape[:2])}, "
                             f"got {mask.dtype} {tuple(mask.shape)}")

    def extra_repr(self) -> str:
        return f"query_size={self.query_size}, key_size={self.key_size}, kind={self.kind!r}"
