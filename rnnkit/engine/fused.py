r"""Compiled time loops (``rnnkit/csrc``): the hand BPTT of ``bptt.py`` with each step in C++.

The Python hand BPTT issues a dozen ATen calls per step, each paying the dispatcher and a pass over
memory; here one C++ call runs the whole loop: per step, the recurrent product (ATen addmm) and
one fused pass over the units for every gate, the cell and the output (or, backwards, the whole δ
recursion of the step). The input projection and the weight gradients stay one large product each
over all T·B rows, as in ``bptt.py``; lengths are handled the same way (sorted longest first, each
step touches only the sequences still running).

Each loop is a torch custom operator (``rnnkit.engine.ops``), so torch.compile and torch.export
trace through a layer that runs it: the sorting by length is ordinary torch ops here, the counts of
running rows are computed inside the ops' real implementations.

The extension is built when the package is installed (``setup.py``). Where it is missing (a source
checkout that was never built, a platform without a compiler at install time) the dispatcher
(``rnnkit.engine.dispatch``, which alone decides where these loops run) warns once and takes the
next path, which computes the same thing.

Cells covered: ``lstm`` in every variant (``fgr`` with its extra per-step product), without ``proj_size`` or ``layer_norm``;
``gru`` in both variants, without ``layer_norm``; the scan of ``mingru`` and ``minlstm``
(``minimal_scan``, the compiled form of ``rnnkit.engine.scan.gated_scan``). The LSTM and GRU loops
also take recurrent dropout (a mask per sequence on the state entering the recurrent product) and
zoneout (masks drawn before the loop, ``draw_zoneout_masks``, in the reference loop's order).
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor

from ..cells.base import Params, State
from ..cells.minimal import MinLSTMCell
from . import ops
from .bptt import _BatchOrder
from .masks import draw_zoneout_masks

_kernels, _LOAD_ERROR = ops.kernels, ops.LOAD_ERROR

_warned = False


def available() -> bool:
    """Whether the compiled loops were built and load."""
    return _kernels is not None


def traceable() -> bool:
    """Whether torch.compile and torch.export can put the compiled loops in a graph: they are torch
    custom operators (``rnnkit.engine.ops``) with fake implementations and registered gradients."""
    return available()


def _warn_once() -> None:
    global _warned
    if not _warned:
        warnings.warn(f"rnnkit's compiled loops are not built ({_LOAD_ERROR}); running the Python hand "
                      f"BPTT instead, which gives the same results more slowly. Reinstall with "
                      f"`pip install -e .` on a machine with a C++ compiler to build them.",
                      RuntimeWarning, stacklevel=3)
        _warned = True


# ----- recurrent dropout and zoneout -----------------------------------------------------------------
def _zoneout_arguments(order: _BatchOrder, state: State, T: int, zoneout: float, training: bool):
    """The ops' zoneout arguments: the masks (T, B, S) per state in the loop's batch order (None
    without zoneout or at evaluation) and the evaluation rate (0 in training or without)."""
    if not zoneout:
        return (None,) * len(state), 0.0
    if not training:
        return (None,) * len(state), float(zoneout)
    return tuple(order.sort(m, 1) for m in draw_zoneout_masks(state, T, zoneout)), 0.0


# ----- the LSTM family -----------------------------------------------------------------------------
def lstm_layout(cell) -> tuple[list[int], bool, bool, bool]:
    """What the C++ loop needs to know of an LSTM cell's variant: the block of each of the gates i, f,
    g, o in the stack (−1 for an absent one), cifg, whether g and h are the identity."""
    offsets = [cell.gates.index(g) if g in cell.gates else -1 for g in "ifgo"]
    return offsets, cell.variant == "cifg", cell.g_name == "identity", cell.h_name == "identity"


def run_fused_lstm(cell, p: Params, u: Tensor, state: State, valid: Tensor | None,
                   recurrent_mask: Tensor | None = None, zoneout: float = 0.0,
                   training: bool = False) -> tuple[Tensor, State]:
    """Outputs (T, B, H) and the final (h, c) ((h, c, ifo) for ``fgr``), through the compiled loop
    (``rnnkit::lstm_family_forward``), with its backward.

    ``recurrent_mask`` (B, H): variational dropout on h_{t−1} in the recurrent product U h only (not
    the peepholes, not fgr's W_gg product), as ``LSTMCell.step``. ``zoneout``: each state tensor keeps
    its previous value with this probability per unit and step in ``training`` (masks drawn as
    ``draw_zoneout_masks``), and is mixed in this proportion at evaluation; the output is the zoned h."""
    order = _BatchOrder(valid)
    zoneout_masks, rate = _zoneout_arguments(order, state, u.shape[0], zoneout, training)
    sorted_state = [order.sort(s, 0) for s in state]                            # each (B, S)
    fgr = cell.variant == "fgr"
    ifo0 = sorted_state[2] if fgr else None
    h_all, _, _, h, c, ifo, _, _ = ops.call(
        ops.lstm_family_forward, order.sort(u, 1), sorted_state[0], sorted_state[1], p["weight_hh"],
        p.get("bias_hh"), *(p.get(f"peephole_{g}") for g in "ifo"), p.get("weight_gg"), ifo0,
        _lengths(order, u), *lstm_layout(cell), _sorted(order, recurrent_mask), zoneout_masks[0],
        zoneout_masks[1], zoneout_masks[2] if fgr else None, rate)
    final = (h, c, ifo) if ifo0 is not None else (h, c)
    return order.unsort(h_all, 1), tuple(order.unsort(s, 0) for s in final)


# ----- the GRU ---------------------------------------------------------------------------------------
def run_fused_gru(cell, p: Params, u: Tensor, state: State, valid: Tensor | None,
                  recurrent_mask: Tensor | None = None, zoneout: float = 0.0,
                  training: bool = False) -> tuple[Tensor, State]:
    """Outputs (T, B, H) and the final (h,), through the compiled loop (``rnnkit::gru_forward``), with
    its backward. ``recurrent_mask`` (B, H) multiplies h_{t−1} in every recurrent product (original:
    in U_rz h and r ⊙ h), as ``GRUCell.step``; ``zoneout`` as in ``run_fused_lstm``."""
    order = _BatchOrder(valid)
    (zoneout_h,), rate = _zoneout_arguments(order, state, u.shape[0], zoneout, training)
    h_all, _, _, h = ops.call(ops.gru_forward, order.sort(u, 1), order.sort(state[0], 0), p["weight_hh"],
                              p.get("bias_hh"), _lengths(order, u), cell.variant == "original",
                              _sorted(order, recurrent_mask), zoneout_h, rate)
    return order.unsort(h_all, 1), (order.unsort(h, 0),)


# ----- minGRU / minLSTM ------------------------------------------------------------------------------
def minimal_scan(cell, u: Tensor, h0: Tensor, valid: Tensor | None) -> Tensor:
    """h (T, B, H) of the minGRU / minLSTM recurrence through the compiled scan
    (``rnnkit::minimal_scan_forward``); the dispatcher sends only those cells here."""
    lstm = isinstance(cell, MinLSTMCell)
    lengths = valid.sum(0) if valid is not None else _all_steps(u)             # (B,) int64
    return ops.call(ops.minimal_scan_forward, u, h0, lengths, lstm)


# ----- calling the ops -------------------------------------------------------------------------------
def _lengths(order: _BatchOrder, u: Tensor) -> Tensor:
    """The sorted lengths (B,) the compiled LSTM/GRU loops take, or empty for a full batch."""
    return order.lengths if order.lengths is not None else _all_steps(u)


def _sorted(order: _BatchOrder, recurrent_mask: Tensor | None) -> Tensor | None:
    """The recurrent dropout mask (B, H) in the loop's batch order."""
    return None if recurrent_mask is None else order.sort(recurrent_mask, 0)


def _all_steps(u: Tensor) -> Tensor:
    """The ops' ``lengths`` for a batch whose sequences all run T steps: empty."""
    return u.new_empty(0, dtype=torch.int64)

