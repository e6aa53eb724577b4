"""Exceptions that are at once the type rnnkit raises and the type torch.nn raises for the same mistake.

rnnkit's layers check their arguments and say what was expected and what was given. Where
torch.nn.RNN/LSTM/GRU raise a different type for the same mistake, code written against torch.nn
catches torch's type while rnnkit's own callers catch rnnkit's; each class below derives from both,
so ``except RuntimeError`` and ``except ValueError`` (for example) both catch a ShapeError.
docs/cells.md, "Drop-in differences from torch.nn", lists where the messages differ.
"""
from __future__ import annotations


class ShapeError(ValueError, RuntimeError):
    """A tensor of the wrong shape for the layer: input features, state shape, an empty sequence
    (torch.nn: RuntimeError)."""


class DeviceError(ValueError, RuntimeError):
    """Input, state and weights on different devices (torch.nn: RuntimeError)."""


class DtypeError(TypeError, ValueError):
    """An input the weights cannot compute with: not floating point, or not the weights' dtype
    (torch.nn: ValueError)."""


class StateDtypeError(DtypeError, RuntimeError):
    """An initial state whose dtype is not the input's (torch.nn: RuntimeError, from its kernel's
    matrix product)."""


class ArgumentError(TypeError, ValueError):
    """A constructor argument torch.nn refuses with the other one of TypeError and ValueError:
    a num_layers that is not an int, a proj_size given to RNN or GRU."""
