"""What is timed: rnnkit layers built from cell specs, torch.nn baselines, their inputs, and the
functions of no arguments that the timer calls (a training step, a streaming loop).

Weights and inputs are float32 and sequence-first: x is (T, B, I); a spec ending in ``+bf16`` runs its
forward pass under ``torch.autocast("cpu", dtype=torch.bfloat16)``. Weights and inputs come from their
own seeded generators, so every subject of a run sees the same input.
"""
from __future__ import annotations

import inspect
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from ..cells import cell_class
from ..diagnose.experiments import LAYER_OPTIONS, parse_cell_spec, set_spectral_radius
from ..layers import Recurrent

BASELINES = {"nn.LSTM": nn.LSTM, "nn.GRU": nn.GRU}
PRECISIONS = {"bf16": torch.bfloat16}       # spec suffix -> autocast dtype (none: float32)


@dataclass(frozen=True)
class CellSpec:
    """A cell named as on the command line: ``NAME[:OPTION]...[@RADIUS][+bf16]`` (``lstm:cifg``,
    ``lstm:zoneout=0.1``, ``gru:standard+bf16``). ``options`` holds the cell's options and the layer's
    (``LAYER_OPTIONS``) as ``parse_cell_spec`` reads them; ``autocast`` is the dtype of the ``+bf16``
    suffix (None: float32)."""
    text: str
    name: str
    options: dict = field(hash=False)
    radius: float | None = None
    autocast: torch.dtype | None = None

    @classmethod
    def parse(cls, text: str) -> "CellSpec":
        body, autocast = _split_precision(text)
        name, options, radius = parse_cell_spec(body)        # ValueError naming the bad part
        return cls(text.strip(), name, options, radius, autocast)

    @property
    def layer_options(self) -> dict:
        """The options in force that ``Recurrent`` applies around the cell (zoneout, dropout)."""
        return {k: v for k, v in self.options.items() if k in LAYER_OPTIONS and v}

    @property
    def user_defined(self) -> bool:
        """A cell of one's own (``package.module:ClassName``), not one of ``rnnkit.cells``."""
        return not cell_class(self.name).__module__.startswith("rnnkit.cells.")

    @property
    def training_only(self) -> bool:
        """Rows about a training step: layer options (off or in expectation at inference) or bf16."""
        return bool(self.layer_options) or self.autocast is not None

    def configuration(self, *, drop_layer_options: bool = False, float32: bool = False) -> tuple:
        """What the layer computes, with every cell option at its value or default, so that
        ``lstm`` and ``lstm:standard`` compare equal; optionally without the layer options (and
        with the cell's layer norm off) or at float32."""
        cls = cell_class(self.name)
        signature = inspect.signature(cls.__init__).parameters
        cell = {k: p.default for k, p in signature.items() if p.default is not inspect.Parameter.empty}
        cell.update((k, v) for k, v in self.options.items() if k not in LAYER_OPTIONS)
        layer = self.layer_options
        if drop_layer_options:
            layer = {}
            if "layer_norm" in cell:
                cell["layer_norm"] = False
        return (self.name, tuple(sorted(cell.items())), tuple(sorted(layer.items())), self.radius,
                None if float32 else self.autocast)

    def precision(self):
        """The context the forward pass runs in: bfloat16 autocast for ``+bf16``, else none."""
        return torch.autocast("cpu", dtype=self.autocast) if self.autocast is not None else nullcontext()

    def build(self, input_size: int, hidden_size: int, *, seed: int = 0) -> Recurrent:
        """``Recurrent(name, I, H, **options)`` with the default ``backend="auto"``, float32 weights."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            layer = Recurrent(self.name, input_size, hidden_size, **self.options)
        if self.radius is not None:
            set_spectral_radius(layer, self.radius, self.text)
        return layer

    def reference_twin(self, layer: Recurrent, dtype: torch.dtype | None = None) -> Recurrent:
        """The same cell and layer options with the same weights (in ``dtype``, default the
        layer's), run by the reference loop and differentiated by autograd (``backend="reference"``,
        ``bptt="autograd"``): the step equations one step at a time."""
        twin = Recurrent(self.name, layer.input_size, layer.hidden_size, backend="reference",
                         bptt="autograd", dtype=dtype, **self.options)
        twin.load_state_dict(layer.state_dict())                 # copies convert to the twin's dtype
        return twin

    def path(self, layer: Recurrent, x: Tensor) -> str:
        """The path the dispatcher takes for a training step of ``layer`` on x, in this precision
        (``rnnkit.engine.explain``): "native", "fused", "generated", "reference (hand BPTT)", ..."""
        with self.precision():
            choice = layer.explain(x).layers[0]
        return f"{choice.path} (hand BPTT)" if choice.hand_bptt else choice.path


def _split_precision(text: str) -> tuple[str, torch.dtype | None]:
    """``"lstm+bf16"`` -> ``("lstm", torch.bfloat16)``; a spec without a ``+word`` suffix is float32
    (the ``+`` of a radius such as ``elman@1e+1`` is not a suffix)."""
    body, plus, suffix = text.strip().rpartition("+")
    if not plus or not suffix.isidentifier():
        return text, None
    if suffix not in PRECISIONS:
        raise ValueError(f"cell spec {text!r}: unknown precision '+{suffix}'; the suffix "
                         f"{', '.join('+' + p for p in PRECISIONS)} runs the step under that autocast, "
                         "none runs it in float32")
    return body, PRECISIONS[suffix]


def build_baseline(name: str, input_size: int, hidden_size: int, *, seed: int = 0) -> nn.Module:
    """``torch.nn.LSTM`` or ``torch.nn.GRU`` (one layer, sequence-first), seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BASELINES[name](input_size, hidden_size)


