"""``Recurrent``: any registered cell, stacked, bidirectional, over sequences of different lengths."""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from ..cells import cell_class, create
from ..cells.base import check_choice
from ..engine import flat_weights, fused, reverse_padded, run_native, run_sequence, valid_mask
from ..engine.masks import variational_mask
from ..engine.dispatch import (BACKENDS, Call, Choice, Explanation, check_backend, choose, describe_call,
                               torch_kernel)
from ..errors import ArgumentError
from .inputs import SequenceBatch, check_dtype_and_device, read_input, read_state


class Recurrent(nn.Module):
    r"""A recurrent layer (or stack of layers) built from any cell of ``rnnkit.cells``.

    Args:
        cell: a registered cell name (``rnnkit.cells.available()``).
        input_size: I, features of each input step.
        hidden_size: H, the cell's hidden size.
        num_layers: L, stacked layers; layer l > 0 reads layer l − 1's outputs.
        bidirectional: D = 2 when True: a second cell reads each sequence backwards from its true end.
        batch_first: input and output are (B, T, ·) instead of (T, B, ·). States keep (L·D, B, S).
            ``bidirectional``, ``batch_first`` and a cell's ``bias`` must be bools.
        dropout: dropout on the outputs of every layer but the last (as torch.nn.LSTM), in [0, 1]
            (1 drops them all, as torch.nn allows).
        input_dropout: variational dropout on each layer's input: one mask per sequence, the same at
            every step (Gal & Ghahramani 2016, Keras's ``dropout``); in [0, 1).
        recurrent_dropout: variational dropout on the state entering the recurrent product
            (Keras's ``recurrent_dropout``), for cells that have one; in [0, 1).
        zoneout: probability that a state unit keeps its previous value at a step (Krueger et al.
            2017); at evaluation the expectation is used; in [0, 1).
        learn_initial_state: make the initial state a trained parameter instead of zeros.
        backend: how the layer runs over time. ``"auto"`` (default) lets the dispatcher
            (``rnnkit.engine.dispatch``) pick, per call, the fastest path that computes the cell
            exactly in that context (device, dtype and autocast, gradient, lengths, torch.compile
            tracing); ``rnnkit.engine.explain(layer, x)`` says which and why. Or name a path:
            ``"native"`` (torch's kernel), ``"fused"`` (rnnkit's C++ loops), ``"generated"`` (the
            cell's step compiled by torch.compile), ``"scan"`` / ``"parallel_scan"`` (minGRU,
            minLSTM), ``"reference"`` (the step loop in Python); one that cannot run a call says why.
        bptt: how the gradient is computed: ``"hand"`` runs the cells' hand-derived backward
            (``rnnkit.engine.bptt``, or its compiled form), ``"autograd"`` differentiates the step
            loop (or torch's kernel), ``"auto"`` (default) leaves it to the dispatcher, which takes
            the hand backward wherever the cell has it and it measured faster
            (``benchmarks/bptt_vs_autograd.py``); options that need per-step autograd (zoneout,
            recurrent dropout, layer norm, ``return_all_states``) use autograd.
        **cell_options: the cell's own options (``variant="cifg"``, ``nonlinearity="relu"``, ...).

    Call: ``output, state = layer(x, state=None, lengths=None)``

    * x: (T, B, I), (B, T, I) with ``batch_first``, unbatched (T, I), or a PackedSequence.
    * state: a tensor (L·D, B, S) for one-state cells, a tuple for the LSTM ((h, c)); None for zeros.
    * lengths: (B,) true lengths of a padded batch. Each sequence gives what it gives alone,
      outputs past its end are zero, the returned state is the one at its end.
    * output: (T, B, D·O) (O = the cell's output size), or a PackedSequence for packed input.
    * ``return_all_states=True`` adds a third result: a tuple, one tensor (T, L·D, B, S) per state
      tensor ((B, T, L·D, S) with ``batch_first``) holding every step's state, zero past the end.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, batch_first: bool = False, dropout: float = 0.0, *,
                 input_dropout: float = 0.0, recurrent_dropout: float = 0.0, zoneout: float = 0.0,
                 learn_initial_state: bool = False, backend: str = "auto", bptt: str = "auto",
                 device=None, dtype=None,
                 **cell_options) -> None:
        super().__init__()
        if isinstance(num_layers, bool) or not isinstance(num_layers, int):
            raise ArgumentError(f"num_layers must be a positive int, got {num_layers!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
        check_rate("dropout", dropout, closed=True)
        for name, rate in (("input_dropout", input_dropout), ("recurrent_dropout", recurrent_dropout),
                           ("zoneout", zoneout)):
            check_rate(name, rate, closed=False)
        for name, flag in (("bidirectional", bidirectional), ("batch_first", batch_first),
                           ("bias", cell_options.get("bias", True))):
            check_bool(name, flag)
        check_choice("backend", backend, BACKENDS)
        check_choice("bptt", bptt, ("auto", "hand", "autograd"))
        if recurrent_dropout and not cell_class(cell).takes_recurrent_dropout:
            raise ValueError(f"recurrent_dropout must be 0 for cell {cell!r}, which has no recurrent matrix "
                             f"to apply it to; got {recurrent_dropout!r}")
        if dropout and num_layers == 1:
            warnings.warn("dropout acts between stacked layers; with num_layers=1 it does nothing",
                          stacklevel=2)
        self.cell_name, self.input_size, self.hidden_size = cell, input_size, hidden_size
        self.num_layers, self.bidirectional, self.batch_first = num_layers, bool(bidirectional), batch_first
        self.num_directions = 2 if bidirectional else 1
        self.dropout, self.input_dropout = float(dropout), float(input_dropout)
        self.recurrent_dropout, self.zoneout, self.backend = float(recurrent_dropout), float(zoneout), backend
        self.bptt = bptt
        self.cell_options = dict(cell_options)

        cells = []
        layer_input = input_size
        for _ in range(num_layers):
            for _ in range(self.num_directions):
                cells.append(create(cell, layer_input, hidden_size, own_parameters=self._cells_own_parameters,
                                    device=device, dtype=dtype, **_options_of_cell(cell_options, len(cells))))
            layer_input = cells[-1].output_size * self.num_directions
        self.cells = nn.ModuleList(cells)
        check_backend(backend, cells[0])
        self.state_names = cells[0].state_names
        self.state_sizes = cells[0].state_sizes()
        self.output_size = cells[0].output_size * self.num_directions
        if learn_initial_state:
            for name, size in zip(self.state_names, self.state_sizes):
                self.register_parameter(f"initial_{name}", nn.Parameter(
                    torch.zeros(len(cells), 1, size, device=device, dtype=dtype)))
        self.learn_initial_state = bool(learn_initial_state)
        self._choices: dict[tuple, Choice] = {}            # the dispatcher's choices, by call context

    _cells_own_parameters = True

    def __getstate__(self) -> dict:
        """A pickled (or copied) layer leaves the dispatcher's choices behind: they describe calls in
        this process (rnnkit.serialization; torch.load(weights_only=True) rebuilds the rest)."""
        state = super().__getstate__()
        state.pop("_choices", None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._choices = {}

    def cell_params(self, index: int) -> dict[str, Tensor]:
        """The parameters that cell ``index`` (= layer · D + direction) computes with."""
        return self.cells[index].params()

    # ------------------------------------------------------------------------------------------
    def forward(self, x, state=None, lengths=None, *, return_all_states: bool = False):
        batch = read_input(x, lengths, self.input_size, self.batch_first)
        T, B = batch.x.shape[:2]
        if state is None:
            state = self._initial_state(B, batch.x)
        else:
            state = read_state(state, self.state_names, self.state_sizes, len(self.cells), B, batch.batched)
        check_dtype_and_device(batch.x, state, next(iter(self.cell_params(0).values()), None))
        valid = valid_mask(batch.lengths, T, batch.x.device) if batch.lengths is not None else None
        call = self._describe(batch, return_all_states)

        layer_input, finals, histories = batch.x, [], []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout:
                layer_input = F.dropout(layer_input, self.dropout, self.training)
            if self.input_dropout and self.training:
                layer_input = layer_input * variational_mask(layer_input[0], self.input_dropout)
            first = layer * self.num_directions
            layer_state = tuple(s[first:first + self.num_directions] for s in state)   # each (D, B, S)
            layer_input, final, history = self._run_layer(layer, layer_input, layer_state, batch, valid, call)
            finals.append(final)
            histories.append(history)
        final_state = tuple(torch.cat(parts) for parts in zip(*finals))           # each (L·D, B, S)
        return self._format_result(layer_input, final_state, histories, batch, return_all_states)

    def _describe(self, batch: SequenceBatch, keep_states: bool) -> Call:
        return describe_call(batch.x, self.parameters, lengths=batch.lengths is not None,
                             keep_states=keep_states, training=self.training)

    def explain(self, x, state=None, lengths=None, *, return_all_states: bool = False) -> Explanation:
        """Which path ``self(x, state, lengths)`` takes for each stacked layer, and why, in the current
        grad mode, autocast and train/eval mode; nothing is computed (``rnnkit.engine.explain``)."""
        batch = read_input(x, lengths, self.input_size, self.batch_first)
        call = self._describe(batch, return_all_states)
        return Explanation(call, tuple(self._choose(layer, call) for layer in range(self.num_layers)))

    def _choose(self, layer: int, call: Call) -> Choice:
        """The dispatcher's choice for stacked layer ``layer``, remembered for the same call context and
        layer options: a streaming call of one step pays a dictionary lookup, not the table."""
        if call.tracing:                                  # a tracer sees the table, not a mutable cache
            return choose(self, self.cells[layer * self.num_directions], call)
        key = (layer, call, self.backend, self.bptt, self.zoneout, self.recurrent_dropout, fused.available())
        choice = self._choices.get(key)
        if choice is None:
            choice = self._choices[key] = choose(self, self.cells[layer * self.num_directions], call)
        return choice

    def _run_layer(self, layer: int, x: Tensor, state: tuple[Tensor, ...], batch: SequenceBatch,
                   valid: Tensor | None, call: Call):
        """Both directions of one layer: outputs (T, B, D·O), final state parts, states history."""
        first = layer * self.num_directions
        indices = range(first, first + self.num_directions)
        choice = self._choose(layer, call)
        if choice.path == "native":
            weights = [w for i in indices for w in flat_weights(self.cells[i], self.cell_params(i))]
            has_bias = "bias_ih" in self.cell_params(first)
            outputs, final = run_native(torch_kernel(self.cells[first]), x, state, weights, has_bias,
                                        self.bidirectional, self.training, batch.lengths)
            if call.autocast is not None:                  # torch's GRU kernel is not on autocast's list
                outputs, final = outputs.to(call.autocast), tuple(s.to(call.autocast) for s in final)
            return outputs, final, None

        keep_states = call.keep_states
        outputs, finals, histories = [], [], []
        for direction, index in enumerate(indices):
            cell = self.cells[index]
            reverse = direction == 1
            mask = None
            if self.recurrent_dropout and self.training:
                mask = variational_mask(state[0][direction], self.recurrent_dropout)
            result = run_sequence(cell, self.cell_params(index),
                                  reverse_padded(x, batch.lengths) if reverse else x,
                                  tuple(s[direction] for s in state), valid, mask, self.zoneout,
                                  self.training, keep_states, path=choice.path, hand_bptt=choice.hand_bptt,
                                  autocast=call.autocast)
            outputs.append(reverse_padded(result.outputs, batch.lengths) if reverse else result.outputs)
            finals.append(result.final_state)
            if keep_states:
                histories.append(tuple(reverse_padded(h, batch.lengths) if reverse else h
                                       for h in result.all_states))
        final = tuple(torch.stack(parts) for parts in zip(*finals))               # each (D, B, S)
        history = tuple(torch.stack(parts, 1) for parts in zip(*histories)) if keep_states else None
        return torch.cat(outputs, dim=-1), final, history                          # (T, B, D·O)

    def _initial_state(self, batch_size: int, like: Tensor) -> tuple[Tensor, ...]:
        if self.learn_initial_state:
            return tuple(getattr(self, f"initial_{name}").expand(-1, batch_size, -1)
                         for name in self.state_names)
        return tuple(like.new_zeros(len(self.cells), batch_size, size) for size in self.state_sizes)

    def _format_result(self, output: Tensor, state: tuple[Tensor, ...], histories, batch: SequenceBatch,
                       return_all_states: bool):
        if batch.packed is not None:
            packed = batch.packed
            lengths = torch.as_tensor(_packed_lengths(packed))
            sorted_output = output.index_select(1, packed.sorted_indices.to(output.device)) \
                if packed.sorted_indices is not None else output
            sorted_lengths = lengths[packed.sorted_indices.cpu()] if packed.sorted_indices is not None else lengths
            data = pack_padded_sequence(sorted_output, sorted_lengths, enforce_sorted=True).data
            output = PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
        elif not batch.batched:
            output, state = output.squeeze(1), tuple(s.squeeze(1) for s in state)
        elif self.batch_first:
            output = output.transpose(0, 1)
        state_out = state[0] if len(state) == 1 else state
        if not return_all_states:
            return output, state_out
        all_states = tuple(torch.cat(parts, dim=1) for parts in zip(*histories))  # each (T, L·D, B, S)
        if not batch.batched:
            all_states = tuple(s.squeeze(2) for s in all_states)
        elif self.batch_first:
            all_states = tuple(s.permute(2, 0, 1, 3) for s in all_states)       # (B, T, L·D, S)
        return output, state_out, all_states

    def extra_repr(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self.cell_options.items())
        return (f"{self.cell_name!r}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}, batch_first={self.batch_first}{options}")


def check_bool(name: str, value) -> None:
    """A flag must be a bool, as torch.nn checks ``bias`` and ``batch_first``: 0, 1 or "False" are
    refused (``bool("False")`` is True)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (True or False), got {type(value).__name__} ({value!r})")


def check_rate(name: str, value, *, closed: bool) -> None:
    """A probability: a number (not a bool) in [0, 1] when ``closed``, else in [0, 1)."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not (0 <= value <= 1 if closed else 0 <= value < 1)):
        raise ValueError(f"{name} must be a number in [0, 1{']' if closed else ')'}, got {value!r}")


def _packed_lengths(packed: PackedSequence) -> list[int]:
    """Each sequence's length, in the original batch order, from batch_sizes."""
    batch_sizes = packed.batch_sizes.tolist()
    lengths_sorted = [sum(1 for size in batch_sizes if size > b) for b in range(batch_sizes[0])]
    if packed.unsorted_indices is None:
        return lengths_sorted
    return [lengths_sorted[i] for i in packed.unsorted_indices.tolist()]


def _options_of_cell(cell_options: dict, index: int) -> dict:
    """The options of the ``index``-th cell of a stack: a ``seed`` (the reservoir seed of fixed random
    cells such as the ESN) is offset by the cell's index, so that the layers and directions of one
    layer get different reservoirs that are still reproducible from one number."""
    if cell_options.get("seed") is None:
        return cell_options
    return {**cell_options, "seed": cell_options["seed"] + index}
