"""Whole rnnkit models through ``torch.save(model, f)`` and ``torch.load(f, weights_only=True)``.

``torch.load`` with ``weights_only=True`` (torch's default since 2.6) rebuilds only what its
allowlist names. Importing rnnkit (which imports this module) adds, and nothing else:

* rnnkit's module classes (``rnnkit.layers``: ``Recurrent``, ``RNN``, ``LSTM``, ``GRU``, ...; the
  built-in cells, ``rnnkit.cells.available()``; the modules of ``rnnkit.models``) and the torch.nn
  modules they hold (``ModuleList``, ``Linear``, ``Embedding``, ``Dropout``, ``Identity``), each
  **rebuild-only**: the unpickler may make an instance without running its constructor and set its
  saved attributes (pickle's NEWOBJ then BUILD: all that ``torch.save`` writes for a module), but a
  file that calls the class (REDUCE: ``Recurrent("pkg.mod:Cell", 1, 1)`` would import the module the
  file names) is refused;
* ``blank_cell``: a cell keeps its nonlinearity as a function (``self.f = torch.tanh``), which pickle
  writes as ``getattr(torch._C._VariableFunctionsClass, "tanh")`` (``lambda a: a`` for "identity"
  does not pickle at all). ``getattr`` on the allowlist would open every attribute of every allowed
  object, so a built-in cell is pickled (``copyreg``) as ``blank_cell(class name, {attribute:
  nonlinearity name})`` plus its other attributes; ``blank_cell`` builds only the classes registered
  here and sets only the functions of ``rnnkit.cells.activations.NONLINEARITIES``.

A class of one's own (a cell, a model) joins with ``allow(MyClass)``. A process that has not imported
rnnkit cannot load a file holding rnnkit modules (the unpickler imports nothing); ``import rnnkit``
first. ``torch.serialization.clear_safe_globals()`` also clears rnnkit's entries; ``allow()`` with no
argument puts them back.
"""
from __future__ import annotations

import copyreg
import pickle

import torch
from torch import nn

from . import cells, layers, models
from .cells.activations import NONLINEARITIES
from .cells.base import RecurrentCell

# the torch.nn modules that rnnkit's layers and models hold
TORCH_MODULES: tuple[type[nn.Module], ...] = (nn.ModuleList, nn.Linear, nn.Embedding, nn.Dropout, nn.Identity)

_CELLS: dict[str, type[RecurrentCell]] = {}          # the cells that blank_cell builds, by qualified name
_PROXIES: dict[type, "_RebuildOnly"] = {}            # one per class: allow() twice adds nothing new


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class _RebuildOnly:
    """What the unpickler finds under a class's name: ``torch.load`` makes an instance with
    ``cls.__new__(cls, *args)`` (NEWOBJ), here the real class's ``__new__`` (no constructor); a call
    ``cls(*args)`` (REDUCE) would run the constructor with arguments taken from the file, and is refused."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.__new__ = self._new       # the unpickler looks __new__ up on what it holds: this object

    def _new(self, _proxy, *args):
        return self.cls.__new__(self.cls, *args)

    def __call__(self, *args, **kwargs):
        raise pickle.UnpicklingError(
            f"rnnkit.serialization: a file may rebuild {_qualified(self.cls)} from its saved attributes, "
            f"not call its constructor (got a call with {len(args)} argument(s))")


def blank_cell(name: str, nonlinearities: dict[str, str]) -> RecurrentCell:
    """An instance of the built-in cell class ``name`` (its qualified name), constructor not run,
    with each attribute of ``nonlinearities`` set to the function ``NONLINEARITIES[value]``; the
    unpickler then sets the cell's other attributes."""
    if name not in _CELLS:
        raise pickle.UnpicklingError(f"blank_cell: name must be one of rnnkit's cell classes "
                                     f"({', '.join(sorted(_CELLS))}), got {name!r}")
    if not isinstance(nonlinearities, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v in NONLINEARITIES for k, v in nonlinearities.items()):
        raise pickle.UnpicklingError(f"blank_cell: nonlinearities must map attribute names to one of "
                                     f"{sorted(NONLINEARITIES)}, got {nonlinearities!r}")
    cls = _CELLS[name]
    cell = cls.__new__(cls)
    for attribute, function in nonlinearities.items():
        cell.__dict__[attribute] = NONLINEARITIES[function]
    return cell


def _reduce_cell(cell: RecurrentCell):
    """pickle's and copy's recipe for a built-in cell: ``blank_cell`` with its nonlinearities by
    name, then its other attributes (``Module.__getstate__``)."""
    state = cell.__getstate__()
    named = {attribute: name for attribute, value in state.items()
             for name, function in NONLINEARITIES.items() if value is function}
    for attribute in named:
        del state[attribute]
    return blank_cell, (_qualified(type(cell)), named), state


def allow(*classes: type) -> None:
    """Let ``torch.load(f, weights_only=True)`` rebuild instances of ``classes`` (rebuild-only, see
    the module's docs); a ``RecurrentCell`` subclass is pickled through ``blank_cell`` from now on.
    With no argument: rnnkit's own classes, which importing rnnkit allows already."""
    for cls in classes or rnnkit_classes():
        if not isinstance(cls, type):
            raise TypeError(f"allow: classes must be classes, got {type(cls).__name__} ({cls!r})")
        if issubclass(cls, RecurrentCell):
            _CELLS[_qualified(cls)] = cls
            copyreg.pickle(cls, _reduce_cell)
        # under its own name the proxy (NEWOBJ); BUILD checks the instance's real type, which sits
        # under a name with a line break, which pickle's GLOBAL (one line) cannot ask for
        proxy = _PROXIES.setdefault(cls, _RebuildOnly(cls))
        torch.serialization.add_safe_globals([(proxy, _qualified(cls)),
                                              (cls, _qualified(cls) + "\n(rebuild-only)")])
    torch.serialization.add_safe_globals([blank_cell])


# BUILD hands the file's attributes to ``__setstate__``: a class is allowed only where that stores
# them (torch.nn.Module's) and at most resets a cache (Recurrent's), never where it acts on them
# (e.g. resolving a cell name, which may import the module a "pkg.mod:Cell" names)
_PLAIN_SETSTATE = (nn.Module.__setstate__, layers.Recurrent.__setstate__)


def rnnkit_classes() -> list[type]:
    """The classes importing rnnkit allows: its layers, built-in cells and models whose
    ``__setstate__`` only stores what it is given, and the torch.nn modules they hold."""
    found: list[type] = list(TORCH_MODULES)
    for module in (layers, models):
        found += [obj for obj in map(module.__dict__.get, module.__all__)
                  if isinstance(obj, type) and issubclass(obj, nn.Module)]
    found += [cells.cell_class(name) for name in cells.available()]
    return list(dict.fromkeys(cls for cls in found if cls in TORCH_MODULES or (
        cls.__module__.startswith("rnnkit.") and cls.__setstate__ in _PLAIN_SETSTATE)))


allow()
