"""The reference time loop once more, step by step, keeping what the diagnostics look at.

``rnnkit.engine.run_sequence`` stacks the states it keeps (``return_all_states``), and a stacked
copy is a leaf of nothing: no gradient of the recurrence flows through it. The diagnostics need each
step's state as the node of the autograd graph that the next step reads, so they run the cell's
``step_with_gates`` themselves, as the reference loop runs ``step`` at evaluation (no dropout,
zoneout in expectation).

Lengths are handled differently from the reference loop, with the same results up to each
sequence's end: every sequence runs all T steps, its outputs past its end are zeroed afterwards,
and its last state is read at its own end. The reference loop instead holds the state past the
end with ``torch.where``, which would put a copy between h_k and the output y_k read from it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from ..engine import valid_mask
from ..layers import Recurrent
from ..layers.inputs import SequenceBatch, read_input


@dataclass
class Unrolled:
    """One run of a single-layer, unidirectional layer over a batch."""
    outputs: Tensor                              # (T, B, O), zero past each sequence's end
    states: list[tuple[Tensor, ...]]             # T entries, each a state tuple of (B, S) graph nodes
    gates: list[dict[str, Tensor]]               # T entries, each gate (B, H); empty for gateless cells
    lengths: Tensor                              # (B,) int64, T for every sequence when none were given

    def last_state(self, index: int) -> Tensor:
        """State tensor ``index`` at each sequence's own last step, (B, S), as a function of the
        per-step nodes (so that autograd can differentiate it with respect to each of them)."""
        steps = torch.stack([s[index] for s in self.states])                    # (T, B, S)
        return steps[self.lengths - 1, torch.arange(steps.shape[1])]           # (B, S)


def check_single_layer(layer, what: str) -> None:
    """The diagnostics follow one cell over time: a one-layer, one-direction ``Recurrent``."""
    if not isinstance(layer, Recurrent):
        raise TypeError(f"{what} takes an rnnkit Recurrent layer (or rnnkit.RNN/LSTM/GRU), "
                        f"got {type(layer).__name__}")
    if layer.num_layers != 1 or layer.bidirectional:
        raise ValueError(f"{what} follows one cell over time and takes a layer with num_layers=1 and "
                         f"bidirectional=False, got num_layers={layer.num_layers}, "
                         f"bidirectional={layer.bidirectional}")


def read_batch(layer: Recurrent, x, lengths) -> SequenceBatch:
    """The input in time-major form (T, B, I), with its lengths checked."""
    if isinstance(x, PackedSequence):
        raise TypeError("pass a padded tensor and lengths= instead of a PackedSequence")
    return read_input(x, lengths, layer.input_size, layer.batch_first)


def unroll(layer: Recurrent, batch: SequenceBatch) -> Unrolled:
    """Run the layer's only cell over ``batch`` one step at a time.

    The initial state is made a leaf that requires a gradient, so that every later state is a node
    of the graph even when nothing else is trained (an echo state network's reservoir).
    """
    cell, p = layer.cells[0], layer.cell_params(0)
    x = batch.x                                                                 # (T, B, I)
    T, B = x.shape[:2]
    state = tuple(s.detach().clone().requires_grad_() for s in _initial_state(layer, B, x))
    u = cell.project_input(p, x)                                                # (T, B, G)

    outputs, states, gates = [], [], []
    for u_t in u.unbind(0):
        y, new_state, step_gates = cell.step_with_gates(p, u_t, state)
        if layer.zoneout:   # at evaluation zoneout keeps the old value in expectation
            new_state = tuple(torch.lerp(new, old, layer.zoneout) for new, old in zip(new_state, state))
            y = new_state[0]
        state = new_state
        outputs.append(y)
        states.append(state)
        gates.append(step_gates)
    outputs = torch.stack(outputs)                                              # (T, B, O)
    if batch.lengths is None:
        return Unrolled(outputs, states, gates, torch.full((B,), T, dtype=torch.int64))
    valid = valid_mask(batch.lengths, T, x.device).unsqueeze(-1)                # (T, B, 1)
    return Unrolled(outputs * valid, states, gates, batch.lengths)


def _initial_state(layer: Recurrent, batch_size: int, like: Tensor) -> tuple[Tensor, ...]:
    """Zeros, or the layer's learned initial state; each (B, S)."""
    if layer.learn_initial_state:
        return tuple(getattr(layer, f"initial_{name}")[0].expand(batch_size, -1)
                     for name in layer.state_names)
    return tuple(like.new_zeros(batch_size, size) for size in layer.state_sizes)
