"""The correctness guard: a configuration is timed only if its fast path computes what the
reference loop computes.

Before a layer (``backend="auto"``) is timed, it and its reference twin (same weights,
``backend="reference"``, autograd through the step loop; ``CellSpec.reference_twin``) run the same
input. Their outputs, and for training the gradients of ``output.sum()`` with respect to every
weight, must agree within ``tolerance``, measured as

    error = max |fast − reference| / max(1, max |reference|)

(absolute for values of order one, relative for large ones such as summed weight gradients).

Both run in the mode they are in (training, for a training step) and, given a ``seed``, each from
that random seed, so that layers which draw masks (zoneout, recurrent and input dropout) draw the same
ones and the comparison stays exact.

Some configurations amplify rounding: the LSTM with layer norm at its default initialisation is
chaotic on random input, and over 200 steps the float32 reference loop itself ends 1e-1 away from the
same loop in float64. No float32 computation can then be compared at full length. ``steps_float32_follows``
finds how many leading steps the float32 reference stays within rounding of float64; the guard then
compares over those steps (and says so) instead of refusing a path that only rounds differently.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Check:
    passed: bool
    error: float          # the largest error over the output and the gradients (nan if not run)
    reason: str = ""      # why it failed
    scope: str = ""       # what was compared, when less than the whole input ("first 40 of 200 steps")

    @property
    def mark(self) -> str:
        return "✓" if self.passed else "✗"

    def describe(self) -> str:
        if self.passed:
            scope = (f" over the {self.scope}, where float32 rounding has not grown: the reference loop "
                     "leaves float64's after them") if self.scope else ""
            return f"✓ fast == reference (max error {self.error:.1e}{scope})"
        return f"✗ not timed: {self.reason}"


def check_against_reference(fast: nn.Module, reference: nn.Module, run: Callable[[nn.Module], Tensor], *,
                            tolerance: float = 1e-4, gradients: bool = True,
                            run_reference: Callable[[nn.Module], Tensor] | None = None,
                            seed: int | None = None) -> Check:
    """Compare ``run(fast)`` with ``run_reference(reference)`` (default ``run``; each returns the
    output tensor) and, with ``gradients``, the gradients of the output's sum with respect to every
    trained parameter, by name. With ``seed``, each run starts from that random seed (the caller's
    random state is left as it was)."""
    try:
        with torch.set_grad_enabled(gradients):
            results = [_output_and_gradients(fast, run, gradients, seed),
                       _output_and_gradients(reference, run_reference or run, gradients, seed)]
    except Exception as error:                  # a fast path that raises is refused, with the reason
        return Check(False, float("nan"), f"raised {type(error).__name__}: {' '.join(str(error).split())}")
    (out, grads), (ref_out, ref_grads) = results
    if out.shape != ref_out.shape:
        return Check(False, float("nan"), f"output shape {tuple(out.shape)}, reference {tuple(ref_out.shape)}")
    errors = {"output": _error(out, ref_out)}
    errors.update({f"gradient of {name}": _error(grads[name], ref_grads[name]) for name in ref_grads})
    worst = max(errors, key=lambda k: errors[k])
    if not errors[worst] <= tolerance:                                          # catches nan too
        return Check(False, errors[worst], f"{worst} differs from the reference loop by "
                                           f"{errors[worst]:.1e} > {tolerance:.0e}")
    return Check(True, errors[worst])


def steps_float32_follows(reference: nn.Module, exact: nn.Module, x: Tensor, tolerance: float) -> int:
    """How many leading steps of x (T, B, I) the float32 ``reference`` computes within tolerance / 10
    of ``exact``, the same layer in float64 (outputs compared step by step, absolutely: they are of
    order one). T when it follows all the way."""
    with torch.no_grad():
        ours, truth = reference(x)[0], exact(x.double())[0]                    # (T, B, O) each
    apart = (ours.double() - truth).abs().flatten(1).amax(1) > tolerance / 10  # (T,)
    return int(apart.float().argmax()) if bool(apart.any()) else x.shape[0]


def _output_and_gradients(module: nn.Module, run: Callable[[nn.Module], Tensor], gradients: bool,
                          seed: int | None):
    named = {name: p for name, p in module.named_parameters() if p.requires_grad}
    for p in named.values():
        p.grad = None
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        output = run(module)
    if not gradients:
        return output.detach(), {}
    if not named:
        raise ValueError("the layer has no trained parameters, so a training step is not defined")
    output.sum().backward()
    grads = {name: p.grad if p.grad is not None else torch.zeros_like(p) for name, p in named.items()}
    for p in named.values():
        p.grad = None
    return output.detach(), grads


def _error(value: Tensor, reference: Tensor) -> float:
    if value.shape != reference.shape:
        return float("inf")
    scale = max(1.0, float(reference.abs().max())) if reference.numel() else 1.0
    return float((value - reference).abs().max()) / scale if value.numel() else 0.0
