"""The metrics each field reports: accuracy, conlleval span F1, BLEU and chrF, perplexity and bits per character.

Plain functions over predictions and references (tensors, lists of tags, strings); no model here.

* ``accuracy``: the fraction of positions where prediction and gold agree (optionally under a mask).
* ``span_f1``: chunk-level precision / recall / F1 with the semantics of conlleval, the CoNLL-2000
  shared task's evaluation script (Tjong Kim Sang & Buchholz 2000), as used for NER and slot filling.
* ``bleu`` and ``chrf``: corpus BLEU (Papineni et al. 2002) and chrF (Popović 2015) computed by
  sacrebleu (Post 2018, "A Call for Clarity in Reporting BLEU Scores"), so that scores are comparable
  with published ones.
* ``perplexity`` and ``bits_per_character``: from a summed negative log-likelihood in nats.

Scales: accuracy and span F1 are fractions in [0, 1]; BLEU and chrF keep sacrebleu's 0–100 scale.
"""
from __future__ import annotations

import math
from typing import Sequence

import sacrebleu
import torch
from torch import Tensor

__all__ = ["accuracy", "span_f1", "chunks", "bleu", "chrf", "perplexity", "bits_per_character"]


def accuracy(predicted: Tensor | Sequence, gold: Tensor | Sequence, mask: Tensor | None = None) -> float:
    """The fraction of positions where ``predicted`` equals ``gold``.

    Args:
        predicted: predicted labels, a tensor of any shape, or a flat sequence of labels of any kind
            (ids, strings such as intents).
        gold: gold labels, the same shape.
        mask: optional booleans of that shape; only True positions count (padding of a tagged batch).
    """
    if not isinstance(predicted, Tensor) and not isinstance(gold, Tensor):
        if len(predicted) != len(gold):
            raise ValueError(f"predicted and gold must have the same length, got {len(predicted)} "
                             f"and {len(gold)}")
        agree = torch.tensor([p == g for p, g in zip(predicted, gold)], dtype=torch.bool)
    else:
        predicted, gold = torch.as_tensor(predicted), torch.as_tensor(gold)
        if predicted.shape != gold.shape:
            raise ValueError(f"predicted and gold must have the same shape, got {tuple(predicted.shape)} "
                             f"and {tuple(gold.shape)}")
        agree = predicted == gold
    if mask is not None:
        mask = torch.as_tensor(mask, dtype=torch.bool, device=agree.device)
        if mask.shape != agree.shape:
            raise ValueError(f"mask must have the shape of predicted {tuple(agree.shape)}, "
                             f"got {tuple(mask.shape)}")
        agree = agree[mask]
    if agree.numel() == 0:
        raise ValueError("accuracy of no positions: predicted is empty or the mask selects nothing")
    return agree.float().mean().item()


def _split_tag(tag: str) -> tuple[str, str]:
    """``"B-city"`` → ``("B", "city")``; ``"O"`` → ``("O", "")`` (conlleval's reading of a tag)."""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def _ends_chunk(previous: str, previous_type: str, tag: str, kind: str) -> bool:
    """conlleval's endOfChunk, with seqeval's additions for S- tags and a chunk closed by E-."""
    if previous in ("E", "S"):
        return True
    if previous in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return previous not in ("O", ".") and previous_type != kind


def _starts_chunk(previous: str, previous_type: str, tag: str, kind: str) -> bool:
    """conlleval's startOfChunk: at B- / S-, at I- or E- after O or a closed (E-, S-) chunk, at a type change."""
    if tag in ("B", "S"):
        return True
    if previous in ("O", "E", "S") and tag in ("I", "E"):
        return True
    return tag not in ("O", ".") and previous_type != kind


def chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The chunks of one tag sequence as ``(type, first, last)`` (inclusive), read as conlleval reads them.

    A chunk starts at ``B-X``, at ``I-X`` after ``O`` or after a chunk of another type (so IOB1 and
    sloppy IOB2 both work), and ends before ``O``, ``B-``, or a type change. ``E-X`` closes a chunk
    and ``S-X`` is a chunk of one token (IOBES).

    >>> chunks(["B-PER", "I-PER", "O", "I-LOC", "I-ORG"])
    [('PER', 0, 1), ('LOC', 3, 3), ('ORG', 4, 4)]
    """
    found = []
    previous, previous_type, start = "O", "", None
    for position, tag in enumerate([*tags, "O"]):                  # a final O closes the last chunk
        prefix, kind = _split_tag(tag)
        if start is not None and _ends_chunk(previous, previous_type, prefix, kind):
            found.append((previous_type, start, position - 1))
            start = None
        if _starts_chunk(previous, previous_type, prefix, kind):
            start = position
        previous, previous_type = prefix, kind
    return found


def span_f1(predicted_tags: Sequence[Sequence[str]], gold_tags: Sequence[Sequence[str]]) -> dict:
    """Chunk precision, recall and F1 over sentences of BIO (IOB1, IOB2, IOBES) tags, as conlleval counts them.

    A predicted chunk is correct when a gold chunk has the same type, first and last token.
    Precision is 0 when nothing was predicted, recall 0 when there is nothing to find (conlleval's rule).

    Args:
        predicted_tags: one list of tag strings per sentence.
        gold_tags: the gold tags, the same number of sentences and tokens.

    Returns:
        ``{"precision", "recall", "f1"}`` as fractions in [0, 1], plus the counts ``"correct"``,
        ``"predicted"`` and ``"gold"`` (chunks), so that scores over several parts can be combined.
    """
    if len(predicted_tags) != len(gold_tags):
        raise ValueError(f"predicted_tags and gold_tags must have as many sentences; got "
                         f"{len(predicted_tags)} and {len(gold_tags)}")
    correct = predicted_count = gold_count = 0
    for sentence, (predicted, gold) in enumerate(zip(predicted_tags, gold_tags)):
        if isinstance(predicted, str) or isinstance(gold, str):
            raise TypeError(f"sentence {sentence}: expected a list of tags per sentence, got a string "
                            f"{(predicted if isinstance(predicted, str) else gold)[:40]!r}")
        if len(predicted) != len(gold):
            raise ValueError(f"sentence {sentence}: predicted_tags has {len(predicted)} tags, "
                             f"gold_tags has {len(gold)}")
        predicted_chunks, gold_chunks = set(chunks(predicted)), set(chunks(gold))
        correct += len(predicted_chunks & gold_chunks)
        predicted_count += len(predicted_chunks)
        gold_count += len(gold_chunks)
    precision = correct / predicted_count if predicted_count else 0.0
    recall = correct / gold_count if gold_count else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1,
            "correct": correct, "predicted": predicted_count, "gold": gold_count}


def _reference_streams(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]]
                       ) -> list[list[str]]:
    """sacrebleu's layout: a list of reference streams, each with one reference per hypothesis."""
    if isinstance(hypotheses, str) or not len(hypotheses):
        raise ValueError(f"hypotheses must be a non-empty list of strings, got {str(hypotheses)[:60]!r}")
    if isinstance(references, str) or not len(references):
        raise ValueError(f"references must be a non-empty list of strings or of reference streams, "
                         f"got {str(references)[:60]!r}")
    streams = [list(references)] if isinstance(references[0], str) else [list(s) for s in references]
    for number, stream in enumerate(streams):
        if len(stream) != len(hypotheses) or not all(isinstance(r, str) for r in stream):
            raise ValueError(f"references stream {number} must hold {len(hypotheses)} strings, one per "
                             f"hypothesis; got {len(stream)} items")
    return streams


def bleu(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]],
         return_object: bool = False, **sacrebleu_options):
    """Corpus BLEU by ``sacrebleu.corpus_bleu`` (default 13a tokenisation, as sacrebleu reports it).

    Args:
        hypotheses: one detokenised output string per sentence.
        references: one reference string per sentence, or several reference *streams* (sacrebleu's
            layout: ``[[ref1 of sentence 1, ref1 of sentence 2, ...], [ref2 of sentence 1, ...]]``).
        return_object: return sacrebleu's ``BLEUScore`` (n-gram precisions, brevity penalty, ...)
            instead of the score.
        **sacrebleu_options: passed to ``corpus_bleu`` (``tokenize=``, ``lowercase=``, ...).

    Returns:
        The BLEU score on 0–100 as a float, or the sacrebleu object.
    """
    result = sacrebleu.corpus_bleu(list(hypotheses), _reference_streams(hypotheses, references),
                                   **sacrebleu_options)
    return result if return_object else float(result.score)


def chrf(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]],
         return_object: bool = False, **sacrebleu_options):
    """Corpus chrF by ``sacrebleu.corpus_chrf`` (character 6-grams, β = 2); arguments as for ``bleu``.

    Returns:
        The chrF score on 0–100 as a float, or sacrebleu's ``CHRFScore``.
    """
    result = sacrebleu.corpus_chrf(list(hypotheses), _reference_streams(hypotheses, references),
                                   **sacrebleu_options)
    return result if return_object else float(result.score)


def _mean_nll(total_nll_nats: float | Tensor, count: int) -> float:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int (the number of predicted symbols), got {count!r}")
    return float(total_nll_nats) / count


def perplexity(total_nll_nats: float | Tensor, count: int) -> float:
    """exp(Σ −ln p / N): the perplexity of N predicted symbols (words, tokens) whose summed
    negative log-likelihood in nats is ``total_nll_nats``."""
    return math.exp(_mean_nll(total_nll_nats, count))


def bits_per_character(total_nll_nats: float | Tensor, count: int) -> float:
    """Σ −log₂ p / N = (Σ −ln p / N) / ln 2: the mean code length of N predicted characters, in bits."""
    return _mean_nll(total_nll_nats, count) / math.log(2)
