"""``rnnkit.RNNCell``, ``rnnkit.LSTMCell``, ``rnnkit.GRUCell``: torch.nn's single-step cells, argument
for argument.

They take torch.nn's constructor arguments (``input_size, hidden_size, bias=True[, nonlinearity],
device=None, dtype=None``) and call forms, keep its parameter names (``weight_ih`` (G·H, I),
``weight_hh`` (G·H, H), ``bias_ih``, ``bias_hh`` (G·H); None without bias) and initialisation
(every tensor uniform in ±1/√H), so that ``load_state_dict`` works both ways, and raise torch's
exception types for wrong shapes. One step is rnnkit's cell written as its equations
(``rnnkit.cells``: ``u_t = project_input(p, x_t)``, ``y_t, state = step(p, u_t, state)``), not
torch's fused ``_VF`` cell functions:

* ``RNNCell``: h_1 = f(W x + b_ih + U h_0 + b_hh), f = tanh | relu (| sigmoid, rnnkit's extra);
* ``LSTMCell``: (h_1, c_1) from (h_0, c_0), gates i, f, g, o (torch.nn.LSTMCell's equations);
* ``GRUCell``: h_1 = (1 − z) ⊙ n + z ⊙ h_0, gates r, z, n (torch.nn.GRUCell's equations).

Call: ``cell(input, hx=None)`` with input (B, I) or unbatched (I,); hx of the same batchedness
((B, H) or (H,)), zeros when None; ``LSTMCell`` takes and returns a pair ``(h, c)``, the others a
tensor. Keyword-only extras after torch's arguments select rnnkit's other forms of the cell; their
defaults are torch's: ``LSTMCell(..., variant=, proj_size=, layer_norm=)`` (the Odyssey variants of
``rnnkit.cells.LSTM_VARIANTS``, extra parameters named as the cell names them: ``peephole_i``,
``weight_hr``, ``weight_gg``, ``ln_*``; ``variant="fgr"`` carries a third state tensor, the previous
gates (B, 3H): hx and the result are ``(h, c, ifo)``), ``GRUCell(..., variant="original",
layer_norm=)``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..cells import create


class _TorchCell(nn.Module):
    """One step of an rnnkit cell behind torch.nn.RNNCellBase's interface; parameters live on this
    module under the cell's (= torch's) names. Subclasses say how hx and the result look."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, bias: bool, device, dtype,
                 **options) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{type(self).__name__}: {name} must be an int, got "
                                f"{type(value).__name__} ({value!r})")
        if not isinstance(bias, bool):
            raise TypeError(f"{type(self).__name__}: bias must be a bool, got {type(bias).__name__} ({bias!r})")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self._options = dict(options, bias=bias)
        # the rnnkit cell whose equations a step runs; it holds no tensors (its parameters are this
        # module's), so it is kept out of the module tree: not in children(), repr or apply()
        object.__setattr__(self, "_cell", create(cell, input_size, hidden_size, own_parameters=False,
                                                 **self._options))
        shapes = self._cell.parameter_shapes()
        self._names = tuple(shapes)                     # the cell's parameters, in torch's order
        for name, shape in shapes.items():
            self.register_parameter(name, nn.Parameter(torch.empty(shape, device=device, dtype=dtype)))
        if not bias:                                    # torch's cells have these attributes as None
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def _params(self) -> dict[str, Tensor]:
        return {name: getattr(self, name) for name in self._names}

    def reset_parameters(self) -> None:
        """torch's initialisation: U(−1/√H, 1/√H) for every tensor (layer-norm gains 1, shifts 0)."""
        self._cell.init_parameters(self._params())

    # ----- the call --------------------------------------------------------------------------
    def forward(self, input: Tensor, hx=None):
        batched = self._check_input(input)
        x = input if batched else input.unsqueeze(0)                          # (B, I)
        state = self._read_state(hx, x, batched)                              # each (B, S)
        p = self._params()
        u_t = self._cell.project_input(p, x.unsqueeze(0))[0]                  # (B, G)
        _, state = self._cell.step(p, u_t, state)
        if not batched:
            state = tuple(s.squeeze(0) for s in state)                        # each (S,)
        return self._result(state)

    def _check_input(self, input) -> bool:
        """Whether ``input`` is batched; torch's exception types for a wrong one."""
        kind = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{kind}: input must be a Tensor, got {type(input).__name__}")
        if input.dim() not in (1, 2):
            raise ValueError(f"{kind}: Expected input to be 1D (input_size,) or 2D (batch, input_size), "
                             f"got {input.dim()}D instead (shape {tuple(input.shape)})")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"{kind}: input has inconsistent input_size: got {input.shape[-1]} "
                               f"expected {self.input_size} (input shape {tuple(input.shape)})")
        return input.dim() == 2

    def _read_state(self, hx, x: Tensor, batched: bool) -> tuple[Tensor, ...]:
        """hx as the cell's state tuple, each (B, S); zeros for None. Nothing is broadcast."""
        B = x.shape[0]
        if hx is None:
            return self._cell.initial_state(B, device=x.device, dtype=x.dtype)
        kind, tensors = type(self).__name__, self._state_tensors(hx)
        for label, t in tensors:
            if t.dim() not in (1, 2):
                raise ValueError(f"{kind}: Expected {label} to be 1D or 2D, got {t.dim()}D instead "
                                 f"(shape {tuple(t.shape)})")
        state = []
        for (label, given), size in zip(tensors, self._cell.state_sizes()):
            expected = f"shape (batch={B}, {size})" if batched else f"shape ({size},)"
            got = f"got {tuple(given.shape)}"
            if given.dim() != (2 if batched else 1):
                raise RuntimeError(f"{kind}: {label} must have {expected} for "
                                   f"{'a batched' if batched else 'an unbatched'} input, {got}")
            t = given if batched else given.unsqueeze(0)                      # (B, S)
            if t.shape[0] != B:
                raise RuntimeError(f"{kind}: Input batch size {B} doesn't match {label} batch size "
                                   f"{t.shape[0]} ({label} must have {expected}, {got})")
            if t.shape[1] != size:
                raise RuntimeError(f"{kind}: {label} has inconsistent size: got {t.shape[1]}, expected "
                                   f"{size} ({label} must have {expected}, {got})")
            state.append(t)
        return tuple(state)

    def _state_tensors(self, hx) -> list[tuple[str, Tensor]]:
        """hx as (label, tensor) pairs: a single-tensor state (RNNCell, GRUCell)."""
        if not isinstance(hx, Tensor):
            raise TypeError(f"{type(self).__name__}: hx must be a Tensor (or None), got {type(hx).__name__}")
        return [("hx", hx)]

    def _result(self, state: tuple[Tensor, ...]):
        return state[0]

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            text += ", bias=False"
        return text + self._extra_options()

    def _extra_options(self) -> str:
        """rnnkit's keyword extras that differ from their (torch-equal) defaults."""
        defaults = {"variant": "standard", "proj_size": 0, "layer_norm": False}
        return "".join(f", {name}={value!r}" for name, value in self._options.items()
                       if name in defaults and value != defaults[name])


