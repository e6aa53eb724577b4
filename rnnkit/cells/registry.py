"""Cells by name: ``create("lstm", 10, 20, variant="cifg")``, ``available()``, and cells of one's own.

Wherever a cell is asked for (``create``, ``rnnkit.Recurrent``, ``rnnkit train --cell``) it may be
given as

* a registered name: ``"lstm"`` (``available()``; a class joins with ``@register("name")``);
* ``"package.module:ClassName"``: the module is imported and the class taken from it, so a run trained
  with ``--cell mypkg.cells:MyCell`` saves that text and is rebuilt from it (the module must be
  importable, on PYTHONPATH or installed, wherever the run is loaded);
* the name of an entry point in the group ``rnnkit.cells`` of an installed package
  (``[project.entry-points."rnnkit.cells"] mycell = "mypkg.cells:MyCell"``), loaded the first time
  the name is asked for;
* a ``RecurrentCell`` subclass itself.

Every class is checked against the cell contract (``contract.py``) when it is registered or first
used, and every cell ``create`` builds once it is built.
"""
from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points
from typing import Callable, Union

from .base import RecurrentCell
from .contract import check_class, check_instance

ENTRY_POINT_GROUP = "rnnkit.cells"
CellSpec = Union[str, type]

_REGISTRY: dict[str, type[RecurrentCell]] = {}
_CHECKED: set[type] = set()                 # classes that passed check_class


def register(name: str) -> Callable[[type[RecurrentCell]], type[RecurrentCell]]:
    """Class decorator: make a cell available under ``name`` (the class is checked against the
    contract here, so that a missing method fails at import time, not at the first batch)."""
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"a cell's name must be a non-empty string without ':' (which marks "
                         f"package.module:ClassName), got {name!r}")

    def add(cls: type[RecurrentCell]) -> type[RecurrentCell]:
        _checked(cls, f"rnnkit.cells.register({name!r})")
        if name in _REGISTRY and _qualified(_REGISTRY[name]) != _qualified(cls):    # not a module re-imported
            raise ValueError(f"a cell named {name!r} is already registered ({_REGISTRY[name].__name__})")
        _REGISTRY[name] = cls
        if "registry_name" not in cls.__dict__:
            cls.registry_name = name
        return cls
    return add


def available() -> list[str]:
    """Names of all registered cells, sorted (entry points count once loaded)."""
    return sorted(_REGISTRY)


def resolve(cell: CellSpec) -> type[RecurrentCell]:
    """The cell class that ``cell`` stands for: a registered name, ``"package.module:ClassName"``, an
    entry point's name in the group ``rnnkit.cells``, or a ``RecurrentCell`` subclass."""
    if isinstance(cell, type):
        return _checked(cell, "rnnkit.cells.resolve")
    if not isinstance(cell, str):
        raise TypeError(f"cell must be a cell name (str), got {type(cell).__name__}; a cell is a registered "
                        "name, 'package.module:ClassName' or a RecurrentCell subclass")
    if cell in _REGISTRY:
        return _REGISTRY[cell]
    if ":" in cell:
        return _checked(_import_class(cell), f"cell {cell!r}")
    loaded = _load_entry_point(cell)
    if loaded is not None:
        return loaded
    raise ValueError(f"unknown cell {cell!r}; available cells: {', '.join(available())} "
                     f"(a cell of your own: give it as package.module:ClassName, or register it)")


cell_class = resolve


def cell_options(name: CellSpec) -> list[str]:
    """The keyword options a cell's constructor takes (besides the sizes)."""
    signature = inspect.signature(resolve(name).__init__)
    skip = {"self", "input_size", "hidden_size", "own_parameters", "device", "dtype"}
    return [p.name for p in signature.parameters.values()
            if p.name not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def create(name: CellSpec, input_size: int, hidden_size: int, **options) -> RecurrentCell:
    """Build the cell ``name`` stands for (see ``resolve``); an option the cell does not take is an error."""
    cls = resolve(name)
    label = name if isinstance(name, str) else cls.__name__
    takes_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())
    accepted = cell_options(cls) + ["own_parameters", "device", "dtype"]
    unknown = sorted(set(options) - set(accepted))
    if unknown and not takes_any:
        raise TypeError(f"cell {label!r} does not take option(s) {', '.join(map(repr, unknown))}; "
                        f"it takes: {', '.join(cell_options(cls)) or 'no options'}")
    cell = cls(input_size, hidden_size, **options)
    check_instance(cell)
    return cell


def _checked(cls, where: str) -> type[RecurrentCell]:
    if cls not in _CHECKED:
        check_class(cls, where, RecurrentCell)
        _CHECKED.add(cls)
    return cls


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _import_class(spec: str) -> type:
    """``"package.module:ClassName"`` → the class (``ClassName`` may be dotted: ``Outer.Inner``)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"cell {spec!r}: expected package.module:ClassName (both parts), e.g. mypkg.cells:MyCell")
    try:
        found = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cell {spec!r}: cannot import module {module_name!r} ({error}); is its folder on "
                         "PYTHONPATH, or its package installed?") from None
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ValueError(f"cell {spec!r}: module {module_name!r} ({getattr(found, '__file__', '?')}) "
                             f"has no {attribute!r}")
        found = getattr(found, part)
    return found


def _load_entry_point(name: str) -> type[RecurrentCell] | None:
    """The class that an installed package declares as ``name`` in the group ``rnnkit.cells``,
    registered under ``name`` (None where no package declares it)."""
    for point in entry_points(group=ENTRY_POINT_GROUP, name=name):
        try:
            cls = point.load()
        except Exception as error:                         # noqa: BLE001 - any failure of the plug-in
            raise ValueError(f"cell {name!r}: the entry point {point.value!r} (group {ENTRY_POINT_GROUP!r}) "
                             f"does not load: {type(error).__name__}: {error}") from None
        if name not in _REGISTRY:             # its module may have registered it itself
            register(name)(cls)
        return _REGISTRY[name]
    return None
