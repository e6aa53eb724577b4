"""Checking and normalising what a recurrent layer is called with.

A mistake raises an exception that is both rnnkit's type and torch.nn's (``rnnkit.errors``): a wrong
shape a ShapeError (ValueError and RuntimeError), a wrong dtype a DtypeError (TypeError and
ValueError), tensors on different devices a DeviceError (ValueError and RuntimeError).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from ..engine import check_lengths
from ..errors import DeviceError, DtypeError, ShapeError, StateDtypeError


@dataclass
class SequenceBatch:
    """A call's input in the layer's working form: time-major, batched, with lengths."""
    x: Tensor                          # (T, B, I)
    lengths: Tensor | None             # (B,) int64 on the CPU, or None when every sequence is full
    batched: bool                      # False for an unbatched (T, I) input
    packed: PackedSequence | None      # the original PackedSequence, to pack the output alike


def read_input(x, lengths, input_size: int, batch_first: bool) -> SequenceBatch:
    """Turn a (T, B, I) / (B, T, I) / (T, I) tensor or a PackedSequence into a SequenceBatch."""
    if isinstance(x, PackedSequence):
        if lengths is not None:
            raise ValueError("lengths must be None when the input is a PackedSequence "
                             "(the PackedSequence already carries the lengths)")
        padded, packed_lengths = pad_packed_sequence(x)                         # (T, B, I), original order
        _check_features(padded, input_size)
        full = bool((packed_lengths == padded.shape[0]).all())
        return SequenceBatch(padded, None if full else packed_lengths, True, x)
    if not isinstance(x, Tensor):
        raise TypeError(f"input must be a Tensor or a PackedSequence, got {type(x).__name__}")
    if x.dim() not in (2, 3):
        raise ValueError(f"input must be 3-D ({'B, T' if batch_first else 'T, B'}, input_size) or "
                         f"2-D unbatched (T, input_size), got {x.dim()}-D with shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise DtypeError(f"input must be a floating-point tensor, got dtype {x.dtype}")
    _check_features(x, input_size)
    batched = x.dim() == 3
    if not batched:
        x = x.unsqueeze(1)                                                      # (T, 1, I)
    elif batch_first:
        x = x.transpose(0, 1)                                                   # (T, B, I)
    T, B = x.shape[:2]
    if T == 0:
        raise ShapeError(f"input must have at least one time step, got shape {tuple(x.shape)}")
    if lengths is not None:
        lengths = check_lengths(lengths, B, T)
        if not torch.compiler.is_compiling() and bool((lengths == T).all()):
            lengths = None             # a full batch runs unmasked (a traced graph keeps the masked form)
    return SequenceBatch(x, lengths, batched, None)


def _check_features(x: Tensor, input_size: int) -> None:
    if x.shape[-1] != input_size:
        raise ShapeError(f"input must have input_size={input_size} features in its last dimension, "
                         f"got {x.shape[-1]} (input shape {tuple(x.shape)})")


def read_state(state, names: tuple[str, ...], sizes: tuple[int, ...], layers_x_dirs: int,
               batch_size: int, batched: bool) -> tuple[Tensor, ...]:
    """Check a user's state against torch's layout (L·D, B, S) and return it as a tuple."""
    if isinstance(state, Tensor):
        state = (state,)
    if not isinstance(state, (tuple, list)):
        raise TypeError(f"state must be a Tensor or a tuple of Tensors {names}, got {type(state).__name__}")
    if not all(isinstance(s, Tensor) for s in state):
        given = ", ".join(type(s).__name__ for s in state)
        raise TypeError(f"state must be a Tensor or a tuple of Tensors {names}, got a "
                        f"{type(state).__name__} of ({given})")
    if len(state) != len(names):
        raise ShapeError(f"state must hold {len(names)} tensor(s) {names}, got {len(state)}")
    checked = []
    for name, size, s in zip(names, sizes, state):
        expected = (layers_x_dirs, batch_size, size) if batched else (layers_x_dirs, size)
        if tuple(s.shape) != expected:
            raise ShapeError(f"state {name!r} must have shape {expected} (num_layers * num_directions, "
                             f"{'batch, ' if batched else ''}{name} size), got {tuple(s.shape)}")
        s = s if batched else s.unsqueeze(1)
        checked.append(s)
    return tuple(checked)


def check_dtype_and_device(x: Tensor, state: tuple[Tensor, ...] | None, weight: Tensor | None) -> None:
    """The input (T, B, I) must have the weights' dtype (unless autocast casts it for the weights'
    products, as torch.nn's check allows) and be on the weights' device, the state on the input's."""
    if weight is not None:
        if x.device != weight.device:
            raise DeviceError(f"input is on device {x.device} but the layer's weights are on device "
                              f"{weight.device}; move the input (input.to({str(weight.device)!r})) or the "
                              f"layer (layer.to({str(x.device)!r}))")
        if x.dtype != weight.dtype and not _autocasting(x.device.type):
            raise DtypeError(f"RNN input dtype ({x.dtype}) does not match weight dtype ({weight.dtype}). "
                             f"Convert input: input.to({weight.dtype}), or convert model: model.to({x.dtype})")
    for s in state or ():
        if s.device != x.device:
            raise DeviceError(f"state is on device {s.device} but the input is on device {x.device}; "
                              f"move the state (state.to({str(x.device)!r}))")
        if s.dtype != x.dtype and not _autocasting(x.device.type):
            raise StateDtypeError(f"state must have the input's dtype {x.dtype}, got {s.dtype}; convert it: "
                                  f"state.to({x.dtype})")


def _autocasting(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:                          # a device type autocast does not know (meta)
        return False
