r"""A linear-chain conditional random field over per-step tag scores.

Lafferty, McCallum & Pereira, "Conditional Random Fields: Probabilistic Models for Segmenting and
Labeling Sequence Data", ICML 2001; on top of a bidirectional LSTM as in Huang, Xu & Yu,
"Bidirectional LSTM-CRF Models for Sequence Tagging" (arXiv:1508.01991, 2015) and Lample et al.,
"Neural Architectures for Named Entity Recognition" (arXiv:1603.01360, 2016).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..cells.base import check_positive_int
from ..engine import check_lengths
from .encoder import length_mask


class LinearChainCRF(nn.Module):
    r"""Scores whole tag paths and normalises over all of them.

    For emissions :math:`E \in \mathbb{R}^{n \times K}` (the network's score of tag :math:`k` at step
    :math:`t`) and a tag path :math:`y_1 \dots y_n`, the path's score is

    .. math::
        s(y) = \pi_{y_1} + \sum_{t=1}^{n} E_{t, y_t} + \sum_{t=2}^{n} A_{y_{t-1}, y_t} + \omega_{y_n}

    with :math:`A` the transition scores (``transitions[i, j]``: from tag i to tag j), :math:`\pi`
    the start scores and :math:`\omega` the end scores. The model's probability of a path is
    :math:`p(y \mid E) = \exp s(y) / Z` with :math:`Z = \sum_{y'} \exp s(y')` over all :math:`K^n`
    paths, computed by the forward algorithm in log space:

    .. math::
        \alpha_1 = \pi + E_1, \qquad
        \alpha_t(j) = E_{t,j} + \log \sum_i \exp\big(\alpha_{t-1}(i) + A_{i,j}\big), \qquad
        \log Z = \log \sum_j \exp\big(\alpha_n(j) + \omega_j\big).

    Viterbi decoding replaces the log-sum-exp by a max and follows the arg-max back.

    Shapes: B batch, T padded length, K tags; ``lengths`` (B,) with 1 ≤ n_b ≤ T. Steps past a
    sequence's end never enter a score (their emissions and tags may hold anything).

    Args:
        num_tags: K, the number of tags.
    """

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        check_positive_int("num_tags", num_tags)
        self.num_tags = num_tags
        # small random scores, not zeros, so that no two tags start out tied (as pytorch-crf does)
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))   # (K, K)
        self.start = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))                  # (K,)
        self.end = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))                    # (K,)

    def forward(self, emissions: Tensor, tags: Tensor, lengths: Tensor) -> Tensor:
        """The log-likelihood of each sequence's tags, (B,): see ``log_likelihood``."""
        return self.log_likelihood(emissions, tags, lengths)

    def log_likelihood(self, emissions: Tensor, tags: Tensor, lengths: Tensor) -> Tensor:
        """log p(tags | emissions) of each sequence: (B,). Its negative is the training loss."""
        emissions, mask = self._read(emissions, lengths)
        tags = self._read_tags(tags, mask)
        return self._score(emissions, tags, mask) - self._log_partition(emissions, mask)

    def score(self, emissions: Tensor, tags: Tensor, lengths: Tensor) -> Tensor:
        """s(y) of the given tag path of each sequence: (B,)."""
        emissions, mask = self._read(emissions, lengths)
        return self._score(emissions, self._read_tags(tags, mask), mask)

    def log_partition(self, emissions: Tensor, lengths: Tensor) -> Tensor:
        """log Z of each sequence by the forward algorithm: (B,)."""
        return self._log_partition(*self._read(emissions, lengths))

    def _score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        n = mask.sum(1)                                                               # (B,)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)                   # (B, T)
        moved = self.transitions[tags[:, :-1], tags[:, 1:]]                           # (B, T-1)
        last_tag = tags.gather(1, (n - 1).unsqueeze(1)).squeeze(1)                    # (B,)
        return (self.start[tags[:, 0]]
                + (emitted * mask).sum(1)
                + (moved * mask[:, 1:]).sum(1)
                + self.end[last_tag])

    def _log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        alpha = self.start + emissions[:, 0]                                          # (B, K)
        for t in range(1, emissions.shape[1]):
            # (B, K_from, 1) + (K_from, K_to) -> log-sum-exp over the previous tag
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions, dim=1)      # (B, K)
            alpha = torch.where(mask[:, t:t + 1], step + emissions[:, t], alpha)       # (B, K)
        return torch.logsumexp(alpha + self.end, dim=1)                               # (B,)

    @torch.no_grad()
    def decode(self, emissions: Tensor, lengths: Tensor) -> list[list[int]]:
        """The highest-scoring tag path of each sequence (Viterbi), cut to its length."""
        emissions, mask = self._read(emissions, lengths)
        best = self.start + emissions[:, 0]                                           # (B, K)
        backpointers = []
        for t in range(1, emissions.shape[1]):
            candidates = best.unsqueeze(2) + self.transitions                         # (B, K_from, K_to)
            step_best, came_from = candidates.max(dim=1)                              # (B, K) each
            best = torch.where(mask[:, t:t + 1], step_best + emissions[:, t], best)   # (B, K)
            backpointers.append(came_from)
        last_tags = (best + self.end).argmax(dim=1).tolist()                          # (B,)
        pointers = torch.stack(backpointers, 1).tolist() if backpointers else []      # (B, T-1, K)
        paths = []
        for b, n in enumerate(mask.sum(1).tolist()):
            path = [last_tags[b]]
            for t in range(n - 1, 0, -1):            # pointers[b][t - 1] maps the tag at t to t - 1
                path.append(pointers[b][t - 1][path[-1]])
            paths.append(path[::-1])
        return paths

    # ------------------------------------------------------------------------------------------
    def _read(self, emissions: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Check the emissions and lengths; return the emissions with padding set to 0 (so that
        even NaN past an end cannot reach a score or a gradient) and the (B, T) mask."""
        if not isinstance(emissions, Tensor) or emissions.dim() != 3 or emissions.shape[2] != self.num_tags:
            got = tuple(emissions.shape) if isinstance(emissions, Tensor) else type(emissions).__name__
            raise ValueError(f"emissions must have shape (B, T, {self.num_tags}) (batch, steps, tags), "
                             f"got {got}")
        B, T, _ = emissions.shape
        lengths = check_lengths(lengths, B, T).to(emissions.device)                   # (B,)
        mask = length_mask(lengths, T)                                                # (B, T)
        return emissions.masked_fill(~mask.unsqueeze(2), 0.0), mask

    def _read_tags(self, tags: Tensor, mask: Tensor) -> Tensor:
        """Check that tags is (B, T) of ids in [0, K) inside each sequence; padding becomes tag 0."""
        if not isinstance(tags, Tensor) or tags.shape != mask.shape or tags.is_floating_point():
            got = (f"{tuple(tags.shape)} {tags.dtype}" if isinstance(tags, Tensor)
                   else type(tags).__name__)
            raise ValueError(f"tags must be an integer tensor of shape {tuple(mask.shape)} "
                             f"(batch, steps), got {got}")
        tags = tags.to(mask.device, torch.long).masked_fill(~mask, 0)                 # (B, T)
        if tags.numel() and (int(tags.min()) < 0 or int(tags.max()) >= self.num_tags):
            raise ValueError(f"tags must lie in [0, {self.num_tags}) inside each sequence, got values "
                             f"from {int(tags.min())} to {int(tags.max())}")
        return tags

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"