def random_input(T: int, B: int, I: int, *, seed: int = 0) -> Tensor:
    """x ~ N(0, 1), (T, B, I), float32."""
    return torch.randn(T, B, I, generator=torch.Generator().manual_seed(seed))


def spread_lengths(B: int, T: int, *, seed: int = 0) -> Tensor:
    """(B,) lengths spread evenly from 1 to T, in a seeded random order (mean (T + 1) / 2)."""
    lengths = torch.linspace(1, T, B).round().long()
    return lengths[torch.randperm(B, generator=torch.Generator().manual_seed(seed))]


def output_of(module: nn.Module, x: Tensor, lengths: Tensor | None = None, *,
              precision: Callable = nullcontext) -> Tensor:
    """The module's output as one tensor, its forward pass run inside ``precision()`` (e.g.
    ``CellSpec.precision``): rnnkit takes ``lengths=``, torch.nn a PackedSequence (whose ``.data``
    (sum of lengths, H) is returned)."""
    with precision():
        if isinstance(module, Recurrent):
            return module(x, lengths=lengths)[0]                               # (T, B, O)
        if lengths is None:
            return module(x)[0]                                                # (T, B, H)
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        output = module(packed)[0]
        return output.data if isinstance(output, PackedSequence) else output


def training_step(module: nn.Module, x: Tensor, lengths: Tensor | None = None, *,
                  precision: Callable = nullcontext) -> Callable[[], None]:
    """One forward (inside ``precision()``) and backward of ``output.sum()``, gradients to every
    weight (not to x); the gradients are set to None first, so that each call allocates them as a
    training step would. The module stays in training mode: zoneout and dropout draw their masks."""
    parameters = [p for p in module.parameters() if p.requires_grad]

    def step() -> None:
        for p in parameters:
            p.grad = None
        output_of(module, x, lengths, precision=precision).sum().backward()
    return step


def streaming_loop(module: nn.Module, x: Tensor) -> Callable[[], None]:
    """Batch-1 inference one step at a time, the state carried: ``module(x_t, state)`` for every
    x_t (1, 1, I) of x (T, 1, I), under ``torch.inference_mode``."""
    steps = x.unbind(0)                                                         # T × (1, I)

    def run() -> None:
        with torch.inference_mode():
            state = None
            for x_t in steps:
                _, state = module(x_t.unsqueeze(0), state)                      # (1, 1, I) -> (1, 1, O)
    return run


def streamed_outputs(module: nn.Module, x: Tensor) -> Tensor:
    """The outputs of ``streaming_loop``'s calls, stacked: (T, 1, O)."""
    outputs, state = [], None
    for x_t in x.unbind(0):
        y_t, state = module(x_t.unsqueeze(0), state)                            # (1, 1, O)
        outputs.append(y_t)
    return torch.cat(outputs)                                                   # (T, 1, O)
