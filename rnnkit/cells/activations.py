"""Nonlinearities that cells accept by name, and the positive map g of minGRU/minLSTM."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import check_choice

NONLINEARITIES: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "identity": lambda a: a,
}


def nonlinearity(name: str, argument: str = "nonlinearity",
                 choices: tuple[str, ...] = ("tanh", "relu", "sigmoid")) -> Callable[[Tensor], Tensor]:
    """Look up an activation by name; ``argument`` names the option in the error message."""
    check_choice(argument, name, choices)
    return NONLINEARITIES[name]


def positive_g(a: Tensor) -> Tensor:
    """g(a) = a + 1/2 for a ≥ 0, σ(a) otherwise: continuous, positive (Feng et al. 2024, §3.1)."""
    return torch.where(a >= 0, a + 0.5, torch.sigmoid(a))


def log_positive_g(a: Tensor) -> Tensor:
    """log g(a), computed without taking the log of a small number."""
    return torch.where(a >= 0, torch.log(F.relu(a) + 0.5), -F.softplus(-a))


# f'(a) written with the activation's output y = f(a), which is what a backward pass has saved.
DERIVATIVES_FROM_OUTPUT: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": lambda y: 1 - y * y,
    "sigmoid": lambda y: y * (1 - y),
    "relu": lambda y: (y > 0).to(y.dtype),
    "identity": lambda y: torch.ones_like(y),
}


def positive_g_derivative(a: Tensor) -> Tensor:
    """g'(a): 1 for a ≥ 0, σ(a)(1 − σ(a)) otherwise."""
    s = torch.sigmoid(a)
    return torch.where(a >= 0, torch.ones_like(a), s * (1 - s))
