"""Flushing subnormal floats to zero while training on the CPU.

A vanishing gradient shrinks geometrically going back through time (by about 0.6 a step for a tanh
RNN at its default initialisation), so on sequences of a few hundred steps its float32 values fall
below 1.2e-38, into the subnormal range, which x86 CPUs compute many times slower than normal
floats. ``python benchmarks/subnormals.py`` measures it: one training step at T = 200 of torch's
tanh RNN and of rnnkit's LSTM and GRU took 4.6-7.1 times longer with subnormals kept
(docs/fast-paths.md). Flushing them
(``torch.set_flush_denormal``: results below the smallest normal float become 0, such inputs read
as 0) loses only magnitudes that no float32 update could carry.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

_SUBNORMAL = 1e-39            # below float32's smallest normal number, 1.18e-38


def flushing_subnormals() -> bool:
    """Whether the calling thread flushes subnormal floats to zero just now."""
    return torch.tensor([_SUBNORMAL], dtype=torch.float32).mul(1.0).item() == 0.0


@contextmanager
def subnormals_flushed(enabled: bool = True) -> Iterator[bool]:
    """Flush subnormals on this thread inside the block (where the CPU can), then put back what
    was there before; yields whether they are flushed. ``enabled=False`` changes nothing."""
    before = flushing_subnormals()
    if not enabled or before:
        yield before
        return
    flushed = torch.set_flush_denormal(True)
    try:
        yield flushed
    finally:
        if flushed:
            torch.set_flush_denormal(False)
