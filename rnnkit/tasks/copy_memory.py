"""The copy memory task (Hochreiter & Schmidhuber 1997; the form of Arjovsky et al. 2016,
arXiv:1511.06464).

A sequence of ``n_symbols`` symbols from an alphabet of ``n_categories`` (codes 1..n_categories)
is shown, followed by ``delay`` blanks (code 0), a delimiter (code n_categories + 1) and
``n_symbols`` − 1 more blanks; the target is blank everywhere except the last ``n_symbols`` steps,
where it is the shown sequence. Predicting blanks and then the uniform distribution over the
alphabet gives cross-entropy n_symbols · log(n_categories) / (delay + 2 · n_symbols), the
memoryless baseline.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def copy_memory(batch_size: int, delay: int, *, n_symbols: int = 10, n_categories: int = 8,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Input codes (T, B) and target codes (T, B) with T = delay + 2·n_symbols; 0 is blank and
    n_categories + 1 the delimiter, so the vocabulary has n_categories + 2 codes."""
    if delay < 1 or n_symbols < 1 or n_categories < 2:
        raise ValueError(f"need delay ≥ 1, n_symbols ≥ 1, n_categories ≥ 2; got {delay}, "
                         f"{n_symbols}, {n_categories}")
    T = delay + 2 * n_symbols
    symbols = torch.randint(1, n_categories + 1, (n_symbols, batch_size), generator=generator)
    inputs = torch.zeros(T, batch_size, dtype=torch.long)
    inputs[:n_symbols] = symbols
    inputs[n_symbols + delay - 1] = n_categories + 1                       # the delimiter: "now copy"
    targets = torch.zeros(T, batch_size, dtype=torch.long)
    targets[-n_symbols:] = symbols
    return inputs, targets


def memoryless_cross_entropy(delay: int, n_symbols: int = 10, n_categories: int = 8) -> float:
    """The baseline: blanks with certainty, then a uniform guess over the alphabet."""
    return n_symbols * math.log(n_categories) / (delay + 2 * n_symbols)
