"""Ready-made comparisons for the command line and the docs: cells named by a short spec, a shared
random input, and the decay of the gradient printed as a table.

A cell spec is ``NAME[:OPTION]...[@RADIUS]``:

* ``NAME`` is a registered cell (``rnnkit.cells.available()``) or a cell of one's own as
  ``package.module:ClassName`` (``rnnkit.cells.resolve``);
* each ``:OPTION`` is either ``key=value``, one of the cell's own options (``lstm:forget_bias=1``,
  ``esn:leak_rate=0.3``) or one of the layer options of ``LAYER_OPTIONS``, which ``rnnkit.Recurrent``
  applies around any cell (``lstm:zoneout=0.1``, ``gru:recurrent_dropout=0.25``), or a bare word,
  which is the cell's ``variant`` (``lstm:cifg``, ``gru:original``) or, for a cell without
  variants, its ``nonlinearity`` (``elman:relu``);
* ``@RADIUS`` rescales the recurrent matrix U (``weight_hh``, square) to that spectral radius
  (largest |eigenvalue|), e.g. ``elman@3``: the large weights with which an Elman network explodes.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping

import torch
from torch import Tensor

from ..cells import cell_options
from ..layers import Recurrent
from .gates import gate_activity
from .gradient_flow import GradientFlow, gradient_flow

DEFAULT_DISTANCES = (1, 10, 50, 100, 200, 500, 1000, 2000, 5000)
# Options of rnnkit.Recurrent (not of the cell) that a spec may set: the per-sequence and per-step
# randomness of training, which the layer applies around any cell.
LAYER_OPTIONS = ("input_dropout", "recurrent_dropout", "zoneout")


def parse_cell_spec(spec: str) -> tuple[str, dict[str, object], float | None]:
    """``"elman:relu@3"`` -> ``("elman", {"nonlinearity": "relu"}, 3.0)``. Checks the cell name and
    its options; raises ValueError with the reason. The options are the cell's and the layer's
    (``LAYER_OPTIONS``) in one dict, as ``rnnkit.Recurrent(name, I, H, **options)`` takes them."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a cell spec must be a non-empty string like 'lstm:cifg', got {spec!r}")
    body, radius = spec.strip(), None
    if "@" in body:
        body, radius_text = body.rsplit("@", 1)
        try:
            radius = float(radius_text)
        except ValueError:
            raise ValueError(f"cell spec {spec!r}: the spectral radius after '@' must be a number, "
                             f"got {radius_text!r}") from None
        if not (math.isfinite(radius) and radius > 0):
            raise ValueError(f"cell spec {spec!r}: the spectral radius must be positive, got {radius_text}")
    name, *words = body.split(":")
    if "." in name and words:                       # package.module:ClassName, a cell of one's own
        name, words = f"{name}:{words[0]}", words[1:]
    try:
        accepted = cell_options(name)               # raises "unknown cell ...; available cells: ..."
    except TypeError as error:                      # a class that breaks the cell contract
        raise ValueError(f"cell spec {spec!r}: {error}") from None
    options: dict[str, object] = {}
    for word in words:
        if "=" in word:
            key, value = word.split("=", 1)
            options[key] = _parse_value(value)
        elif "variant" in accepted:
            options["variant"] = word
        elif "nonlinearity" in accepted:
            options["nonlinearity"] = word
        else:
            raise ValueError(f"cell spec {spec!r}: cell {name!r} has no variant or nonlinearity for "
                             f"{word!r}; give its options as key=value ({', '.join(accepted)})")
    unknown = sorted(set(options) - set(accepted) - set(LAYER_OPTIONS))
    if unknown:
        raise ValueError(f"cell spec {spec!r}: cell {name!r} has no option {', '.join(map(repr, unknown))}; "
                         f"it takes: {', '.join(accepted) or 'no options'}; the layer takes: "
                         f"{', '.join(LAYER_OPTIONS)}")
    return name, options, radius


