"""One direction of one layer over time, by the path the dispatcher chose; and the reference loop."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..cells.base import Params, RecurrentCell, State
from ..cells.lstm import LSTMCell
from . import fused
from .bptt import run_compacted, run_hand_bptt
from .higher_order import twice_differentiable
from .masks import after_step
from .dispatch import SCANNED_CELLS
from .scan import gated_scan, parallel_scan


@dataclass
class SequenceResult:
    """What one direction of one layer produced."""
    outputs: Tensor                      # (T, B, O), zero past each sequence's end
    final_state: State                   # each (B, S), taken at each sequence's true end
    all_states: tuple[Tensor, ...] | None = None   # each (T, B, S), zero past the end


def run_sequence(cell: RecurrentCell, p: Params, x: Tensor, state: State,
                 valid: Tensor | None = None, recurrent_mask: Tensor | None = None,
                 zoneout: float = 0.0, training: bool = False,
                 keep_states: bool = False, path: str = "reference", hand_bptt: bool = False,
                 autocast: torch.dtype | None = None) -> SequenceResult:
    """Run ``cell`` over x (T, B, I) from ``state`` in time order, by ``path`` (the dispatcher's
    choice, ``rnnkit.engine.dispatch``: "fused", "generated", "scan", "parallel_scan", "reference").

    ``valid`` (T, B) marks the steps inside each sequence; at other steps the state is held and the
    output is zero. ``recurrent_mask`` (B, S) is a variational dropout mask, the same at every step.
    ``zoneout`` (Krueger et al. 2017, arXiv:1606.01305): while training each state unit keeps its
    previous value with that probability at each step; at evaluation the two are mixed in expectation.
    ``hand_bptt``: on the reference path, differentiate by the cell's hand-derived backward
    (``rnnkit.engine.bptt``) instead of autograd through the loop.
    ``autocast``: autocast's lower-precision dtype when it is on. The input projection — one large
    product over all steps — then runs in it; the recurrence (state, per-step product, gates) runs
    in float32, because its rounding errors would compound over the steps; outputs and final state
    come back in the autocast dtype, as torch.nn.LSTM's do.
    """
    run = _Runner(cell, valid, zoneout, training, keep_states, autocast, len(state), tuple(p))
    inputs = (x, recurrent_mask, *state, *p.values())
    if path == "reference" and not hand_bptt:
        return run.result(run.flat(path, hand_bptt)(*inputs))             # autograd all the way
    # A hand-derived or compiled backward (and the parallel scan, whose logcumsumexp has a nan second
    # derivative where an output's gradient is 0): differentiable twice through the reference loop
    return run.result(twice_differentiable(run.flat(path, hand_bptt), run.flat("reference", False), inputs,
                                           random=bool(zoneout and training), autocast=autocast,
                                           retainable=path != "generated"))


class _Runner:
    """``run_sequence`` as a function of a flat tuple of tensors (x, recurrent_mask, *state, *params),
    returning one (outputs, *final_state[, *all_states]), as ``twice_differentiable`` takes it."""

    def __init__(self, cell, valid, zoneout, training, keep_states, autocast, n_state, names) -> None:
        self.cell, self.valid, self.zoneout, self.training = cell, valid, zoneout, training
        self.keep_states, self.autocast, self.n_state, self.names = keep_states, autocast, n_state, names

    def flat(self, path: str, hand_bptt: bool):
        def run(x, recurrent_mask, *tensors):
            state, p = tensors[:self.n_state], dict(zip(self.names, tensors[self.n_state:]))
            result = self._run(p, x, state, recurrent_mask, path, hand_bptt)
            return (result.outputs, *result.final_state, *(result.all_states or ()))
        return run

    def result(self, flat: tuple[Tensor, ...]) -> SequenceResult:
        n = self.n_state
        return SequenceResult(flat[0], tuple(flat[1:1 + n]), tuple(flat[1 + n:]) if self.keep_states else None)

    def _run(self, p, x, state, recurrent_mask, path, hand_bptt) -> SequenceResult:
        cell, valid = self.cell, self.valid
        u = _project(cell, p, x, valid)                                         # (T, B, G)
        if self.autocast is None:
            return _recur(cell, p, u, state, valid, recurrent_mask, self.zoneout, self.training,
                          self.keep_states, path, hand_bptt)
        with torch.autocast(u.device.type, enabled=False):
            result = _recur(cell, p, u.float(), tuple(s.float() for s in state), valid, recurrent_mask,
                            self.zoneout, self.training, self.keep_states, path, hand_bptt)
        lower = (lambda t: t.to(self.autocast))
        return SequenceResult(lower(result.outputs), tuple(map(lower, result.final_state)),
                              tuple(map(lower, result.all_states)) if result.all_states is not None else None)


def _recur(cell, p, u, state, valid, recurrent_mask, zoneout, training, keep_states, path, hand_bptt
           ) -> SequenceResult:
    """The recurrence from the projected input u (T, B, G), by ``path``."""
    if path in ("scan", "parallel_scan") or (path == "fused" and isinstance(cell, SCANNED_CELLS)):
        run = {"scan": gated_scan, "parallel_scan": parallel_scan, "fused": fused.minimal_scan}[path]
        outputs = run(cell, u, state[0], valid)                                 # (T, B, H)
        final_state = (outputs[-1],)
        if valid is not None:
            outputs = outputs * valid.unsqueeze(-1)
        return SequenceResult(outputs, final_state, (outputs,) if keep_states else None)
    if path == "fused":
        run = fused.run_fused_lstm if isinstance(cell, LSTMCell) else fused.run_fused_gru
        outputs, final_state = run(cell, p, u, state, valid, recurrent_mask, zoneout, training)  # C++ + hand BPTT
        return SequenceResult(outputs, final_state)
    if path == "generated":
        from .generated import run_generated          # on first use: it brings torch.compile's machinery
        outputs, final_state, all_states = run_generated(cell, p, u, state, valid, recurrent_mask, zoneout,
                                                         training, keep_states)
        return SequenceResult(outputs, final_state, all_states)
    plain = recurrent_mask is None and not zoneout and not keep_states
    if plain and hand_bptt:
        outputs, final_state = run_hand_bptt(cell, p, u, state, valid)
        return SequenceResult(outputs, final_state)
    if plain and valid is not None and not torch.is_grad_enabled():
        outputs, final_state = run_compacted(cell, p, u, state, valid)          # skips finished rows
        return SequenceResult(outputs, final_state)
    return reference_loop(cell, p, u, state, valid, recurrent_mask, zoneout, training, keep_states)


def reference_loop(cell: RecurrentCell, p: Params, u: Tensor, state: State, valid: Tensor | None = None,
                   recurrent_mask: Tensor | None = None, zoneout: float = 0.0, training: bool = False,
                   keep_states: bool = False) -> SequenceResult:
    """The recurrence as the equations read: ``cell.step`` at every step, differentiated by autograd."""
    outputs, history = [], []
    valid_steps = valid.unsqueeze(-1).unbind(0) if valid is not None else None  # each (B, 1)
    for t, u_t in enumerate(u.unbind(0)):                                        # unbind: no T² backward
        y, new_state = cell.step(p, u_t, state, recurrent_mask)
        y, state = after_step(state, new_state, y, zoneout, training,
                              valid=valid_steps[t] if valid_steps is not None else None)
        outputs.append(y)
        if keep_states:
            history.append(state if valid_steps is None else tuple(s * valid_steps[t] for s in state))
    all_states = tuple(torch.stack(s) for s in zip(*history)) if keep_states else None
    return SequenceResult(torch.stack(outputs), state, all_states)


def _project(cell: RecurrentCell, p: Params, x: Tensor, valid: Tensor | None) -> Tensor:
    """The input projection of every step, computed only for the steps inside each sequence when
    some are padding (rows past an end are zero: no step reads them), so that padding costs
    neither the forward product nor the weight gradient's. Under torch.compile/export every row is
    projected: how many rows are inside is data, and a graph's shapes cannot depend on it."""
    if valid is None or torch.compiler.is_compiling():
        return cell.project_input(p, x)                                         # (T, B, G)
    T, B = valid.shape
    index = valid.reshape(-1).nonzero().squeeze(1)                              # (N,) valid rows
    if index.numel() == T * B:
        return cell.project_input(p, x)
    rows = cell.project_input(p, x.reshape(T * B, -1).index_select(0, index).unsqueeze(0))[0]   # (N, G)
    return rows.new_zeros(T * B, rows.shape[-1]).index_copy(0, index, rows).view(T, B, -1)
