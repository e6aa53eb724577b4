"""The reference time loop: any cell, one direction, with lengths, dropout masks and zoneout."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..cells.base import Params, RecurrentCell, State
from .bptt import run_compacted, run_hand_bptt
from .fused import fused_runner


@dataclass
class SequenceResult:
    """What one direction of one layer produced."""
    outputs: Tensor                      # (T, B, O), zero past each sequence's end
    final_state: State                   # each (B, S), taken at each sequence's true end
    all_states: tuple[Tensor, ...] | None = None   # each (T, B, S), zero past the end


def run_sequence(cell: RecurrentCell, p: Params, x: Tensor, state: State,
                 valid: Tensor | None = None, recurrent_mask: Tensor | None = None,
                 zoneout: float = 0.0, training: bool = False,
                 keep_states: bool = False, hand_bptt: bool = False,
                 compiled: bool = False) -> SequenceResult:
    """Run ``cell`` over x (T, B, I) from ``state`` in time order.

    ``valid`` (T, B) marks the steps inside each sequence; at other steps the state is held and the
    output is zero. ``recurrent_mask`` (B, S) is a variational dropout mask, the same at every step.
    ``zoneout`` (Krueger et al. 2017, arXiv:1606.01305): while training each state unit keeps its
    previous value with that probability at each step; at evaluation the two are mixed in expectation.
    ``hand_bptt``: when a gradient is needed, run the cell's hand-derived backward
    (``rnnkit.engine.bptt``) instead of autograd through the loop, where the cell and options allow.
    ``compiled``: run the compiled loop (``rnnkit.engine.fused``) where one covers the cell.
    """
    u = _project(cell, p, x, valid)                                             # (T, B, G)
    scan = getattr(cell, "scan", None)
    if scan is not None and zoneout == 0.0:
        scanned = scan(p, u, state, valid)
        if scanned is not None:
            outputs, final_state = scanned                                      # (T, B, O)
            if valid is not None:
                outputs = outputs * valid.unsqueeze(-1)
            return SequenceResult(outputs, final_state, (outputs,) if keep_states else None)

    plain = recurrent_mask is None and not zoneout and not keep_states
    fused = fused_runner(cell, u) if plain and compiled else None
    if fused is not None:
        outputs, final_state = fused(cell, p, u, state, valid)                  # C++ loop + hand BPTT
        return SequenceResult(outputs, final_state)
    if plain and hand_bptt and torch.is_grad_enabled() and cell.supports_hand_bptt():
        outputs, final_state = run_hand_bptt(cell, p, u, state, valid)
        return SequenceResult(outputs, final_state)
    if plain and valid is not None and not torch.is_grad_enabled():
        outputs, final_state = run_compacted(cell, p, u, state, valid)          # skips finished rows
        return SequenceResult(outputs, final_state)

    outputs, history = [], []
    valid_steps = valid.unsqueeze(-1).unbind(0) if valid is not None else None  # each (B, 1)
    for t, u_t in enumerate(u.unbind(0)):                                        # unbind: no T² backward
        y, new_state = cell.step(p, u_t, state, recurrent_mask)
        if zoneout:
            new_state = tuple(_zoneout(old, new, zoneout, training) for old, new in zip(state, new_state))
            y = new_state[0]
        if valid_steps is not None:
            keep = valid_steps[t]
            new_state = tuple(torch.where(keep, new, old) for new, old in zip(new_state, state))
            y = y * keep
        state = new_state
        outputs.append(y)
        if keep_states:
            history.append(state if valid_steps is None else tuple(s * valid_steps[t] for s in state))
    all_states = tuple(torch.stack(s) for s in zip(*history)) if keep_states else None
    return SequenceResult(torch.stack(outputs), state, all_states)


def _project(cell: RecurrentCell, p: Params, x: Tensor, valid: Tensor | None) -> Tensor:
    """The input projection of every step, computed only for the steps inside each sequence when
    some are padding (rows past an end are zero: no step reads them), so that padding costs
    neither the forward product nor the weight gradient's."""
    if valid is None:
        return cell.project_input(p, x)                                         # (T, B, G)
    T, B = valid.shape
    index = valid.reshape(-1).nonzero().squeeze(1)                              # (N,) valid rows
    if index.numel() == T * B:
        return cell.project_input(p, x)
    rows = cell.project_input(p, x.reshape(T * B, -1).index_select(0, index).unsqueeze(0))[0]   # (N, G)
    return rows.new_zeros(T * B, rows.shape[-1]).index_copy(0, index, rows).view(T, B, -1)


def _zoneout(old: Tensor, new: Tensor, rate: float, training: bool) -> Tensor:
    """d ⊙ old + (1 − d) ⊙ new with d ~ Bernoulli(rate) in training, d = rate at evaluation."""
    if not training:
        return torch.lerp(new, old, rate)
    keep_old = torch.rand_like(new) < rate
    return torch.where(keep_old, old, new)
