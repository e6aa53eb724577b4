"""Check a cell of your own against everything ``rnnkit.Recurrent`` relies on: ``check_cell``.

>>> from rnnkit.testing import check_cell
>>> report = check_cell(MyCell, input_size=3, hidden_size=5, my_option=2)   # or a registered name
>>> print(report)

Each check runs ``rnnkit.Recurrent`` built from the cell in float64 (parameters moved away from their
initial values, so that zero biases or identity matrices are not special) and compares it with an
independent computation; the first difference raises ``AssertionError`` naming the check, what was
compared, where it differs, and the usual cause:

1. shapes and dtypes: one step returns ``(y_t, new_state)`` as declared; a stacked bidirectional
   layer gives outputs (T, B, D·O) and states (L·D, B, S) in float32 and float64;
2. state carry: a sequence run in two parts, the state carried from the first, equals one run;
3. padding: a padded batch with lengths (garbage past each end) equals each sequence run alone,
   outputs past the end are zero and get no gradient, the final state is the one at the true end;
4. stacking and directions: two bidirectional layers equal single-layer runs composed by hand
   (layer 1 reads layer 0's outputs, the backward direction reads the sequence reversed);
5. gradcheck: autograd's gradient through a small layer with lengths equals finite differences
   (``torch.autograd.gradcheck``, float64), and every trainable parameter has an influence;
6. fast paths: ``bptt="hand"`` where the cell has a hand-derived backward, and ``backend="auto"``
   (the dispatcher's choice, ``rnnkit.engine.explain``: for a cell of one's own, where a gradient is
   needed, its step compiled by torch.compile, which takes a while the first time), equal the
   reference loop differentiated by autograd (``backend="reference", bptt="autograd"``) in
   outputs and gradients, for a bidirectional layer with lengths.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor
from torch.autograd.gradcheck import GradcheckError
from torch.func import functional_call

from .cells.contract import CellContractError, check_step_result
from .cells.registry import CellSpec, create, resolve
from .layers.recurrent import Recurrent

DTYPE = torch.float64
T, B = 5, 3                             # steps and sequences of the checks' batches
CLOSE = dict(atol=1e-10, rtol=1e-8)     # float64, the same arithmetic in another order
FAST = dict(atol=1e-8, rtol=1e-6)       # float64, other kernels (torch's, compiled, hand-derived)


@dataclass(frozen=True)
class CellReport:
    """What ``check_cell`` checked (every check passed)."""
    cell: str
    input_size: int
    hidden_size: int
    options: dict
    checks: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self.options.items())
        lines = [f"{self.cell} (input_size={self.input_size}, hidden_size={self.hidden_size}{options}): "
                 f"{len(self.checks)} checks passed"]
        lines += [f"  ok  {name}" for name in self.checks] + [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def check_cell(cell: CellSpec, input_size: int = 3, hidden_size: int = 5, *, device=None,
               **options) -> CellReport:
    """Run the checks of this module's docstring on ``cell`` (a registered name, a
    ``"package.module:ClassName"``, or a ``RecurrentCell`` subclass) built with ``options``; raise
    ``AssertionError`` on the first failure. ``device``: where to run (default: the CPU). The
    caller's random number generators are left as they were."""
    label = cell if isinstance(cell, str) else f"{cell.__module__}.{cell.__qualname__}"
    subject = _Subject(cell, input_size, hidden_size, options, torch.device(device or "cpu"))
    notes: list[str] = []
    with torch.random.fork_rng(devices=[]):
        try:
            resolve(cell)
            create(cell, input_size, hidden_size, dtype=DTYPE, **options)
        except CellContractError as error:
            raise AssertionError(f"check_cell({label}): {error}") from error
        for name, check in CHECKS:
            torch.manual_seed(0)
            try:
                check(subject, notes)
            except (AssertionError, CellContractError) as error:
                raise AssertionError(f"check_cell({label}), {name}: {error}") from None
            except Exception as error:                     # noqa: BLE001 - the cell's own failure
                raise AssertionError(f"check_cell({label}), {name}: the layer raised "
                                     f"{type(error).__name__}: {error}") from error
    return CellReport(label, input_size, hidden_size, dict(options), tuple(name for name, _ in CHECKS),
                      tuple(notes))


