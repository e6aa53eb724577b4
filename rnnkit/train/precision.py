"""How a run computes, by the names of Lightning's ``Trainer(precision=...)``.

* ``"32"``: float32 throughout (the default).
* ``"64"``: the weights and the batches' floating-point tensors in float64 (gradient checks, studies
  of rounding); integer tensors (token ids, lengths) stay as they are.
* ``"bf16-mixed"``: the forward pass and the loss under ``torch.autocast(dtype=torch.bfloat16)``: the
  matrix products (``nn.Linear``, ``matmul``) in bfloat16, the losses, softmax and reductions in
  float32, as autocast's op lists decide; the weights, their gradients and the optimiser's state stay
  float32, and ``backward`` runs outside autocast. bfloat16 has float32's exponent range, so the loss
  needs no scaling. On the CPU and on GPUs with bfloat16 (Ampere and later).
* ``"16-mixed"``: the same with float16, whose range is narrow: the loss is multiplied by a scale
  before ``backward`` and the gradients divided by it before clipping and the step
  (``torch.amp.GradScaler``); a step whose gradients overflowed is skipped and the scale halved.
  CUDA only (on the CPU: ``"bf16-mixed"``).

The trainer evaluates on the dev batches under the same autocast as it trains (as Lightning does).
"""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch
from torch import Tensor

PRECISIONS = ("32", "64", "bf16-mixed", "16-mixed")
_AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def check_precision(name: str, device: torch.device) -> None:
    """Raise ``ValueError`` for an unknown precision or one that ``device`` cannot compute in."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {name!r}")
    if name == "16-mixed" and device.type != "cuda":
        raise ValueError(f"precision '16-mixed' (float16 with a gradient scaler) needs a CUDA device, got "
                         f"{device.type}; on the CPU use precision 'bf16-mixed' (--precision bf16-mixed)")
    if name == "bf16-mixed" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision 'bf16-mixed': {device} has no bfloat16 (it needs an Ampere GPU or "
                         "later); use precision '16-mixed'")


class Precision:
    """A run's precision on its device: the autocast context, and backward and the optimiser step with
    the gradient scaler where there is one.

    ``dtype``: what the weights and the batches' floats are converted to (float64 for ``"64"``);
    None: leave them as they are.
    """

    def __init__(self, name: str, device: torch.device) -> None:
        check_precision(name, device)
        self.name, self.device = name, device
        self.dtype = torch.float64 if name == "64" else None
        self.scaler = torch.amp.GradScaler(device.type) if name == "16-mixed" else None

    def autocast(self) -> ContextManager:
        """The context of the forward pass and the loss (nothing for ``"32"`` and ``"64"``)."""
        dtype = _AUTOCAST_DTYPES.get(self.name)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def backward(self, loss: Tensor) -> None:
        """``loss.backward()``, of the scaled loss under ``"16-mixed"``."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the scale, so that clipping and the logged norm see the true ones."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimiser's step; under ``"16-mixed"`` skipped where the gradients overflowed, and the scale
        updated."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict:
        """The gradient scaler's state (numbers only), or {} where there is none."""
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
