"""Batches: padded id tensors with their lengths, length-bucketed batch orders, language-model streams.

* ``pad_batch`` pads id lists to (B, T) and returns the true lengths, which the models hand to
  ``Recurrent`` so that padding is never fed as data.
* ``bucket_batches`` groups examples of similar length, so that little of each batch is padding:
  shuffle, cut into pools of ``pool · batch_size`` examples, sort each pool by length, cut it into
  batches, shuffle the batches (the "sort within a pool" scheme of torchtext's BucketIterator and
  fairseq).
* ``stream_batches`` cuts one long id stream for truncated-BPTT language modelling the way Zaremba
  et al. (2014, "Recurrent Neural Network Regularization", arXiv:1409.2329) and PyTorch's
  word_language_model ``batchify`` do: B contiguous streams side by side, windows of T steps, the
  targets the inputs shifted by one step.
"""
from __future__ import annotations

import random
from typing import Iterator, Sequence

import torch
from torch import Tensor


def pad_batch(sequences: Sequence[Sequence[int]], pad_index: int) -> tuple[Tensor, Tensor]:
    """Pad id sequences to one tensor.

    Args:
        sequences: B non-empty lists of ids.
        pad_index: the id written past each sequence's end.

    Returns:
        ids: LongTensor (B, T), T the longest length; lengths: LongTensor (B,).
    """
    if len(sequences) == 0:
        raise ValueError("sequences must hold at least one sequence, got an empty batch")
    lengths = torch.tensor([len(sequence) for sequence in sequences], dtype=torch.long)  # (B,)
    empty = (lengths == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"sequences must be non-empty; sequences{empty[:5]} have length 0")
    ids = torch.full((len(sequences), int(lengths.max())), pad_index, dtype=torch.long)  # (B, T)
    for row, sequence in enumerate(sequences):
        ids[row, :len(sequence)] = torch.as_tensor(sequence, dtype=torch.long)
    return ids, lengths


def bucket_batches(lengths: Sequence[int], batch_size: int, *, shuffle: bool = True, seed: int = 0,
                   pool: int | None = 50) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches of similar length; every index exactly once.

    Args:
        lengths: the length of each example.
        batch_size: examples per batch (the last batch of each pool may be smaller).
        shuffle: shuffle the examples before pooling and the batches after; False keeps the order
            of the pools and batches (deterministic evaluation).
        seed: seed of the shuffles (pass the epoch number for a new order each epoch).
        pool: examples sorted together, in batches (``pool · batch_size`` examples); larger pools waste
            less padding but give less random batches; None sorts all examples as one pool.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if pool is not None and (isinstance(pool, bool) or not isinstance(pool, int) or pool < 1):
        raise ValueError(f"pool must be a positive int (batches per sorted pool) or None, got {pool!r}")
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(order)
    pool_examples = len(order) if pool is None else pool * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), max(pool_examples, 1)):
        pooled = sorted(order[start:start + pool_examples], key=lambda index: lengths[index])
        batches.extend(pooled[i:i + batch_size] for i in range(0, len(pooled), batch_size))
    if shuffle:
        rng.shuffle(batches)
    return batches


def stream_batches(ids: Tensor, batch_size: int, seq_len: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Cut a token stream into language-model batches (Zaremba's batchify), batch first.

    The stream is trimmed to a multiple of B and laid out as B contiguous rows of N = len // B tokens
    (row b holds tokens b·N … b·N + N − 1); window k gives inputs ``rows[:, kT : kT + T]`` and targets
    ``rows[:, kT + 1 : kT + T + 1]``. The last window is shorter when N − 1 is not a multiple of T.
    Carrying the state from one window to the next continues each row's text.

    Args:
        ids: 1-D LongTensor, the whole stream.
        batch_size: B, parallel streams.
        seq_len: T, steps per window (truncated-BPTT length).

    Yields:
        (inputs, targets), each LongTensor (B, T) (T smaller in the last window).
    """
    if not isinstance(ids, Tensor) or ids.dim() != 1:
        raise ValueError(f"ids must be a 1-D tensor (the token stream), got "
                         f"{tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__}")
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    steps = ids.numel() // batch_size                            # N tokens per row
    if steps < 2:
        raise ValueError(f"ids holds {ids.numel()} tokens: at least 2 per row (2·batch_size = "
                         f"{2 * batch_size}) are needed for one input and its target")
    rows = ids[:steps * batch_size].reshape(batch_size, steps)   # (B, N)

    def windows() -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, steps - 1, seq_len):
            width = min(seq_len, steps - 1 - start)
            yield rows[:, start:start + width], rows[:, start + 1:start + 1 + width]  # (B, T), (B, T)
    return windows()


def count_stream_batches(num_tokens: int, batch_size: int, seq_len: int) -> int:
    """How many windows ``stream_batches`` yields for a stream of ``num_tokens`` (for progress bars)."""
    steps = num_tokens // batch_size
    return max(0, -(-(steps - 1) // seq_len))
