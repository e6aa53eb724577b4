"""What a cell class must provide, checked where the mistake can first be seen, one message each.

A cell of one's own (``docs/custom-cells.md``) subclasses ``RecurrentCell``, defines
``parameter_shapes``, ``project_input`` and ``step``, takes ``own_parameters``, ``device`` and
``dtype`` in ``__init__`` and calls ``self._build()`` at its end. Forgetting one of these used to
surface as a TypeError or AttributeError deep inside the time loop; here each is a
``CellContractError`` that names the class, the missing piece and the fix:

* ``check_class`` at ``register`` (and at the first use of an unregistered class): the base class,
  the three methods, the signatures the engine calls;
* ``check_parameter_shapes`` in ``_build``: names that can be attributes, shapes of ints;
* ``check_instance`` after ``create`` builds a cell: its tensors exist with their declared shapes, and
  one step on the ``meta`` device (shapes and dtypes only: no arithmetic, no random numbers drawn)
  returns ``(y_t, new_state)`` with the shapes and dtype the cell declares (for cells outside
  rnnkit: the built-in ones are held to the same by the conformance tests, and skip the cost).
"""
from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

DOC = "see docs/custom-cells.md"
BUILT_IN = "rnnkit.cells."        # the module prefix of rnnkit's own cells

# method -> what it must do, for the message when a subclass leaves the base's NotImplementedError
REQUIRED_METHODS = {
    "parameter_shapes": "return {name: shape} of the tensors the cell computes with, "
                        "e.g. {'weight_ih': (H, I), 'weight_hh': (H, H)}",
    "project_input": "return the input's contribution for every step: u (T, B, G) from x (T, B, I)",
    "step": "return (y_t, new_state) from u_t (B, G) and the previous state tuple",
}
# method -> how the engine calls it
SIGNATURES = {
    "parameter_shapes": "(self)",
    "project_input": "(self, p, x)",
    "step": "(self, p, u_t, state, recurrent_mask=None)",
}
FACTORY_KEYWORDS = ("own_parameters", "device", "dtype")
INIT_FIX = ("write `def __init__(self, input_size, hidden_size, *, <your options>, own_parameters=True, "
            "device=None, dtype=None)` and pass them on: `super().__init__(input_size, hidden_size, "
            "own_parameters=own_parameters, device=device, dtype=dtype)`")


class CellContractError(TypeError):
    """A cell class that breaks the contract of ``RecurrentCell`` (the message says what and how to fix it)."""


def describe(cls: Any) -> str:
    """``cell class mypkg.cells.MyCell`` (or what the object is, when it is no class)."""
    if isinstance(cls, type):
        return f"cell class {cls.__module__}.{cls.__qualname__}"
    return f"{type(cls).__name__} {cls!r}"


def check_class(cls: Any, where: str, RecurrentCell: type) -> None:
    """What can be known from the class alone; ``where`` names the call (``rnnkit.cells.register('x')``).
    ``RecurrentCell`` is passed in by the registry: base.py imports this module, not the reverse."""
    if not (isinstance(cls, type) and issubclass(cls, RecurrentCell)):
        raise CellContractError(f"{where}: {describe(cls)} is not a subclass of rnnkit.cells.RecurrentCell; "
                                f"a cell is written as `class MyCell(RecurrentCell): ...` ({DOC})")
    for method, purpose in REQUIRED_METHODS.items():
        if getattr(cls, method) is getattr(RecurrentCell, method):
            raise CellContractError(f"{describe(cls)} does not define {method}(), which every cell needs: "
                                    f"define `def {method}{SIGNATURES[method]}` to {purpose} ({DOC})")
        arguments = (None,) * SIGNATURES[method].count(",") + (None,)          # self and the others
        if not _accepts(getattr(cls, method), arguments, {}):
            raise CellContractError(f"{describe(cls)}: {method}() cannot be called as the engine calls it, "
                                    f"{method}{SIGNATURES[method]}; give it that signature ({DOC})")
    if not _accepts(cls.__init__, (None, 1, 1), dict.fromkeys(FACTORY_KEYWORDS)):
        missing = [k for k in FACTORY_KEYWORDS if k not in inspect.signature(cls.__init__).parameters]
        what = f"does not accept {', '.join(missing)}" if missing else \
            "cannot be called as cls(input_size, hidden_size, own_parameters=..., device=..., dtype=...)"
        raise CellContractError(f"{describe(cls)}: __init__ {what}, which the layers pass to every cell; "
                                f"{INIT_FIX}")


def check_parameter_shapes(cell, shapes: Any) -> None:
    """``parameter_shapes()``: a dict of names a module attribute can take to shapes of ints ≥ 0."""
    where = f"{describe(type(cell))}: parameter_shapes()"
    if not isinstance(shapes, dict):
        raise CellContractError(f"{where} must return a dict {{name: shape}}, got {type(shapes).__name__}")
    for name, shape in shapes.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise CellContractError(f"{where} names a tensor {name!r}: names must be Python identifiers "
                                    "(letters, digits, '_'; no '.'), as they become attributes of the cell")
        if name not in cell._parameters and name not in cell._buffers and hasattr(cell, name):
            raise CellContractError(f"{where} names a tensor {name!r}, but the cell already has an attribute "
                                    f"{name!r} ({type(getattr(cell, name)).__name__}); rename one of them")
        if not isinstance(shape, (tuple, list, torch.Size)) or \
                not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise CellContractError(f"{where} gives {name!r} the shape {shape!r}; a shape is a tuple of "
                                    "ints >= 0, e.g. (hidden_size, input_size)")
    unknown = [name for name in type(cell).fixed_parameters if name not in shapes]
    if unknown:
        raise CellContractError(f"{describe(type(cell))}: fixed_parameters names {', '.join(map(repr, unknown))}, "
                                "which parameter_shapes() does not; list only tensors it declares")


