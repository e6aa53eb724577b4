"""Where a run trains: ``TrainConfig.device`` → a ``torch.device``, refused at once where it cannot be had.

Names: ``"cpu"``, ``"cuda"`` (this process's GPU: ``cuda:LOCAL_RANK`` under torchrun, else
``cuda:0``), ``"cuda:N"``, ``"auto"`` (``"cuda"`` where ``torch.cuda.is_available()``, else
``"cpu"``) and None: keep the model where it is, except under torchrun with GPUs, where each
process takes ``cuda:LOCAL_RANK``. Checkpoints hold CPU tensors whatever the device, so a run
trained on one device resumes, evaluates and predicts on another.
"""
from __future__ import annotations

import re

import torch

DEVICE_NAMES = ("cpu", "cuda", "cuda:N", "auto")
_NAME = re.compile(r"cpu|cuda|cuda:\d+|auto")


def check_device_name(name: str | None, option: str = "device") -> None:
    """Raise ``ValueError`` unless ``name`` is None or one of ``DEVICE_NAMES`` (N a GPU's index)."""
    if name is not None and not (isinstance(name, str) and _NAME.fullmatch(name)):
        raise ValueError(f"{option} must be one of {', '.join(map(repr, DEVICE_NAMES))}, got {name!r}")


def resolve_device(name: str | None, local_rank: int | None = None) -> torch.device | None:
    """The device that ``name`` asks for; None for None (the caller's default: the model's device, or
    ``DistributedContext.default_device``).

    ``local_rank``: this process's GPU under torchrun (None in a single process). Asking for CUDA
    where there is none, or for a GPU index past the last, raises ``ValueError`` in one line.
    """
    check_device_name(name)
    if name is None:
        return None
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available on this machine "
                         "(torch.cuda.is_available() is False); use device 'cpu' (--device cpu)")
    device = torch.device(name)
    if device.index is None:
        device = torch.device("cuda", local_rank or 0)
    if device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                         f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device
