"""Which path runs a recurrent layer: one table, one decision per call, and ``explain`` says why.

A cell is written once, as its equations (``rnnkit.cells``). How it runs over time is decided here
and nowhere else, from the cell and its options, the layer's options (zoneout, recurrent dropout,
``bptt``), and the call: device, dtype (autocast included), whether a gradient is needed, whether
the batch has lengths, whether every step's state is kept, and whether torch.compile or
torch.export is tracing the call. The paths:

=================  ==================================================================================
``native``         torch's own recurrent kernel (oneDNN on the CPU, cuDNN on a GPU), for the cells it
                   computes exactly: the standard LSTM (with ``proj_size``), the standard GRU and the
                   tanh/relu Elman network (``engine/native.py``)
``fused``          rnnkit's compiled C++ loops with their hand-derived backward: every LSTM variant,
                   both GRUs (with zoneout and recurrent dropout), the minGRU/minLSTM scan; CPU,
                   float32/float64 (``engine/fused.py``, ``engine/ops.py``)
``generated``      any cell, a user's too: the cell's own ``step`` compiled by torch.compile (Inductor
                   writes C++ on the CPU, Triton on a GPU) inside the time loop (``engine/generated.py``)
``scan``           minGRU/minLSTM: all steps' coefficients at once, then the linear recurrence in
                   time order, in Python (``engine/scan.py``)
``parallel_scan``  minGRU/minLSTM: the log-space parallel scan of Heinsen 2023 (``engine/scan.py``)
``reference``      the step loop in Python (``engine/loop.py``), differentiated by the cell's
                   hand-derived BPTT (``engine/bptt.py``) or by autograd (``bptt=``)
=================  ==================================================================================

``Recurrent(..., backend="auto")`` takes the first path of the context's preference order
(``_preference``) that can run the call (``_why_not``); ``backend="<path>"`` names one, and a path
that cannot run the call is an error that says why. The preference orders are measurements
(``rnnkit bench``, docs/performance.md), written down in the tables below.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..cells.elman import ElmanCell
from ..cells.gru import GRUCell
from ..cells.indrnn import IndRNNCell
from ..cells.lstm import LSTMCell
from ..cells.minimal import MinGRUCell, MinLSTMCell
from . import fused

PATHS: dict[str, str] = {
    "native": "torch's own recurrent kernel (oneDNN on the CPU, cuDNN on a GPU)",
    "fused": "rnnkit's compiled C++ loop with its hand-derived backward",
    "generated": "the cell's step compiled by torch.compile (Inductor), the time loop around it",
    "scan": "the linear recurrence of minGRU/minLSTM in time order (Python)",
    "parallel_scan": "the log-space parallel scan of minGRU/minLSTM",
    "reference": "the step loop in Python",
}
BACKENDS = ("auto",) + tuple(PATHS)

# ----- the engine's tables: what computes a cell exactly, and what is faster where ---------------------
# Exact types, not isinstance: a user's subclass of LSTMCell may change the step.
SCANNED_CELLS = (MinGRUCell, MinLSTMCell)
# On the CPU torch's GRU is ATen's unfused step loop (only the LSTM goes to oneDNN): the compiled
# loop is 1.1-1.9x faster (docs/performance.md).
FUSED_BEATS_TORCH_ON_CPU = (GRUCell,)
# An elementwise recurrence: autograd's per-step cost is below the hand backward's bookkeeping
# (1.28x, benchmarks/bptt_vs_autograd.py, B=32 T=100 H=128).
AUTOGRAD_BEATS_HAND = (IndRNNCell,)


def torch_kernel(cell) -> str | None:
    """The torch kernel ("lstm", "gru", "rnn_tanh", "rnn_relu") that computes exactly this cell, or
    None. Its parameters are then torch's (weight_ih, weight_hh[, bias_ih, bias_hh][, weight_hr])."""
    kind = type(cell)
    if kind is LSTMCell and cell.variant == "standard" and not cell.layer_norm:
        return "lstm"
    if kind is GRUCell and cell.variant == "standard" and not cell.layer_norm:
        return "gru"
    if kind is ElmanCell and cell.nonlinearity in ("tanh", "relu"):
        return f"rnn_{cell.nonlinearity}"
    return None


def fused_loop_covers(cell) -> bool:
    """Whether a compiled C++ loop computes this cell with its options."""
    kind = type(cell)
    if kind is LSTMCell:
        return not cell.proj_size and not cell.layer_norm
    if kind is GRUCell:
        return not cell.layer_norm
    return kind in SCANNED_CELLS


