r"""Gradient clipping that records the norm it saw, and weight decay through the optimiser.

Recurrent networks have exploding gradients (Bengio, Simard & Frasconi 1994); Pascanu, Mikolov &
Bengio 2013 ("On the difficulty of training recurrent neural networks", arXiv:1211.5063) rescale
the whole gradient g = (∂L/∂θ_1, …, ∂L/∂θ_P) when its norm passes a threshold c:

    ‖g‖ = (Σ_p ‖g_p‖_q^q)^{1/q}             (q = ``norm_type``; q = ∞: max_p ‖g_p‖_∞)
    g ← g · min(1, c / ‖g‖)                  clipping by norm (the direction is kept)
    g_i ← min(max(g_i, −v), v)               clipping by value, entry by entry (the direction changes)

``GradientClipper`` does both with ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_`` and
records ‖g‖ *before* clipping in ``history``: a norm that keeps hitting c says the threshold, the
learning rate or the network is wrong; spikes in it are the exploding gradients themselves.
With both limits, the norm is clipped first, then the values; the result satisfies both.

Weight decay belongs to the optimiser, not to the gradient. ``torch.optim.SGD(params, lr,
weight_decay=λ)`` adds λθ to the gradient (L2 regularisation, θ ← θ − η(g + λθ));
``torch.optim.AdamW(params, lr, weight_decay=λ)`` decays the weights directly,
θ ← θ − ηλθ − η·adam(g) (Loshchilov & Hutter 2019, arXiv:1711.05101), which with Adam is not
the same as adding λθ to g (``torch.optim.Adam(weight_decay=λ)`` does the latter). Biases and the gains and
shifts of normalisation layers are usually not decayed; ``weight_decay_groups`` builds the two
parameter groups::

    optimizer = torch.optim.AdamW(weight_decay_groups(model, 0.01), lr=1e-3)
    clipper = GradientClipper(max_norm=1.0)
    loss.backward(); clipper(model.parameters()); optimizer.step()
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor, nn

_NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
                *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()))


class GradientClipper:
    """Clip gradients by total norm and/or by value, recording the total norm before clipping.

    Args:
        max_norm: c, the largest total norm allowed; None: no clipping by norm.
        max_value: v, the largest absolute value of a gradient entry; None: no clipping by value.
        norm_type: q of the total norm (2 by default; ``math.inf`` for the largest entry).
        error_if_nonfinite: raise if the total norm is nan or inf (instead of clipping with it).

    Call: ``norm = clipper(parameters)``

    * parameters: an iterable of tensors; their ``.grad`` is clipped in place.
    * norm: the total norm before clipping (a float), also appended to ``clipper.history``. With
      neither limit the call only measures it.
    """

    def __init__(self, max_norm: float | None = None, max_value: float | None = None, *,
                 norm_type: float = 2.0, error_if_nonfinite: bool = False) -> None:
        _check_positive("max_norm", max_norm, allow_none=True)
        _check_positive("max_value", max_value, allow_none=True)
        _check_positive("norm_type", norm_type, allow_none=False, allow_inf=True)
        self.max_norm = None if max_norm is None else float(max_norm)
        self.max_value = None if max_value is None else float(max_value)
        self.norm_type = float(norm_type)
        self.error_if_nonfinite = bool(error_if_nonfinite)
        self.history: list[float] = []

    def __call__(self, parameters: Iterable[Tensor] | Tensor) -> float:
        if isinstance(parameters, Tensor):
            parameters = [parameters]
        parameters = [p for p in parameters if p.grad is not None]
        if self.max_norm is not None:
            # clip_grad_norm_ returns the total norm of the gradients as they were before clipping
            norm = float(torch.nn.utils.clip_grad_norm_(parameters, self.max_norm, self.norm_type,
                                                        error_if_nonfinite=self.error_if_nonfinite))
        else:
            norm = total_norm([p.grad for p in parameters], self.norm_type)
            if self.error_if_nonfinite and not math.isfinite(norm):
                raise RuntimeError(f"the total norm of order {self.norm_type} of the gradients is {norm}")
        if self.max_value is not None:
            torch.nn.utils.clip_grad_value_(parameters, self.max_value)
        self.history.append(norm)
        return norm

    def __repr__(self) -> str:
        return (f"GradientClipper(max_norm={self.max_norm}, max_value={self.max_value}, "
                f"norm_type={self.norm_type})")


def total_norm(tensors: Iterable[Tensor], norm_type: float = 2.0) -> float:
    """‖g‖_q over all tensors together: the q-norm of the tensors' own q-norms (0 for none)."""
    norms = [torch.linalg.vector_norm(t.detach(), norm_type).double().cpu() for t in tensors]
    if not norms:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack(norms), norm_type))


def weight_decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimiser parameter groups: weights decayed by ``weight_decay``, the rest not.

    Not decayed: biases (a parameter whose name contains ``bias``), the gains and shifts of
    normalisation (rnnkit's ``ln_*`` tensors, and every parameter of a torch norm layer).
    Decayed: everything else that requires a gradient — weight matrices, IndRNN's recurrent
    vector, learned initial states, embeddings. Empty groups are left out.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) \
            or not math.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    decay, no_decay = [], []
    for module_name, module in model.named_modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad:
                continue
            excluded = "bias" in name or name.startswith("ln_") or isinstance(module, _NORM_LAYERS)
            (no_decay if excluded else decay).append(parameter)
    # named_modules visits a shared module once, but a parameter shared by two modules twice
    decay = _unique(decay)
    no_decay = [p for p in _unique(no_decay) if all(p is not q for q in decay)]
    if not decay and not no_decay:
        raise ValueError("model has no parameters that require a gradient")
    groups = [{"params": decay, "weight_decay": float(weight_decay)},
              {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def _unique(parameters: list[Tensor]) -> list[Tensor]:
    seen, unique = set(), []
    for p in parameters:
        if id(p) not in seen:
            seen.add(id(p))
            unique.append(p)
    return unique


def _check_positive(name: str, value, *, allow_none: bool, allow_inf: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
            or value <= 0 or (math.isinf(value) and not allow_inf):
        expected = "a positive number" + (" or math.inf" if allow_inf else "") \
            + (" or None" if allow_none else "")
        raise ValueError(f"{name} must be {expected}, got {value!r}")