# ----- what the checks build --------------------------------------------------------------------------
@dataclass
class _Subject:
    cell: CellSpec
    input_size: int
    hidden_size: int
    options: dict
    device: torch.device

    def layer(self, num_layers: int, bidirectional: bool, dtype=DTYPE, input_size: int | None = None,
              backend: str = "reference", bptt: str = "autograd") -> Recurrent:
        """A layer on the reference loop, parameters moved away from their initial values."""
        layer = Recurrent(self.cell, input_size or self.input_size, self.hidden_size, num_layers, bidirectional,
                          backend=backend, bptt=bptt, device=self.device, dtype=dtype, **self.options).eval()
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(0.2 * torch.randn_like(p))
        return layer

    def twin(self, layer: Recurrent, **changes) -> Recurrent:
        """The same weights in a layer built with other ``backend``/``bptt``/``input_size``."""
        other = self.layer(layer.num_layers, layer.bidirectional, **changes)
        other.load_state_dict(layer.state_dict())
        return other

    def randn(self, *shape: int, dtype=DTYPE) -> Tensor:
        return torch.randn(*shape, dtype=dtype).to(self.device)

    def state(self, layer: Recurrent, batch: int) -> tuple[Tensor, ...]:
        """A random initial state, one tensor (L·D, B, S) per state tensor."""
        return tuple(0.5 * self.randn(len(layer.cells), batch, size) for size in layer.state_sizes)

    def padded(self, lengths: Tensor) -> Tensor:
        """x (T, B, I) with large garbage past each sequence's end (it must never leak in)."""
        shape = (T, len(lengths), self.input_size)
        x, garbage = self.randn(*shape), 50 * self.randn(*shape)
        past_end = torch.arange(T, device=self.device).unsqueeze(1) >= lengths.to(self.device)   # (T, B)
        return torch.where(past_end.unsqueeze(-1), garbage, x)