def check_instance(cell) -> None:
    """A cell just built: its tensors exist as declared, and one step has the declared structure."""
    shapes = cell.parameter_shapes()
    check_parameter_shapes(cell, shapes)
    if cell._own_parameters:
        missing = [n for n in shapes if n not in cell._parameters and n not in cell._buffers]
        if missing:
            raise CellContractError(f"{describe(type(cell))}: after __init__ its tensors "
                                    f"{', '.join(map(repr, missing))} do not exist; call self._build() at the "
                                    "end of __init__ (it creates and initialises what parameter_shapes() names)")
        for name, shape in shapes.items():
            if tuple(getattr(cell, name).shape) != tuple(shape):
                raise CellContractError(
                    f"{describe(type(cell))}: tensor {name!r} has shape {tuple(getattr(cell, name).shape)} but "
                    f"parameter_shapes() says {tuple(shape)}; parameter_shapes() must give the same answer "
                    "after __init__ as when self._build() ran (call it last)")
    if not type(cell).__module__.startswith(BUILT_IN):        # those: tests/test_conformance.py
        check_meta_step(cell, shapes)


def check_step_result(cell, result: Any, batch: int, dtype: torch.dtype) -> None:
    """``step``'s result: ``(y_t (B, output_size), new_state)``, new_state a tuple in ``state_names``
    order with ``state_sizes()``, every tensor of the input's dtype."""
    where = f"{describe(type(cell))}: step()"
    names, sizes = tuple(cell.state_names), tuple(cell.state_sizes())
    example = "return h, (h,)" if len(names) == 1 else f"return y, ({', '.join(names)})"
    if not isinstance(result, tuple) or len(result) != 2:
        got = f"a tuple of {len(result)}" if isinstance(result, tuple) else type(result).__name__
        raise CellContractError(f"{where} must return (y_t, new_state), e.g. `{example}`; it returned {got}")
    y, state = result
    _check_tensor(f"{where}'s output y_t", y, (batch, cell.output_size), dtype,
                  "output_size is hidden_size unless the cell overrides the output_size property")
    if not isinstance(state, tuple) or len(state) != len(names):
        got = f"a tuple of {len(state)}" if isinstance(state, tuple) else type(state).__name__
        raise CellContractError(f"{where}'s new state must be a tuple of {len(names)} tensor(s) in state_names "
                                f"order {names}, e.g. `{example}`; it returned {got}")
    for name, size, tensor in zip(names, sizes, state):
        _check_tensor(f"{where}'s new state {name!r}", tensor, (batch, size), dtype,
                      "state_sizes() gives each state tensor's size")


def check_meta_step(cell, shapes: dict) -> bool:
    """One step on the ``meta`` device; whether it ran. A cell the meta device cannot run (an
    ``.item()``, an operation without a meta kernel) is not checked here: its first real call
    reports for itself."""
    where = describe(type(cell))
    names, sizes = tuple(cell.state_names), tuple(cell.state_sizes())
    if len(names) != len(sizes):
        raise CellContractError(f"{where}: state_names has {len(names)} name(s) {names} but state_sizes() "
                                f"gives {len(sizes)} size(s) {sizes}; give one size per state tensor")
    dtype = cell._factory.get("dtype") or torch.get_default_dtype()
    T, B = 2, 3
    p = {name: torch.empty(tuple(shape), device="meta", dtype=dtype) for name, shape in shapes.items()}
    x = torch.empty(T, B, cell.input_size, device="meta", dtype=dtype)                  # (T, B, I)
    try:
        u = cell.project_input(p, x)                                                    # (T, B, G)
        state = tuple(torch.empty(B, size, device="meta", dtype=dtype) for size in sizes)
        result = cell.step(p, u[0], state, None) if isinstance(u, Tensor) and u.dim() == 3 else None
    except Exception:                                          # noqa: BLE001 - the real call will say
        return False
    if not isinstance(u, Tensor) or u.dim() != 3 or tuple(u.shape[:2]) != (T, B):
        got = tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__
        raise CellContractError(f"{where}: project_input() must return u of shape (T, B, G) for x of shape "
                                f"(T, B, I) = {tuple(x.shape)}; it returned {got}")
    check_step_result(cell, result, B, dtype)
    return True


def _check_tensor(what: str, tensor: Any, shape: tuple[int, ...], dtype: torch.dtype, hint: str) -> None:
    if not isinstance(tensor, Tensor):
        raise CellContractError(f"{what} must be a tensor of shape {shape}, got {type(tensor).__name__}")
    if tuple(tensor.shape) != shape:
        raise CellContractError(f"{what} has shape {tuple(tensor.shape)}, expected (batch, size) = {shape} "
                                f"({hint})")
    if tensor.dtype != dtype:
        raise CellContractError(f"{what} is {tensor.dtype} for {dtype} input; create new tensors like the "
                                "input (u_t.new_zeros(...), torch.zeros_like(h), dtype=u_t.dtype)")


def _accepts(function, args: tuple, kwargs: dict) -> bool:
    """Whether ``function`` takes these arguments (a required one left out is not counted: a cell's
    own options may be required keywords); nothing is called."""
    try:
        inspect.signature(function).bind_partial(*args, **kwargs)
    except TypeError:
        return False
    except ValueError:                                         # no signature to read (a builtin)
        return True
    return True

