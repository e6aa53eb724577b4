"""Sequences of different lengths in one padded batch: checks, masks and per-sequence reversal."""
from __future__ import annotations

import torch
from torch import Tensor


def check_lengths(lengths, batch_size: int, max_length: int) -> Tensor:
    """``lengths`` as a CPU int64 tensor (B,), after checking that 1 ≤ length ≤ T for each (in eager
    calls; under torch.compile/export only its type and shape are checked)."""
    if isinstance(lengths, Tensor):
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise TypeError(f"lengths must hold integers, got a tensor of dtype {lengths.dtype}")
        lengths = lengths.detach().to("cpu", torch.int64)
    else:
        try:
            values = list(lengths)
            converted = torch.as_tensor(values) if values else torch.zeros(0, dtype=torch.int64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"lengths must be a 1-D tensor or a list of ints, got {lengths!r}") from None
        if (converted.is_floating_point() or converted.is_complex() or converted.dtype == torch.bool
                or any(isinstance(v, bool) for v in values)):
            # as_tensor(..., dtype=int64) would silently truncate 2.5 to 2
            raise TypeError(f"lengths must be a 1-D tensor or a list of ints, got {lengths!r}")
        lengths = converted.to(torch.int64)
    if lengths.dim() != 1 or lengths.numel() != batch_size:
        raise ValueError(f"lengths must have shape ({batch_size},) (one length per sequence in the "
                         f"batch), got shape {tuple(lengths.shape)}")
    if torch.compiler.is_compiling():   # the values are data, which a traced graph cannot branch on
        return lengths
    if batch_size and int(lengths.min()) < 1:
        raise ValueError(f"lengths must be at least 1, got {lengths.tolist()} "
                         f"(smallest {int(lengths.min())})")
    if batch_size and int(lengths.max()) > max_length:
        raise ValueError(f"lengths must not exceed the sequence length {max_length}, got "
                         f"{lengths.tolist()} (largest {int(lengths.max())})")
    return lengths


def valid_mask(lengths: Tensor, max_length: int, device) -> Tensor:
    """(T, B) booleans: True where step t is inside sequence b."""
    steps = torch.arange(max_length).unsqueeze(1)                              # (T, 1)
    return (steps < lengths.unsqueeze(0)).to(device)                            # (T, B)


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of x (T, B, ...) within its own length; padding stays where it is.

    It is its own inverse, so it also maps a reversed run's outputs back to the original order.
    """
    T, B = x.shape[:2]
    if lengths is None:
        return x.flip(0)
    steps = torch.arange(T).unsqueeze(1)                                        # (T, 1)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)            # (T, B)
    index = index.to(x.device).view(T, B, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(0, index)
