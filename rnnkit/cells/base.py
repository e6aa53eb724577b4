"""The contract every recurrent cell keeps.

A cell is one step of a recurrent network, written once as its equations. It is split in two parts
so that the time loop (``rnnkit.engine``) can do the expensive part for all steps at once:

* ``project_input(p, x)``: the input's contribution for every step, ``x`` of shape (T, B, I) to
  ``u`` of shape (T, B, G) — usually one large matrix product ``x Wᵀ + b``;
* ``step(p, u_t, state)``: one step of the recurrence from ``u_t`` (B, G) and the previous state,
  returning the step's output ``y_t`` (B, O) and the new state.

Parameters are passed in explicitly as a mapping ``p`` (name -> tensor): a cell module owns its
parameters by default, but the drop-in ``rnnkit.LSTM`` keeps torch.nn's flat parameter names and
hands the same tensors to the same step functions.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import Tensor, nn

from .contract import CellContractError, check_parameter_shapes, describe

State = tuple[Tensor, ...]
Params = Mapping[str, Tensor]


class RecurrentCell(nn.Module):
    """Base of all cells. Subclasses set ``state_names`` and implement the methods below.

    Args:
        input_size: I, features of each input step.
        hidden_size: H, the cell's hidden size.
        own_parameters: the cell registers its tensors as its own parameters (default); False when a
            layer keeps them under other names (the drop-in ``rnnkit.LSTM``) and passes them in as ``p``.
        device, dtype: where and in which dtype the tensors are created.

    Attributes:
        state_names: names of the state tensors, in the order a state tuple holds them
            (``("h",)`` for an Elman network, ``("h", "c")`` for an LSTM); a class attribute.
        takes_recurrent_dropout: whether the cell multiplies a previous state by a recurrent
            matrix, so that Gal & Ghahramani's variational recurrent dropout makes sense.
        fixed_parameters: names of tensors that are not trained (kept as buffers).

    Call: ``y_t, state = cell(x_t, state=None)``

    * x_t: (B, I), one step of the input.
    * state: a tuple in ``state_names`` order, each (B, S) (``state_sizes()``); None for zeros.
    * y_t: (B, O) (O = ``output_size``); the new state as a tuple like ``state``.
    """

    state_names: tuple[str, ...] = ("h",)
    takes_recurrent_dropout: bool = True
    fixed_parameters: tuple[str, ...] = ()

    def __init__(self, input_size: int, hidden_size: int, *, own_parameters: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__()
        check_positive_int("input_size", input_size)
        check_positive_int("hidden_size", hidden_size)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self._own_parameters = own_parameters
        self._factory = {"device": device, "dtype": dtype}

    def _build(self) -> None:
        """Create the cell's own parameters; subclasses call this at the end of ``__init__``."""
        if "_own_parameters" not in self.__dict__:
            raise CellContractError(f"{describe(type(self))}: self._build() ran before RecurrentCell.__init__; "
                                    "start __init__ with super().__init__(input_size, hidden_size, "
                                    "own_parameters=own_parameters, device=device, dtype=dtype)")
        try:
            shapes = self.parameter_shapes()
        except AttributeError as error:
            raise CellContractError(f"{describe(type(self))}: parameter_shapes() failed in self._build() "
                                    f"({error}); call self._build() last in __init__, after setting what "
                                    "parameter_shapes() reads") from error
        check_parameter_shapes(self, shapes)
        if not self._own_parameters:
            return
        for name, shape in shapes.items():
            tensor = torch.empty(shape, **self._factory)
            if name in self.fixed_parameters:
                self.register_buffer(name, tensor)
            else:
                self.register_parameter(name, nn.Parameter(tensor))
        self.reset_parameters()

    # ----- what a subclass describes -------------------------------------------------------
    @property
    def output_size(self) -> int:
        """Size of ``y_t``, the output of a step (what the next layer sees)."""
        return self.hidden_size

    def state_sizes(self) -> tuple[int, ...]:
        """Feature size of each state tensor, in ``state_names`` order."""
        return (self.hidden_size,)

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def init_parameters(self, p: Params) -> None:
        """Initialise the tensors of ``p`` in place. The default draws every tensor from
        U(-1/√H, 1/√H), as torch.nn's recurrent modules do."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for tensor in p.values():
                tensor.uniform_(-bound, bound)

    def project_input(self, p: Params, x: Tensor) -> Tensor:
        raise NotImplementedError

    def step(self, p: Params, u_t: Tensor, state: State,
             recurrent_mask: Tensor | None = None) -> tuple[Tensor, State]:
        raise NotImplementedError

    def step_with_gates(self, p: Params, u_t: Tensor, state: State,
                        recurrent_mask: Tensor | None = None) -> tuple[Tensor, State, dict[str, Tensor]]:
        """``step``, also returning the gate activations by name (each (B, H)); gated cells
        override it (LSTM: i, f, o; GRU: r, z; minGRU: z), the others return no gates."""
        y, state = self.step(p, u_t, state, recurrent_mask)
        return y, state, {}

    # ----- hand-derived backpropagation through time (rnnkit.engine.bptt) --------------------
    input_parameters: tuple[str, ...] = ("weight_ih", "bias_ih", "ln_ih_weight", "ln_ih_bias")

    def supports_hand_bptt(self) -> bool:
        """Whether this cell, with its options, has ``step_saving``/``step_backward``."""
        return False

    def recurrent_parameter_names(self, p: Params) -> list[str]:
        """The trained tensors that ``step`` uses (``project_input``'s are left to autograd)."""
        return [n for n in p if n not in self.input_parameters and n not in self.fixed_parameters]

    def step_saving(self, p: Params, u_t: Tensor, state: State) -> tuple[State, dict[str, Tensor]]:
        """The step (its output is the new state's first tensor) and what ``step_backward`` needs."""
        raise NotImplementedError

    def step_backward(self, p: Params, cache: dict[str, Tensor], grad_state: State
                      ) -> tuple[Tensor, State, dict[str, Tensor]]:
        """From ∂L/∂(new state): ∂L/∂u_t, ∂L/∂(previous state), and per-step records for
        ``recurrent_grads`` (names starting ``d_`` are gradients)."""
        raise NotImplementedError

    def recurrent_grads(self, p: Params, records: dict[str, Tensor]) -> dict[str, Tensor]:
        """Gradients of the recurrent parameters from every step's records, each (N, ·): the rows
        of all steps stacked (N = T·B, fewer when sequences end early), so that a weight's gradient
        is one matrix product over all of them (``summed_outer``)."""
        raise NotImplementedError

    # ----- shared machinery -----------------------------------------------------------------
    def params(self) -> dict[str, Tensor]:
        """The cell's own parameters (and fixed tensors) by name."""
        return {name: getattr(self, name) for name in self.parameter_shapes()}

    def reset_parameters(self) -> None:
        if self._own_parameters:
            self.init_parameters(self.params())

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        return tuple(torch.zeros(batch_size, size, device=device, dtype=dtype)
                     for size in self.state_sizes())

    def forward(self, x_t: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One step, as ``torch.nn.LSTMCell`` is called: ``x_t`` (B, I) and the previous state (a
        tuple in ``state_names`` order; zeros when None) give ``(y_t, new_state)``. For whole
        sequences use ``rnnkit.Recurrent``, which projects the inputs of all steps at once."""
        if not self._own_parameters:
            raise RuntimeError("this cell's parameters live on its layer (own_parameters=False); "
                               "call it through the layer, or use step(p, u_t, state)")
        if not isinstance(x_t, Tensor) or x_t.dim() != 2 or x_t.shape[1] != self.input_size:
            got = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ValueError(f"x_t must have shape (batch, input_size={self.input_size}), got {got}")
        if state is None:
            state = self.initial_state(x_t.shape[0], device=x_t.device, dtype=x_t.dtype)
        p = self.params()
        u_t = self.project_input(p, x_t.unsqueeze(0))[0]                      # (B, G)
        return self.step(p, u_t, tuple(state))

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


def check_positive_int(name: str, value) -> None:
    """Raise a TypeError (not an int) or ValueError (not positive) naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")


def check_choice(name: str, value, choices) -> None:
    """Raise a ValueError naming the argument, the allowed values and the given one."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