def is_builtin(cell) -> bool:
    return type(cell).__module__.startswith("rnnkit.cells.")


# ----- the call ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """What the choice of path depends on, besides the cell and the layer's options."""
    device: str                   # "cpu", "cuda", ...
    dtype: torch.dtype            # the dtype the recurrence computes in (float32 under autocast)
    autocast: torch.dtype | None  # autocast's lower precision when enabled for the device, else None
    grad: bool                    # a gradient will be asked for
    training: bool
    lengths: bool                 # the batch has sequences of different lengths
    keep_states: bool             # every step's state is returned (return_all_states)
    tracing: bool                 # torch.compile / torch.export is tracing this call


def describe_call(x: Tensor, params, *, lengths: bool, keep_states: bool, training: bool) -> Call:
    """The Call for input x (T, B, I) of a layer whose parameters ``params()`` gives (asked only
    when autograd is on and x needs no gradient)."""
    device = x.device.type
    amp = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    dtype = torch.float32 if amp is not None and x.dtype in (amp, torch.float32) else x.dtype
    grad = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params()))
    return Call(device, dtype, amp, grad, training, lengths, keep_states, tracing=tracing())


def tracing() -> bool:
    """Whether torch.compile (dynamo) or torch.export is tracing the current call."""
    return torch.compiler.is_compiling()


# ----- the decision ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Choice:
    path: str          # a key of PATHS
    hand_bptt: bool    # the reference path: differentiate by the cell's hand-derived BPTT
    reason: str        # why this path, for explain()

    def __str__(self) -> str:
        how = " (hand-derived BPTT)" if self.hand_bptt else ""
        return f"{self.path}{how}: {self.reason}"


def choose(layer, cell, call: Call) -> Choice:
    """The path for one layer of ``layer`` (a Recurrent) whose cells are like ``cell``."""
    if layer.backend != "auto":
        why = _why_not(layer.backend, cell, layer, call)
        if why is not None:
            raise ValueError(f"backend={layer.backend!r} cannot run this call: {why}")
        return _choice(layer.backend, cell, layer, call, "asked for by backend=")
    skipped = []
    for path in _preference(cell, layer, call):
        why = _why_not(path, cell, layer, call)
        if why is None:
            reason = "first in the preference order" if not skipped else "; ".join(skipped)
            return _choice(path, cell, layer, call, reason)
        skipped.append(f"not {path} ({why})")
    raise AssertionError("the reference path runs every call")              # _why_not never refuses it


def check_backend(backend: str, cell) -> None:
    """At construction: refuse a named path that can never compute this cell (the context-dependent
    reasons — device, dtype, options in force — are checked at each call)."""
    reason = _cannot_compute(backend, cell)
    if reason:
        raise ValueError(f"backend={backend!r} cannot run this layer: {reason}")


def _cannot_compute(path: str, cell) -> str | None:
    """Why ``path`` never computes this cell with its options, or None."""
    if path == "native" and torch_kernel(cell) is None:
        return f"no torch kernel computes {_name(cell)}"
    if path == "fused" and not fused_loop_covers(cell):
        return f"no compiled loop computes {_name(cell)}"
    if path in ("scan", "parallel_scan") and type(cell) not in SCANNED_CELLS:
        return f"only minGRU and minLSTM reduce to a linear scan, not {_name(cell)}"
    return None


def _preference(cell, layer, call: Call) -> tuple[str, ...]:
    """The paths to try, fastest first, for this context (measured: docs/performance.md)."""
    if call.tracing:                      # what torch.compile / torch.export can trace as a graph
        return ("native", "fused", "parallel_scan", "reference")
    if call.device != "cpu":              # cuDNN where exact; Triton through Inductor elsewhere
        return ("native", "parallel_scan", "generated", "reference")
    fused_first = call.lengths or type(cell) in FUSED_BEATS_TORCH_ON_CPU
    order = ("fused", "native") if fused_first else ("native", "fused")
    later = ("generated", "reference") if _generated_first(cell, layer, call) else ("reference", "generated")
    return order + ("scan",) + later


