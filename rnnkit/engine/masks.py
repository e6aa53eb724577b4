"""The random masks of the dropout variants that act inside the recurrence, drawn in one place.

* Variational (recurrent, input) dropout, Gal & Ghahramani 2016 (arXiv:1512.05287): one inverted-
  dropout mask per sequence, the same at every step.
* Zoneout, Krueger et al. 2017 (arXiv:1606.01305): s_t = d_t ⊙ s_{t−1} + (1 − d_t) ⊙ s̃_t, with
  d_t ~ Bernoulli(rate) per unit and step in training and d_t = rate at evaluation.

Every path draws zoneout's d_t in the reference loop's order (step by step, state tensor by state
tensor), so that one seed gives every path the same masks and the paths can be compared exactly.
"""
from __future__ import annotations

import torch
from torch import Tensor

State = tuple[Tensor, ...]


def variational_mask(like: Tensor, rate: float) -> Tensor:
    """Inverted-dropout mask shaped like one step (B, F), reused at every step."""
    return torch.bernoulli(torch.full_like(like, 1 - rate)) / (1 - rate)


def zoneout(old: Tensor, new: Tensor, rate: float, training: bool) -> Tensor:
    """One step of zoneout for one state tensor (the reference loop's form, drawing as it goes)."""
    if not training:
        return torch.lerp(new, old, rate)
    keep_old = torch.rand_like(new) < rate
    return torch.where(keep_old, old, new)


def after_step(state: State, new_state: State, y: Tensor, rate: float, training: bool,
               keep_old: State | None = None, valid: Tensor | None = None) -> tuple[Tensor, State]:
    """What a loop does after the cell's step, the same on every path that runs the step: zoneout
    (``keep_old``: this step's draws, each (B, S) bool, drawn by ``draw_zoneout_masks``; drawn here
    when None) with the output the zoned first state, then the lengths mask ``valid`` (B, 1): past a
    sequence's end the state is held and the output is zero. Returns (y, new_state)."""
    if rate:
        if training and keep_old is not None:
            new_state = tuple(torch.where(d, old, s) for d, old, s in zip(keep_old, state, new_state))
        else:
            new_state = tuple(zoneout(old, s, rate, training) for old, s in zip(state, new_state))
        y = new_state[0]
    if valid is not None:
        new_state = tuple(torch.where(valid, s, old) for s, old in zip(new_state, state))
        y = y * valid
    return y, tuple(new_state)


def draw_zoneout_masks(state: State, T: int, rate: float) -> tuple[Tensor, ...]:
    """Zoneout's keep-old indicators for T steps of training, one (T, B, S) float 0/1 tensor per state
    tensor, drawn from the default generator in the order ``zoneout`` draws them in the reference
    loop (per step t, per state tensor in state order, ``torch.rand_like(s) < rate``).

    Torch's CPU ``rand`` fills a tensor from the generator element by element, so one draw of
    (T, Σ B·S) is those T·len(state) draws laid end to end; each state's mask is a view of it."""
    dtypes = {s.dtype for s in state}
    if len(dtypes) > 1 or state[0].device.type != "cpu":       # not one draw: the reference's own loop
        draws = [[torch.rand_like(s) < rate for s in state] for _ in range(T)]
        return tuple(torch.stack(per_state).to(s.dtype) for per_state, s in zip(zip(*draws), state))
    sizes = [s.numel() for s in state]                          # B·S of each state
    keep = (torch.rand(T, sum(sizes), dtype=state[0].dtype) < rate).to(state[0].dtype)  # (T, Σ B·S)
    return tuple(part.view(T, *s.shape) for part, s in zip(keep.split(sizes, dim=1), state))  # each (T, B, S)
