"""Small pieces that several cells' equations share."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Params


def affine(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x Wᵀ + b over the last dimension (``bias`` may be None)."""
    if bias is None:
        return x @ weight.T
    if x.dim() == 2:
        return torch.addmm(bias, x, weight.T)
    return x @ weight.T + bias


def layer_norm(a: Tensor, p: Params, prefix: str, eps: float = 1e-5) -> Tensor:
    """LN(a; α, β) over the last dimension (Ba et al. 2016), with gain ``{prefix}_weight`` and
    shift ``{prefix}_bias`` from ``p``."""
    return F.layer_norm(a, a.shape[-1:], p[f"{prefix}_weight"], p[f"{prefix}_bias"], eps)


def init_layer_norm(p: Params) -> None:
    """Gains 1 and shifts 0 for every ``ln_*`` tensor (the usual start for layer normalisation)."""
    with torch.no_grad():
        for name, tensor in p.items():
            if name.startswith("ln_"):
                tensor.fill_(1.0 if name.endswith("_weight") else 0.0)


def identity_recurrence(p: Params) -> None:
    """U = I and zero biases: the IRNN initialisation of Le et al. 2015."""
    with torch.no_grad():
        weight_hh = p["weight_hh"]
        weight_hh.copy_(torch.eye(*weight_hh.shape, dtype=weight_hh.dtype))
        for name in ("bias_ih", "bias_hh"):
            if name in p:
                p[name].zero_()


def masked(h: Tensor, recurrent_mask: Tensor | None) -> Tensor:
    """h ⊙ m for variational recurrent dropout (Gal & Ghahramani 2016), or h when no mask."""
    return h if recurrent_mask is None else h * recurrent_mask


def summed_outer(d: Tensor, x: Tensor) -> Tensor:
    """Σ over all leading dimensions of d xᵀ: (…, G) and (…, P) -> (G, P), as one matrix product.

    This is how a backward pass forms dU = Σ_t δa_tᵀ h_{t−1} over all T·B rows at once."""
    return d.reshape(-1, d.shape[-1]).T @ x.reshape(-1, x.shape[-1])


def previous_steps(every_step: Tensor, initial: Tensor) -> Tensor:
    """The value before each step: (T, B, S) from every step's value (T, B, S) and the initial one
    (B, S), i.e. [initial, step 1, …, step T−1] (h_{t−1} for every t)."""
    return torch.cat([initial.unsqueeze(0), every_step[:-1]])


def summed(d: Tensor) -> Tensor:
    """Σ over all leading dimensions: (…, G) -> (G,), a bias's gradient."""
    return d.reshape(-1, d.shape[-1]).sum(0)
