"""Rows measured against the row of the same table that they build on.

* bfloat16 autocast (``+bf16``) against the same row in float32, without a target;
* a layer option (zoneout, recurrent or input dropout) or the cell's layer norm against the same
  cell without it (``lstm:zoneout=0.1`` against ``lstm:standard``, torch's kernel): target
  ``TIME_TARGET``;
* a cell of one's own (``package.module:ClassName``) against the built-in GRU, ``gru:standard``: the
  benchmark's user-defined cell (``USER_CELL``) has no more arithmetic than the GRU, so its target is
  ``TIME_TARGET``; another user's cell is compared without a target.

The ratio is a time ratio, the row's time / its base row's (< 1: faster than the base), read from the
same rounds as every other figure of the table.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import TIME_TARGET, USER_CELL
from .subjects import CellSpec

GRU = CellSpec.parse("gru:standard")


@dataclass(frozen=True)
class Comparison:
    base: CellSpec | None          # the base row's spec; None when the table has no such row
    target: float | None           # the largest time ratio aimed at, or None
    wanted: str                    # what the base row is, for a table that lacks it


def compared(spec: CellSpec) -> bool:
    """Whether ``spec``'s row is compared with another row (not one of the plain rows of rnnkit's
    cells in float32, which are compared with torch.nn only)."""
    return _rule(spec) is not None


def comparison_of(spec: CellSpec, specs: list[CellSpec]) -> Comparison | None:
    """The row of ``specs`` that ``spec`` is compared with, its target, or None for a row compared
    only with torch.nn."""
    rule = _rule(spec)
    if rule is None:
        return None
    key, target, wanted = rule
    base = next((s for s in specs if s is not spec and s.configuration() == key), None)
    return Comparison(base, target, wanted)


def _rule(spec: CellSpec) -> tuple[tuple, float | None, str] | None:
    """The base row's configuration, the target and the base row in words, by the rules above."""
    if spec.autocast is not None:
        return spec.configuration(float32=True), None, "the same row in float32"
    if spec.layer_options or spec.options.get("layer_norm"):
        return spec.configuration(drop_layer_options=True), TIME_TARGET, "the same cell without layer options"
    if spec.user_defined:
        return GRU.configuration(), TIME_TARGET if spec.name == USER_CELL else None, GRU.text
    return None
