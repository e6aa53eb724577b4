"""Cells by name: ``create("lstm", 10, 20, variant="cifg")`` and ``available()``."""
from __future__ import annotations

import inspect
from typing import Callable

from .base import RecurrentCell

_REGISTRY: dict[str, type[RecurrentCell]] = {}


def register(name: str) -> Callable[[type[RecurrentCell]], type[RecurrentCell]]:
    """Class decorator: make a cell available under ``name``."""
    def add(cls: type[RecurrentCell]) -> type[RecurrentCell]:
        if name in _REGISTRY:
            raise ValueError(f"a cell named {name!r} is already registered ({_REGISTRY[name].__name__})")
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls
    return add


def available() -> list[str]:
    """Names of all registered cells, sorted."""
    return sorted(_REGISTRY)


def cell_class(name) -> type[RecurrentCell]:
    if not isinstance(name, str):
        raise TypeError(f"cell must be a cell name (str), got {type(name).__name__}")
    if name not in _REGISTRY:
        raise ValueError(f"unknown cell {name!r}; available cells: {', '.join(available())}")
    return _REGISTRY[name]


def cell_options(name: str) -> list[str]:
    """The keyword options a cell's constructor takes (besides the sizes)."""
    signature = inspect.signature(cell_class(name).__init__)
    skip = {"self", "input_size", "hidden_size", "own_parameters", "device", "dtype"}
    return [p for p in signature.parameters if p not in skip]


def create(name: str, input_size: int, hidden_size: int, **options) -> RecurrentCell:
    """Build the cell registered as ``name``; an option the cell does not take is an error."""
    cls = cell_class(name)
    accepted = cell_options(name) + ["own_parameters", "device", "dtype"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(f"cell {name!r} does not take option(s) {', '.join(map(repr, unknown))}; "
                        f"it takes: {', '.join(cell_options(name)) or 'no options'}")
    return cls(input_size, hidden_size, **options)
