r"""Decoding a ``Seq2Seq``: greedy search and beam search with length normalisation.

Y. Wu, M. Schuster, Z. Chen, et al., "Google's Neural Machine Translation System: Bridging the Gap
between Human and Machine Translation", arXiv:1609.08144, 2016 (§7: length normalisation).

Both searches run the model's own ``encode`` once and ``decode_step`` per token, the step that
teacher-forced training runs. A hypothesis Y's log-probability and its beam-search score are

.. math::
    \log P(Y \mid X) = \sum_{t=1}^{|Y|} \log p(y_t \mid y_{<t}, X), \qquad
    s(Y, X) = \frac{\log P(Y \mid X)}{lp(Y)}, \qquad lp(Y) = \left(\frac{5 + |Y|}{6}\right)^{\alpha}

where |Y| counts the decoding steps, the end-of-sentence token included (α = 0: no normalisation).
The padding and begin-of-sentence ids are never chosen; the log-probabilities of the chosen tokens
are those of the model's full softmax. ``max_length`` caps the decoding steps (EOS included): a
hypothesis that reaches it without EOS ends there, unfinished.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from .seq2seq import DecoderState, EncodedSource, Seq2Seq


@dataclass
class Hypothesis:
    """One decoded sentence.

    tokens: target ids, without BOS and EOS. log_prob: log P(Y | X) (EOS's step included when
    finished). score: log_prob / lp(Y), what beam search ranks by (greedy: = log_prob).
    finished: whether it ended with EOS. attention: (steps, S_b) weights over the sentence's own
    source tokens, one row per decoding step (EOS's step included); None without attention.
    """
    tokens: list[int]
    log_prob: float
    score: float
    finished: bool
    attention: Tensor | None


def length_normalisation(steps: int, alpha: float) -> float:
    """Wu et al. (2016)'s lp(Y) = ((5 + |Y|) / 6)^α."""
    return ((5.0 + steps) / 6.0) ** alpha


def greedy_decode(model: Seq2Seq, source: Tensor, source_lengths: Tensor,
                  max_length: int | Sequence[int]) -> list[Hypothesis]:
    """The most probable token at every step, for the whole batch at once; one hypothesis per
    sentence, in the batch's order. ``max_length``: decoding steps (EOS included), one number for
    the batch or one per sentence (then each sentence decodes as it would alone, whatever batch it
    is in). Runs in evaluation mode, without gradients."""
    limits = _limits(max_length, source.shape[0])
    with _evaluating(model):
        memory, state = model.encode(source, source_lengths)
        B = source.shape[0]
        tokens = source.new_full((B,), model.bos_index)                          # (B,)
        chosen, step_log_probs, step_weights = [], [], []
        finished = torch.zeros(B, dtype=torch.bool, device=source.device)        # (B,)
        for _ in range(max(limits)):
            logits, state, weights = model.decode_step(tokens, state, memory)
            log_probs = _choosable(model, torch.log_softmax(logits, dim=-1))      # (B, V)
            best, tokens = log_probs.max(dim=-1)                                  # (B,), (B,)
            chosen.append(tokens)
            step_log_probs.append(best)
            step_weights.append(weights)
            finished = finished | (tokens == model.eos_index)
            if finished.all():
                break
    return [_greedy_hypothesis(model, b, int(source_lengths[b]), chosen[:limits[b]], step_log_probs, step_weights)
            for b in range(B)]


def _greedy_hypothesis(model: Seq2Seq, b: int, source_length: int, chosen, step_log_probs,
                       step_weights) -> Hypothesis:
    """Sentence b's tokens up to its EOS among the steps in ``chosen`` (its own step limit)."""
    tokens, log_prob, rows, finished = [], 0.0, [], False
    for step, token in enumerate(int(t[b]) for t in chosen):
        log_prob += float(step_log_probs[step][b])
        if step_weights[step] is not None:
            rows.append(step_weights[step][b, :source_length])                   # (S_b,)
        if token == model.eos_index:
            finished = True
            break
        tokens.append(token)
    attention = torch.stack(rows) if rows else None                               # (steps, S_b)
    return Hypothesis(tokens, log_prob, log_prob, finished, attention)


def beam_search(model: Seq2Seq, source: Tensor, source_lengths: Tensor, beam_size: int,
                max_length: int | Sequence[int], length_penalty: float = 0.0) -> list[Hypothesis]:
    r"""Beam search, one sentence at a time (the k hypotheses of a sentence form the batch of each
    step; the source is encoded for the whole batch at once). Returns the best hypothesis per
    sentence by s(Y, X) with α = ``length_penalty``.

    Each step extends the k live hypotheses by every token and ranks the extensions by
    log-probability (all have the same length, so normalisation does not change their order).
    Among the 2k best, an EOS extension ranked within the first k is set aside as finished, and
    the first k others stay live (as fairseq does). A sentence ends when k hypotheses have
    finished or after ``max_length`` steps; live hypotheses then compete, unfinished, with the
    finished ones. With k = 1 this is greedy search. ``max_length``: one number for the batch, or
    one per sentence.
    """
    limits = _limits(max_length, source.shape[0])
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive int, got {beam_size!r}")
    with _evaluating(model):
        memory, state = model.encode(source, source_lengths)
        results = []
        for b in range(source.shape[0]):
            n = int(source_lengths[b])
            one = torch.tensor([b], device=source.device)
            sentence = EncodedSource(*(None if t is None else t[:, :n] for t in memory.index_select(one)))
            results.append(_beam_one(model, sentence, state.index_select(one), beam_size, limits[b],
                                     length_penalty))
    return results


@dataclass
class _Live:
    tokens: list[int]
    rows: list[Tensor]


def _beam_one(model: Seq2Seq, memory: EncodedSource, state: DecoderState, k: int, max_length: int,
              alpha: float) -> Hypothesis:
    """Beam search for one sentence (memory and state of batch 1)."""
    live = [_Live([], [])]
    live_log_probs = memory.keys.new_zeros(1)                                     # (n,)
    previous = torch.full((1,), model.bos_index, device=memory.keys.device)       # (n,)
    finished: list[Hypothesis] = []
    for step in range(1, max_length + 1):
        copies = torch.zeros(len(live), dtype=torch.long, device=previous.device)  # (n,)
        logits, state, weights = model.decode_step(previous, state, memory.index_select(copies))
        log_probs = _choosable(model, torch.log_softmax(logits, dim=-1))          # (n, V)
        V = log_probs.shape[-1]
        totals = (live_log_probs.unsqueeze(1) + log_probs).view(-1)               # (n·V,)
        best, flat = totals.topk(min(2 * k, totals.numel()))                      # (≤2k,)
        keep, next_live, next_log_probs = [], [], []
        for rank, (total, index) in enumerate(zip(best.tolist(), flat.tolist())):
            if total == float("-inf") or len(next_live) == k:
                break
            parent, token = divmod(index, V)
            rows = live[parent].rows + ([] if weights is None else [weights[parent]])
            if token == model.eos_index:
                if rank < k:
                    finished.append(_finished(live[parent].tokens, rows, total, step, True, alpha))
                continue
            keep.append(parent)
            next_live.append(_Live(live[parent].tokens + [token], rows))
            next_log_probs.append(total)
        if len(finished) >= k or not next_live:
            break
        live, live_log_probs = next_live, memory.keys.new_tensor(next_log_probs)
        parents = torch.tensor(keep, device=previous.device)
        state = state.index_select(parents)
        previous = torch.tensor([h.tokens[-1] for h in live], device=previous.device)
    else:
        finished += [_finished(h.tokens, h.rows, float(lp), max_length, False, alpha)
                     for h, lp in zip(live, live_log_probs)]
    return max(finished, key=lambda h: h.score)


def _finished(tokens: list[int], rows: list[Tensor], log_prob: float, steps: int, ended: bool,
              alpha: float) -> Hypothesis:
    attention = torch.stack(rows) if rows else None                               # (steps, S_b)
    return Hypothesis(list(tokens), log_prob, log_prob / length_normalisation(steps, alpha), ended, attention)


def _choosable(model: Seq2Seq, log_probs: Tensor) -> Tensor:
    """Log-probabilities with padding and BOS made impossible to choose."""
    log_probs = log_probs.clone()
    log_probs[:, [model.padding_idx, model.bos_index]] = float("-inf")
    return log_probs


def _limits(max_length: int | Sequence[int], batch_size: int) -> list[int]:
    """Each sentence's step limit from one number or one per sentence, checked."""
    limits = [max_length] * batch_size if isinstance(max_length, int) else list(max_length)
    if len(limits) != batch_size or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in limits):
        raise ValueError(f"max_length must be a positive int (decoding steps, EOS included) or one per "
                         f"sentence ({batch_size}), got {max_length!r}")
    return limits


@contextmanager
def _evaluating(model: Seq2Seq):
    """Evaluation mode (no dropout) and no gradients, the model's mode restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