class RNNCell(_TorchCell):
    r"""Drop-in for ``torch.nn.RNNCell``: h_1 = f(W_ih x + b_ih + W_hh h_0 + b_hh).

    ``nonlinearity``: ``"tanh"`` or ``"relu"`` as torch, or ``"sigmoid"`` (rnnkit's Elman cell has
    it); an unknown one is a ValueError here (torch raises a RuntimeError at the first call).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None) -> None:
        super().__init__("elman", input_size, hidden_size, bias, device, dtype, nonlinearity=nonlinearity)
        self.nonlinearity = nonlinearity

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text if self.nonlinearity == "tanh" else f"{text}, nonlinearity={self.nonlinearity}"


class LSTMCell(_TorchCell):
    r"""Drop-in for ``torch.nn.LSTMCell``: ``h_1, c_1 = cell(input, (h_0, c_0))``.

    .. math::
        i, f, g, o = σ, σ, \tanh, σ\,(W_{ih} x + b_{ih} + W_{hh} h_0 + b_{hh})  \\
        c_1 = f ⊙ c_0 + i ⊙ g,\quad h_1 = o ⊙ \tanh(c_1)

    Keyword-only extras (rnnkit's LSTM cell, ``docs/cells.md``): ``variant`` (one of
    ``rnnkit.cells.LSTM_VARIANTS``; ``"standard"`` is torch's; ``"fgr"`` takes and returns
    ``(h, c, ifo)``), ``proj_size`` P (h is (B, P), ``weight_hr`` (P, H)), ``layer_norm``.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 variant: str = "standard", proj_size: int = 0, layer_norm: bool = False) -> None:
        super().__init__("lstm", input_size, hidden_size, bias, device, dtype, variant=variant,
                         proj_size=proj_size, layer_norm=layer_norm)
        self.variant, self.proj_size, self.layer_norm = variant, proj_size, layer_norm

    def _state_tensors(self, hx) -> list[tuple[str, Tensor]]:
        kind, names = type(self).__name__, self._cell.state_names
        wanted = f"a tuple ({', '.join(n + '_0' for n in names)}) of Tensors"
        if not isinstance(hx, (tuple, list)):
            raise TypeError(f"{kind}: hx must be {wanted}, got {type(hx).__name__}")
        if len(hx) != len(names):
            raise RuntimeError(f"{kind}: hx must be {wanted}: {len(names)} state tensors, got {len(hx)}")
        for index, t in enumerate(hx):
            if not isinstance(t, Tensor):
                raise TypeError(f"{kind}: hx[{index}] ({names[index]}_0) must be a Tensor, got {type(t).__name__}")
        return [(f"hx[{index}]", t) for index, t in enumerate(hx)]

    def _result(self, state: tuple[Tensor, ...]):
        return tuple(state)


class GRUCell(_TorchCell):
    r"""Drop-in for ``torch.nn.GRUCell``: ``h_1 = cell(input, h_0)``.

    .. math::
        r = σ(W_{ir} x + b_{ir} + W_{hr} h_0 + b_{hr}),\quad z = σ(W_{iz} x + b_{iz} + W_{hz} h_0 + b_{hz}) \\
        n = \tanh(W_{in} x + b_{in} + r ⊙ (W_{hn} h_0 + b_{hn})),\quad h_1 = (1 − z) ⊙ n + z ⊙ h_0

    Keyword-only extras: ``variant="original"`` (Cho et al. 2014: n = tanh(W_in x + b_in +
    W_hn (r ⊙ h_0) + b_hn)), ``layer_norm`` (standard variant only).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 variant: str = "standard", layer_norm: bool = False) -> None:
        super().__init__("gru", input_size, hidden_size, bias, device, dtype, variant=variant,
                         layer_norm=layer_norm)
        self.variant, self.layer_norm = variant, layer_norm
