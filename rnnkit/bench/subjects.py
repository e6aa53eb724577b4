"""What is timed: rnnkit layers built from cell specs, torch.nn baselines, their inputs, and the
functions of no arguments that the timer calls (a training step, a streaming loop).

All tensors are float32 and sequence-first: x is (T, B, I). Weights and inputs come from their own
seeded generators, so every subject of a run sees the same input.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from ..diagnose.experiments import parse_cell_spec, set_spectral_radius
from ..layers import Recurrent

BASELINES = {"nn.LSTM": nn.LSTM, "nn.GRU": nn.GRU}


@dataclass(frozen=True)
class CellSpec:
    """A cell named as on the command line: ``NAME[:OPTION]...[@RADIUS]`` (``lstm:cifg``)."""
    text: str
    name: str
    options: dict = field(hash=False)
    radius: float | None = None

    @classmethod
    def parse(cls, text: str) -> "CellSpec":
        name, options, radius = parse_cell_spec(text)        # ValueError naming the bad part
        return cls(text.strip(), name, options, radius)

    def build(self, input_size: int, hidden_size: int, *, seed: int = 0) -> Recurrent:
        """``Recurrent(name, I, H, **options)`` with the default ``backend="auto"``, float32."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            layer = Recurrent(self.name, input_size, hidden_size, **self.options)
        if self.radius is not None:
            set_spectral_radius(layer, self.radius, self.text)
        return layer

    def reference_twin(self, layer: Recurrent) -> Recurrent:
        """The same cell with the same weights, run by the reference loop and differentiated by
        autograd (``backend="reference"``, ``bptt="autograd"``): the step equations one step at a time."""
        options = dict(self.options)
        twin = Recurrent(self.name, layer.input_size, layer.hidden_size, backend="reference",
                         bptt="autograd", **options)
        twin.load_state_dict(layer.state_dict())
        return twin


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


def output_of(module: nn.Module, x: Tensor, lengths: Tensor | None = None) -> Tensor:
    """The module's output as one tensor: rnnkit takes ``lengths=``, torch.nn a PackedSequence
    (whose ``.data`` (sum of lengths, H) is returned)."""
    if isinstance(module, Recurrent):
        return module(x, lengths=lengths)[0]                                   # (T, B, O)
    if lengths is None:
        return module(x)[0]                                                    # (T, B, H)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    output = module(packed)[0]
    return output.data if isinstance(output, PackedSequence) else output


def training_step(module: nn.Module, x: Tensor, lengths: Tensor | None = None) -> Callable[[], None]:
    """One forward and backward of ``output.sum()``, gradients to every weight (not to x); the
    gradients are set to None first, so that each call allocates them as a training step would."""
    parameters = [p for p in module.parameters() if p.requires_grad]

    def step() -> None:
        for p in parameters:
            p.grad = None
        output_of(module, x, lengths).sum().backward()
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
