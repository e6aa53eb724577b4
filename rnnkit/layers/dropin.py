"""``rnnkit.RNN``, ``rnnkit.LSTM``, ``rnnkit.GRU``: torch.nn's modules, argument for argument.

They take torch.nn's constructor arguments and call forms, keep its flat parameter names
(``weight_ih_l0``, ``bias_hh_l1_reverse``, ``weight_hr_l0``, ...) so that ``load_state_dict`` works
both ways, and compute with the same cells as ``rnnkit.Recurrent``. Every configuration of these
modules is one torch's fused kernels computes, so ``backend="auto"`` runs that kernel where it is
the fastest (the dispatcher, ``rnnkit.engine.dispatch``, sends the GRU and batches with ``lengths``
on the CPU to rnnkit's compiled loop); any path can be named (``backend="reference"`` runs rnnkit's
own Python loop; the tests compare them). They also
accept rnnkit's ``lengths=`` and ``return_all_states=`` (for the LSTM's c_t at every step).

They check their arguments as torch.nn does (``bias`` and ``batch_first`` bools, sizes ints,
``dropout`` in [0, 1]) and raise torch's exception types (``rnnkit.errors``), and keep torch.nn's
view of the weights for code written against its internals: ``_flat_weights_names`` (torch's order:
``weight_ih``, ``weight_hh``[, ``bias_ih``, ``bias_hh``][, ``weight_hr``] per layer and direction),
``_all_weights``, ``all_weights`` and ``_flat_weights``, read at each access from the module's
attributes, so that what ``torch.nn.utils.weight_norm``, ``parametrize``, ``prune`` or
``spectral_norm`` put in a weight's place is what the layer computes with and what they see.
docs/cells.md, "Drop-in differences from torch.nn", lists what differs.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ArgumentError
from .recurrent import Recurrent


class _TorchCompatible(Recurrent):
    """A Recurrent whose parameters live on the module under torch.nn's flat names."""

    _cells_own_parameters = False

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int, bias: bool,
                 batch_first: bool, dropout: float, bidirectional: bool, device, dtype, backend: str,
                 **cell_options) -> None:
        # torch.nn accepts any truthy bidirectional (it checks only bias and batch_first)
        super().__init__(cell, input_size, hidden_size, num_layers, bool(bidirectional), batch_first, dropout,
                         backend=backend, device=device, dtype=dtype, bias=bias, **cell_options)
        self.bias = bias
        self.proj_size = cell_options.get("proj_size", 0)    # torch.nn's RNN and GRU have it too (0)
        self.mode = {"lstm": "LSTM", "gru": "GRU"}.get(cell) or f"RNN_{cell_options['nonlinearity'].upper()}"
        self._all_weights: list[list[str]] = []          # torch's names, one list per layer and direction
        for index, cell_module in enumerate(self.cells):
            names = []
            for name, shape in cell_module.parameter_shapes().items():
                names.append(name + self._suffix(index))
                self.register_parameter(names[-1], nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
            self._all_weights.append(names)
        self._flat_weights_names = [name for names in self._all_weights for name in names]
        self.reset_parameters()

    def _suffix(self, index: int) -> str:
        layer, direction = divmod(index, self.num_directions)
        return f"_l{layer}" + ("_reverse" if direction else "")

    def cell_params(self, index: int) -> dict[str, Tensor]:
        suffix = self._suffix(index)
        return {name: getattr(self, name + suffix) for name in self.cells[index].parameter_shapes()}

    def reset_parameters(self) -> None:
        for index, cell_module in enumerate(self.cells):
            cell_module.init_parameters(self.cell_params(index))

    def flatten_parameters(self) -> None:
        """Accepted for code written for torch.nn (which calls it after ``.cuda()``; on the CPU
        torch's own does nothing either): each layer's weights are handed to the kernel as they
        are, so there is nothing to compact."""

    @property
    def _flat_weights(self) -> list[Tensor | None]:
        """What the layer computes with, in torch's flat order: the tensor now at each name (a
        Parameter, or what weight_norm / parametrize / prune put there), None for a deleted one."""
        return [getattr(self, name, None) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list[list[Tensor]]:
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def forward(self, input, hx=None, lengths=None, *, return_all_states: bool = False):
        return super().forward(input, hx, lengths, return_all_states=return_all_states)


class LSTM(_TorchCompatible):
    """Drop-in for ``torch.nn.LSTM`` (same arguments, names, shapes, results); see module docs."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None, *, backend: str = "auto") -> None:
        if isinstance(proj_size, bool) or not isinstance(proj_size, int):     # torch: a TypeError
            raise ArgumentError(f"proj_size must be an int in [0, hidden_size={hidden_size}), got {proj_size!r}")
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, backend, proj_size=proj_size)


class GRU(_TorchCompatible):
    """Drop-in for ``torch.nn.GRU`` (same arguments, names, shapes, results); see module docs."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, *, backend: str = "auto", **unexpected) -> None:
        _refuse_lstm_options("GRU", unexpected)
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, backend)


class RNN(_TorchCompatible):
    """Drop-in for ``torch.nn.RNN`` (tanh or relu Elman network); see module docs."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None, *,
                 backend: str = "auto", **unexpected) -> None:
        _refuse_lstm_options("RNN", unexpected)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu' (as torch.nn.RNN), got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__("elman", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, backend, nonlinearity=nonlinearity)


def _refuse_lstm_options(kind: str, unexpected: dict) -> None:
    """RNN and GRU take no ``proj_size`` (torch.nn: a ValueError, even for 0); any other unknown
    keyword is a TypeError, as Python's own."""
    if "proj_size" in unexpected:
        raise ArgumentError(f"proj_size is an option of LSTM only, not RNN or GRU (as in torch.nn); "
                            f"{kind} got proj_size={unexpected['proj_size']!r}")
    if unexpected:
        raise TypeError(f"{kind}.__init__() got unexpected keyword argument(s) "
                        f"{', '.join(repr(k) for k in unexpected)}")