def _generated_first(cell, layer, call: Call) -> bool:
    """Whether the generated loop beats the Python reference loop on the CPU: for a user's cell and for
    the options the reference can only differentiate step by step with autograd (layer norm,
    zoneout, recurrent dropout) — where a gradient is needed; a diagnostic call that keeps every
    step's state stays on the reference loop (no compile for a one-off picture)."""
    if call.keep_states or not call.grad:
        return False
    if not is_builtin(cell):
        return True
    per_step_autograd = (layer.zoneout or (layer.recurrent_dropout and call.training)
                         or not cell.supports_hand_bptt())
    return bool(per_step_autograd)


def _why_not(path: str, cell, layer, call: Call) -> str | None:
    """None if ``path`` can run this call, else the reason it cannot."""
    masks = _masks(layer, call)
    cannot = _cannot_compute(path, cell)
    if cannot:
        return cannot
    if path == "native":
        if masks:
            return f"torch's kernels have no {masks}"
        if call.keep_states:
            return "torch's kernels do not return every step's state"
        if layer.bptt == "hand":
            return "bptt='hand' asks for rnnkit's hand-derived backward"
        if call.tracing and call.lengths:
            return "torch's kernels take lengths as a PackedSequence, which a tracer cannot follow"
        return None
    if path == "fused":
        if call.device != "cpu":
            return f"the compiled loops run on the CPU, not {call.device}"
        if call.dtype not in (torch.float32, torch.float64):
            return f"the compiled loops compute in float32/float64, not {call.dtype}"
        if masks and type(cell) in SCANNED_CELLS:
            return f"the compiled scan has no {masks}"
        if call.keep_states:
            return "the compiled loops do not return every step's state"
        if layer.bptt == "autograd":
            return "bptt='autograd' asks for autograd's gradient"
        if not fused.available():
            fused._warn_once()
            return "rnnkit's C++ extension is not built (reinstall with a C++ compiler)"
        if call.tracing and not fused.traceable():
            return "the compiled loops are not registered as torch custom operators"
        return None
    if path in ("scan", "parallel_scan"):
        if layer.zoneout:
            return "zoneout breaks the linear recurrence"
        return None
    if path == "generated":
        if call.tracing:
            return "torch.compile is already tracing this call (the step loop goes into its graph)"
        if layer.bptt != "auto":
            return f"bptt={layer.bptt!r} asks for the reference loop's gradient"
        return _generated_unavailable()
    if path == "reference":
        return None
    raise ValueError(f"unknown path {path!r}; paths: {', '.join(PATHS)}")


def _generated_unavailable() -> str | None:
    """Why torch.compile cannot generate a loop here, or None."""
    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile is not supported on this Python/platform"
    return None


def _choice(path: str, cell, layer, call: Call, reason: str) -> Choice:
    hand = (path == "reference" and call.grad and layer.bptt != "autograd" and cell.supports_hand_bptt()
            and not _masks(layer, call) and not call.keep_states
            and (layer.bptt == "hand" or type(cell) not in AUTOGRAD_BEATS_HAND))
    return Choice(path, hand, reason)


def _masks(layer, call: Call) -> str:
    """The per-step options in force ("zoneout", "recurrent dropout"), as words; "" for none."""
    names = []
    if layer.zoneout:
        names.append("zoneout")
    if layer.recurrent_dropout and call.training:
        names.append("recurrent dropout")
    return " or ".join(names)


def _name(cell) -> str:
    return f"{type(cell).__name__}({cell.extra_repr()})"


# ----- explain -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Explanation:
    """Which path each layer of a call takes, and why (``rnnkit.engine.explain``)."""
    call: Call
    layers: tuple[Choice, ...]

    def __str__(self) -> str:
        c = self.call
        precision = f"{c.autocast} autocast (recurrence in {c.dtype})" if c.autocast else str(c.dtype)
        head = (f"{c.device}, {precision}, {'gradient' if c.grad else 'no gradient'}, "
                f"{'lengths' if c.lengths else 'full-length batch'}"
                f"{', traced by torch.compile/export' if c.tracing else ''}")
        return "\n".join([head] + [f"layer {i}: {choice}" for i, choice in enumerate(self.layers)])


def explain(layer, x, state=None, lengths=None, *, return_all_states: bool = False) -> Explanation:
    """Which path ``layer(x, state, lengths)`` takes for each stacked layer, and why — in the
    current grad mode, autocast and train/eval mode. Nothing is computed.

    >>> layer = rnnkit.Recurrent("lstm", 8, 16, variant="vanilla", num_layers=2)
    >>> print(rnnkit.engine.explain(layer, torch.randn(5, 3, 8)))
    """
    return layer.explain(x, state, lengths, return_all_states=return_all_states)
