"""``rnnkit.RNN``, ``rnnkit.LSTM``, ``rnnkit.GRU``: torch.nn's modules, argument for argument.

They take torch.nn's constructor arguments and call forms, keep its flat parameter names
(``weight_ih_l0``, ``bias_hh_l1_reverse``, ``weight_hr_l0``, ...) so that ``load_state_dict`` works
both ways, and compute with the same cells as ``rnnkit.Recurrent``. Every configuration of these
modules is one torch's fused kernels computes, so ``backend="auto"`` runs that kernel where it is
the fastest (the dispatcher, ``rnnkit.engine.dispatch``, sends the GRU and batches with ``lengths``
on the CPU to rnnkit's compiled loop); any path can be named (``backend="reference"`` runs rnnkit's
own Python loop; the tests compare them). They also
accept rnnkit's ``lengths=`` and ``return_all_states=`` (for the LSTM's c_t at every step).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .recurrent import Recurrent


class _TorchCompatible(Recurrent):
    """A Recurrent whose parameters live on the module under torch.nn's flat names."""

    _cells_own_parameters = False

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int, bias: bool,
                 batch_first: bool, dropout: float, bidirectional: bool, device, dtype, backend: str,
                 **cell_options) -> None:
        super().__init__(cell, input_size, hidden_size, num_layers, bidirectional, batch_first, dropout,
                         backend=backend, device=device, dtype=dtype, bias=bias, **cell_options)
        self.bias = bias
        for index, cell_module in enumerate(self.cells):
            for name, shape in cell_module.parameter_shapes().items():
                self.register_parameter(name + self._suffix(index),
                                        nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
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
        """Accepted for code written for torch.nn (which calls it after ``.cuda()``): the weights
        are handed to torch's kernel as they are, so there is nothing to compact."""

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        return [list(self.cell_params(i).values()) for i in range(len(self.cells))]

    def forward(self, input, hx=None, lengths=None, *, return_all_states: bool = False):
        return super().forward(input, hx, lengths, return_all_states=return_all_states)


class LSTM(_TorchCompatible):
    """Drop-in for ``torch.nn.LSTM`` (same arguments, names, shapes, results); see module docs."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None, *, backend: str = "auto") -> None:
        self.proj_size = proj_size
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, backend, proj_size=proj_size)


class GRU(_TorchCompatible):
    """Drop-in for ``torch.nn.GRU`` (same arguments, names, shapes, results); see module docs."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, *, backend: str = "auto") -> None:
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, backend)


class RNN(_TorchCompatible):
    """Drop-in for ``torch.nn.RNN`` (tanh or relu Elman network); see module docs."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None, *,
                 backend: str = "auto") -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu' (as torch.nn.RNN), got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__("elman", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device, dtype, backend, nonlinearity=nonlinearity)