def build_layer(spec: str, input_size: int, hidden_size: int, *, seed: int = 0,
                dtype: torch.dtype = torch.float64) -> Recurrent:
    """A single-layer ``Recurrent`` for ``spec``, initialised from ``seed`` (without touching the
    global random state), with U rescaled when the spec has ``@RADIUS``."""
    name, options, radius = parse_cell_spec(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = Recurrent(name, input_size, hidden_size, dtype=dtype, **options)
    if radius is not None:
        set_spectral_radius(layer, radius, spec)
    return layer


def set_spectral_radius(layer: Recurrent, radius: float, spec: str = "") -> None:
    """U ← U · radius / ρ(U) for the layer's recurrent matrix U (``weight_hh``, square)."""
    U = layer.cell_params(0).get("weight_hh")
    if U is None or U.dim() != 2 or U.shape[0] != U.shape[1]:
        shape = "none" if U is None else f"shape {tuple(U.shape)}"
        raise ValueError(f"cell spec {spec or layer.cell_name!r}: '@radius' needs a square recurrent "
                         f"matrix weight_hh (elman, jordan, residual, esn), cell {layer.cell_name!r} "
                         f"has {shape}")
    with torch.no_grad():
        current = torch.linalg.eigvals(U.double()).abs().max()
        U.mul_(radius / float(current))


def random_input(length: int, input_size: int, batch_size: int = 1, *, seed: int = 0,
                 dtype: torch.dtype = torch.float64) -> Tensor:
    """x ~ N(0, 1) of shape (T, B, I), from its own generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(length, batch_size, input_size, generator=generator, dtype=dtype)


def compare_gradient_flow(specs: Iterable[str], *, length: int = 200, hidden_size: int = 32,
                          input_size: int = 8, batch_size: int = 8, seed: int = 0,
                          dtype: torch.dtype = torch.float64) -> dict[str, GradientFlow]:
    """``gradient_flow`` of every cell in ``specs`` on one shared input (``random_input``), each
    layer initialised from the same seed; keyed by spec. float64 by default, so that norms down
    to 1e-300 (a tanh Elman network 200 steps back) stay representable."""
    specs = list(specs)
    if not specs:
        raise ValueError("give at least one cell spec")
    repeated = sorted({s for s in specs if specs.count(s) > 1})
    if repeated:
        raise ValueError(f"cell spec(s) given twice: {', '.join(repeated)}")
    layers = {spec: build_layer(spec, input_size, hidden_size, seed=seed, dtype=dtype) for spec in specs}
    x = random_input(length, input_size, batch_size, seed=seed, dtype=dtype)    # (T, B, I)
    return {spec: gradient_flow(layer, x) for spec, layer in layers.items()}


def gates_of(spec: str, *, length: int = 100, hidden_size: int = 16, input_size: int = 8,
             seed: int = 0, dtype: torch.dtype = torch.float64) -> dict[str, Tensor]:
    """``gate_activity`` of the cell ``spec`` on one random sequence (T, I); each gate (T, H)."""
    layer = build_layer(spec, input_size, hidden_size, seed=seed, dtype=dtype)
    x = random_input(length, input_size, seed=seed, dtype=dtype)[:, 0]         # (T, I)
    return gate_activity(layer, x)


def decay_table(results: Mapping[str, GradientFlow], distances: Iterable[int] | None = None,
                fit: tuple[int, int] = (10, 100)) -> str:
    """A plain-text table: ‖∂L/∂h_k‖ at a few distances d = T − k per cell, and the per-step
    factor ρ of a geometric fit (``GradientFlow.rate``) over distances ``fit``."""
    T = min(int(r.lengths.max()) for r in results.values())
    if distances is None:
        distances = [d for d in DEFAULT_DISTANCES if d < T - 1] + [T - 1]
    distances = [d for d in distances if 0 <= d < T]
    first, last = fit[0], min(fit[1], T - 1)
    if last - first < 1:
        first, last = 1, T - 1
    width = max(12, *(len(spec) + 2 for spec in results))
    header = "cell".ljust(width) + "".join(f"d={d}".rjust(11) for d in distances) + "rho/step".rjust(11)
    lines = [f"|dL/dh_k| at distance d = T - k (mean over sequences); rho = per-step factor "
             f"fitted over d = {first}..{last}", header]
    for spec, result in results.items():
        by_d = result.by_distance()
        try:
            rho = f"{result.rate(first, last):.3f}"
        except ValueError:              # every norm in the range underflowed to 0
            rho = "n/a"
        lines.append(spec.ljust(width) + "".join(f"{float(by_d[d]):11.2e}" for d in distances)
                     + rho.rjust(11))
    return "\n".join(lines)


def _parse_value(text: str):
    """An option's value from a spec: int, float, true/false, none, or the text itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