def _tuple(state) -> tuple[Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def _close(actual: Tensor, expected: Tensor, what: str, hint: str, tolerance: dict = CLOSE) -> None:
    """Raise AssertionError naming ``what``, the largest difference and where, and ``hint``."""
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    expected = expected.to(actual.dtype)
    if torch.allclose(actual, expected, equal_nan=True, **tolerance):
        return
    difference = (actual - expected).abs().nan_to_num(float("inf"))
    where = tuple(int(i) for i in torch.unravel_index(difference.argmax(), difference.shape))
    raise AssertionError(f"{what} differ: largest difference {difference.max().item():.3g} at index {where} "
                         f"({actual[where].item():.6g} vs {expected[where].item():.6g}). {hint}")


def _gradients(outputs: tuple[Tensor, ...], inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Gradients of a fixed random weighting of ``outputs`` (zeros for an input without influence)."""
    generator = torch.Generator().manual_seed(1)
    loss = sum((o * torch.randn(o.shape, generator=generator, dtype=o.dtype).to(o.device)).sum()
               for o in outputs)
    return torch.autograd.grad(loss, inputs, allow_unused=True, materialize_grads=True)


# ----- the checks -------------------------------------------------------------------------------------
def _shapes_and_dtypes(s: _Subject, notes: list[str]) -> None:
    for dtype in (torch.float32, DTYPE):
        layer = s.layer(2, True, dtype=dtype)
        cell, x = layer.cells[0], s.randn(T, B, s.input_size, dtype=dtype)
        p = cell.params()
        u = cell.project_input(p, x)
        if not isinstance(u, Tensor) or tuple(u.shape[:2]) != (T, B):
            got = tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__
            raise AssertionError(f"project_input(p, x) for x {tuple(x.shape)} returned {got}, expected (T, B, G)")
        zeros = tuple(x.new_zeros(B, size) for size in cell.state_sizes())
        try:
            check_step_result(cell, cell.step(p, u[0], zeros, None), B, dtype)
        except CellContractError as error:
            raise AssertionError(str(error)) from None
        out, state = layer(x)
        L_D, O = len(layer.cells), cell.output_size
        if out.shape != (T, B, 2 * O) or out.dtype != dtype:
            raise AssertionError(f"a 2-layer bidirectional layer's output is {tuple(out.shape)} {out.dtype}, "
                                 f"expected (T, B, 2·output_size) = {(T, B, 2 * O)} {dtype}")
        state = _tuple(state)
        expected = [(L_D, B, size) for size in layer.state_sizes]
        got = [tuple(t.shape) for t in state]
        if got != expected or any(t.dtype != dtype for t in state):
            raise AssertionError(f"the final state is {got} {[t.dtype for t in state]}, expected one (L·D, B, S) "
                                 f"tensor per state_names {tuple(cell.state_names)}: {expected} in {dtype}")


def _state_carry(s: _Subject, notes: list[str]) -> None:
    layer, k = s.layer(2, False), 2
    x, state = s.randn(T, B, s.input_size), s.state(layer, B)
    out, final = layer(x, state)
    first, middle = layer(x[:k], state)
    second, final_2 = layer(x[k:], middle)
    hint = ("The step must depend only on u_t and the state it is given: nothing kept on the module "
            "between calls, nothing that depends on the position in the sequence.")
    _close(torch.cat([first, second]), out, f"outputs of x[:{k}] then x[{k}:] (state carried) and of x", hint)
    for name, f, f_2 in zip(layer.state_names, _tuple(final), _tuple(final_2)):
        _close(f_2, f, f"final state {name!r} of the two parts and of one run", hint)


def _padding(s: _Subject, notes: list[str]) -> None:
    layer = s.layer(2, True)
    lengths = torch.tensor([T, 1, 3])
    x = s.padded(lengths).requires_grad_()
    state = s.state(layer, B)
    hint = ("Each sequence of a batch must be computed on its own: nothing in project_input or step may "
            "mix the rows of a batch (a mean over the batch) or the steps of a sequence (a mean over time).")
    for mode, grad in (("with autograd", True), ("without gradient", False)):
        with torch.set_grad_enabled(grad):
            out, final = layer(x, state, lengths)
        final = _tuple(final)
        for b, n in enumerate(lengths.tolist()):
            if not torch.all(out[n:, b] == 0):
                raise AssertionError(f"{mode}: outputs past the end of sequence {b} (length {n}) are not zero")
            with torch.no_grad():
                alone, alone_final = layer(x[:n, b:b + 1], tuple(t[:, b:b + 1] for t in state))
            _close(out[:n, b:b + 1], alone, f"{mode}: outputs of sequence {b} (length {n}) in the padded batch "
                                            "and run alone", hint)
            for name, f, f_alone in zip(layer.state_names, final, _tuple(alone_final)):
                _close(f[:, b:b + 1], f_alone, f"{mode}: final state {name!r} of sequence {b} (length {n}) in "
                                               "the padded batch and run alone", hint)
        if grad:
            (grad_x,) = _gradients((out, *final), (x,))
            past_end = torch.arange(T).unsqueeze(1) >= lengths                              # (T, B)
            if not torch.all(grad_x[past_end.to(s.device)] == 0):
                raise AssertionError(f"the padding past the sequences' ends gets a gradient. {hint}")


def _stacking_and_directions(s: _Subject, notes: list[str]) -> None:
    layer = s.layer(2, True)
    lengths = torch.tensor([T, 2, 4])
    x, state = s.padded(lengths), s.state(layer, B)
    with torch.no_grad():
        out, final = layer(x, state, lengths)
        singles = []
        for index, cell in enumerate(layer.cells):
            single = s.layer(1, False, input_size=cell.input_size)
            single.cells[0].load_state_dict(cell.state_dict())
            singles.append(single)
        hint = ("Every tensor the cell computes with must be named by parameter_shapes() (trained, or in "
                "fixed_parameters), so that it is saved, loaded and copied with the layer; a tensor kept "
                "as a plain attribute is not.")
        for b, n in enumerate(lengths.tolist()):
            layer_input = x[:n, b:b + 1]                                                # (n, 1, I)
            for level in range(layer.num_layers):
                parts = []
                for direction in range(2):
                    index = 2 * level + direction
                    start = tuple(t[index:index + 1, b:b + 1] for t in state)
                    seq = layer_input if direction == 0 else layer_input.flip(0)
                    seq_out, seq_final = singles[index](seq, start)
                    parts.append(seq_out if direction == 0 else seq_out.flip(0))
                    for name, f, f_single in zip(layer.state_names, _tuple(final), _tuple(seq_final)):
                        _close(f[index:index + 1, b:b + 1], f_single,
                               f"final state {name!r} of layer {level}, direction {direction}, sequence {b} in "
                               "the stack and of single-layer runs composed by hand", hint)
                layer_input = torch.cat(parts, dim=-1)                                  # (n, 1, 2·O)
            _close(out[:n, b:b + 1], layer_input, f"outputs of sequence {b} from 2 bidirectional layers and "
                                                  "from single-layer runs composed by hand", hint)


def _gradcheck(s: _Subject, notes: list[str]) -> None:
    layer, lengths = s.layer(1, False), torch.tensor([4, 2])
    x = s.randn(4, 2, s.input_size).requires_grad_()
    state = tuple(t.requires_grad_() for t in s.state(layer, 2))
    names = [name for name, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for _, p in layer.named_parameters())
    if not names:
        notes.append("no trainable parameters: gradcheck over the input and the initial state only")

    def run(x, *tensors):
        start, weights = tensors[:len(state)], dict(zip(names, tensors[len(state):]))
        out, final = functional_call(layer, weights, (x, start, lengths))
        return (out, *_tuple(final))

    inputs = ["the input x"] + [f"the initial state {n!r}" for n in layer.state_names] + names
    try:
        torch.autograd.gradcheck(run, (x, *state, *params), eps=1e-6, atol=1e-6, rtol=1e-4)
    except GradcheckError as error:
        outputs = ["the outputs"] + [f"the final state {n!r}" for n in layer.state_names]
        found = re.search(r"output (\d+) with respect to input (\d+)", str(error))
        what = (f"of {outputs[int(found[1])]} with respect to {inputs[int(found[2])]}" if found
                else f"({str(error).splitlines()[0]})")
        raise AssertionError(f"autograd's gradient {what} (float64, 1 layer with lengths) differs from finite "
                             "differences. A custom torch.autograd.Function's backward, or an operation "
                             "differentiated wrongly, is the usual cause.") from None
    grads = _gradients(run(x, *state, *params), (x, *state, *params))
    for name, grad in zip(inputs, grads):
        if not torch.any(grad != 0):
            raise AssertionError(f"{name} has no influence on the outputs or the final state (its gradient is "
                                 "zero); a parameter that step() never uses should not be in parameter_shapes()")


def _fast_paths(s: _Subject, notes: list[str]) -> None:
    reference = s.layer(1, True)            # a path runs one layer at a time; stacking is checked above
    lengths = torch.tensor([T, 2, 4])
    compared = []
    if reference.cells[0].supports_hand_bptt():
        compared.append(("the hand-derived backward (backend='reference', bptt='hand')",
                         dict(backend="reference", bptt="hand"),
                         "The cell's step_saving / step_backward / recurrent_grads disagree with autograd "
                         "through its step."))
    else:
        notes.append("no hand-derived backward (supports_hand_bptt() is False): bptt='hand' not compared")
    compared.append(("backend='auto'", dict(backend="auto", bptt="auto"), "The path the dispatcher chose and "
                     "the cell's step disagree."))
    x = s.padded(lengths).requires_grad_()
    state = tuple(t.requires_grad_() for t in s.state(reference, B))
    expected = _outputs_and_gradients(reference, x, state, lengths)
    for what, changes, hint in compared:
        layer = s.twin(reference, **changes)
        explain = getattr(layer, "explain", None)         # rnnkit.engine.explain: which path, and why
        if explain is not None and changes["backend"] == "auto":
            hint += f" Paths taken: {'; '.join(str(explain(x, state, lengths)).splitlines()[1:])}."
        for (name, got), (_, want) in zip(_outputs_and_gradients(layer, x, state, lengths), expected):
            _close(got, want, f"{name} of {what} and of the reference loop", hint, FAST)


def _outputs_and_gradients(layer: Recurrent, x: Tensor, state: tuple[Tensor, ...], lengths: Tensor):
    """[(what, tensor)]: outputs and final state with and without autograd, and the gradients of a
    fixed weighting of them with respect to x, the initial state and every parameter."""
    with torch.no_grad():
        out_no_grad, _ = layer(x, state, lengths)
    out, final = layer(x, state, lengths)
    final = _tuple(final)
    names, params = zip(*layer.named_parameters()) if any(True for _ in layer.parameters()) else ((), ())
    grads = _gradients((out, *final), (x, *state, *params))
    results = [("outputs", out), ("outputs without gradient", out_no_grad)]
    results += [(f"final state {n!r}", f) for n, f in zip(layer.state_names, final)]
    results += [(f"gradient of {n}", g) for n, g in zip(["x"] + [f"initial {s}" for s in layer.state_names]
                                                         + list(names), grads)]
    return results


CHECKS: tuple[tuple[str, Callable[[_Subject, list], None]], ...] = (
    ("shapes and dtypes", _shapes_and_dtypes),
    ("state carry", _state_carry),
    ("padding", _padding),
    ("stacking and directions", _stacking_and_directions),
    ("gradcheck", _gradcheck),
    ("fast paths", _fast_paths),
)
