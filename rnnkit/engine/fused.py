r"""Compiled time loops (``rnnkit/csrc``): the hand BPTT of ``bptt.py`` with each step in C++.

The Python hand BPTT issues a dozen ATen calls per step, each paying the dispatcher and a pass over
memory; here one C++ call runs the whole loop: per step, the recurrent product (ATen addmm) and
one fused pass over the units for every gate, the cell and the output (or, backwards, the whole δ
recursion of the step). The input projection and the weight gradients stay one large product each
over all T·B rows, as in ``bptt.py``; lengths are handled the same way (sorted longest first, each
step touches only the sequences still running).

The extension is built when the package is installed (``setup.py``). Where it is missing (a source
checkout that was never built, a platform without a compiler at install time) the engine warns once
and runs the Python hand BPTT, which computes the same thing.

Cells covered: ``lstm`` in every variant (``fgr`` with its extra per-step product), without ``proj_size`` or ``layer_norm``;
``gru`` in both variants, without ``layer_norm``; the scan of ``mingru`` and ``minlstm``
(``minimal_scan``, called from ``rnnkit.engine.scan.gated_scan``).
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor

from ..cells.base import Params, RecurrentCell, State
from ..cells.functional import previous_steps, summed, summed_outer
from ..cells.gru import GRUCell
from ..cells.lstm import LSTMCell
from .bptt import _BatchOrder

try:
    from .. import _fused as _kernels                                           # type: ignore[attr-defined]
    _LOAD_ERROR = None
except ImportError as error:                                                    # not built
    _kernels, _LOAD_ERROR = None, error

_warned = False


def available() -> bool:
    """Whether the compiled loops were built and load."""
    return _kernels is not None


def fused_runner(cell: RecurrentCell, u: Tensor):
    """The compiled loop ``run(cell, p, u, state, valid)`` for this cell and input, or None where
    none applies (another cell or option, a GPU tensor, a dtype other than float32/float64)."""
    for cell_class, applies, run in _LOOPS:
        if isinstance(cell, cell_class) and applies(cell):
            return run if _compiled_for(u) else None
    return None


def _compiled_for(u: Tensor) -> bool:
    """Whether the compiled loops can take this input: a CPU float32/float64 tensor, and the
    extension built (warning once where it is not)."""
    if u.device.type != "cpu" or u.dtype not in (torch.float32, torch.float64):
        return False
    if _kernels is None:
        _warn_once()
        return False
    return True


def preferred_over_native(cell: RecurrentCell, x: Tensor, has_lengths: bool) -> bool:
    """Whether the compiled loop should run even where torch has a kernel for the cell (measured by
    ``rnnkit bench``, docs/performance.md): the GRU on the CPU, where torch's GRU is ATen's unfused
    step loop (torch sends only the LSTM to oneDNN); and any covered cell when the batch has
    lengths, where torch's packed kernels run 1.7–4.3× slower than on the padded batch while the
    compiled loop computes only the steps inside each sequence. On a GPU cuDNN stays first."""
    if fused_runner(cell, x) is None:
        return False
    return has_lengths or isinstance(cell, _PREFERRED_OVER_NATIVE)


def _warn_once() -> None:
    global _warned
    if not _warned:
        warnings.warn(f"rnnkit's compiled loops are not built ({_LOAD_ERROR}); running the Python hand "
                      f"BPTT instead, which gives the same results more slowly. Reinstall with "
                      f"`pip install -e .` on a machine with a C++ compiler to build them.",
                      RuntimeWarning, stacklevel=3)
        _warned = True


# ----- the LSTM family -----------------------------------------------------------------------------
def lstm_layout(cell) -> dict:
    """What the C++ loop needs to know of an LSTM cell's variant."""
    offsets = [cell.gates.index(g) if g in cell.gates else -1 for g in "ifgo"]
    return dict(offsets=offsets, cifg=cell.variant == "cifg", g_identity=cell.g_name == "identity",
                h_identity=cell.h_name == "identity")


def run_fused_lstm(cell, p: Params, u: Tensor, state: State, valid: Tensor | None) -> tuple[Tensor, State]:
    """Outputs (T, B, H) and the final (h, c) ((h, c, ifo) for ``fgr``), through the compiled loop,
    with its backward."""
    peepholes = [p.get(f"peephole_{g}") for g in "ifo"]
    tensors = [p["weight_hh"], p.get("bias_hh"), *peepholes, p.get("weight_gg")]
    present = [t is not None for t in tensors]
    ifo0 = state[2] if cell.variant == "fgr" else None
    result = _apply(_FusedLSTM, lstm_layout(cell), valid, present, u, state[0], state[1], ifo0,
                              *(t for t in tensors if t is not None))
    return result[0], tuple(result[1:]) if ifo0 is not None else (result[1], result[2])


class _FusedLSTM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, layout, valid, present, u, h0, c0, ifo0, *tensors):
        weight_hh, bias_hh, p_i, p_f, p_o, weight_gg = _unpack(present, tensors)
        T, B, _ = u.shape
        order = _BatchOrder(valid, T, B)
        u_sorted, h0_sorted, c0_sorted = order.sort(u, 1), order.sort(h0, 0), order.sort(c0, 0)
        ifo0_sorted = order.sort(ifo0, 0).contiguous() if ifo0 is not None else u.new_empty(0)
        h_all, c_all, gates, h_final, c_final, ifo_final = _kernels.lstm_family_forward(
            u_sorted.contiguous(), h0_sorted.contiguous(), c0_sorted.contiguous(),
            _transposed(weight_hh, T), _or_empty(bias_hh, u), _or_empty(p_i, u), _or_empty(p_f, u),
            _or_empty(p_o, u), _transposed(weight_gg, T) if weight_gg is not None else u.new_empty(0),
            ifo0_sorted, layout["offsets"], layout["cifg"], layout["g_identity"], layout["h_identity"],
            order.running)
        ctx.layout, ctx.order, ctx.present = layout, order, present
        ctx.save_for_backward(h_all, c_all, gates, h0_sorted, c0_sorted, ifo0_sorted, *tensors)
        outputs = (order.unsort(h_all, 1), order.unsort(h_final, 0), order.unsort(c_final, 0))
        return outputs + (order.unsort(ifo_final, 0),) if ifo0 is not None else outputs

    @staticmethod
    def backward(ctx, grad_h_all, grad_h, grad_c, grad_ifo=None):
        h_all, c_all, gates, h0, c0, ifo0, *tensors = ctx.saved_tensors
        weight_hh, bias_hh, p_i, p_f, p_o, weight_gg = _unpack(ctx.present, tensors)
        order, layout = ctx.order, ctx.layout
        fgr = weight_gg is not None
        d_a, dh0, dc0, d_ifo0, d_peepholes = _kernels.lstm_family_backward(
            order.sort(grad_h_all, 1).contiguous(), order.sort(grad_h, 0).contiguous(),
            order.sort(grad_c, 0).contiguous(), gates, c_all, c0, weight_hh.contiguous(),
            _or_empty(p_i, gates), _or_empty(p_f, gates), _or_empty(p_o, gates),
            weight_gg.contiguous() if fgr else gates.new_empty(0),
            order.sort(grad_ifo, 0).contiguous() if fgr else gates.new_empty(0), layout["offsets"],
            layout["cifg"], layout["g_identity"], layout["h_identity"], order.running)
        # Once per sequence: dU = Σ δa h_{t−1}ᵀ over all rows, db = Σ δa (the loop summed the
        # peepholes' dp = Σ δa_gate ⊙ c as it went).
        grads = [summed_outer(d_a, previous_steps(h_all, h0)), summed(d_a) if bias_hh is not None else None]
        H = h0.shape[-1]
        blocks = {g: slice(k * H, (k + 1) * H) for g, k in zip("ifgo", layout["offsets"]) if k >= 0}
        for k, peephole in enumerate((p_i, p_f, p_o)):
            grads.append(d_peepholes[k] if peephole is not None else None)
        if fgr:                                            # dW_gg = Σ δ[a_i, a_f, a_o] ifo_{t−1}ᵀ
            ifo_all = torch.cat([gates[..., blocks[g]] for g in "ifo"], dim=-1)   # (T, B, 3H)
            d_ifo_pre = torch.cat([d_a[..., blocks[g]] for g in "ifo"], dim=-1)   # (T, B, 3H)
            grads.append(summed_outer(d_ifo_pre, previous_steps(ifo_all, ifo0)))
        return (None, None, None, order.unsort(d_a, 1), order.unsort(dh0, 0), order.unsort(dc0, 0),
                order.unsort(d_ifo0, 0) if fgr else None,
                *(g for g, there in zip(grads, ctx.present) if there))


def _apply(function: type[torch.autograd.Function], *args):
    """``function.apply(*args)``, or, where no gradient will be asked for (inference, streaming), its
    forward alone: autograd's bookkeeping costs more than a one-step loop at batch 1."""
    if torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args):
        return function.apply(*args)
    return function.forward(_NoGradientContext(), *args)


class _NoGradientContext:
    """Stands in for autograd's ctx when only the forward runs: attributes are kept, nothing is saved."""

    def save_for_backward(self, *tensors) -> None:
        pass


def _unpack(present: list[bool], tensors) -> list[Tensor | None]:
    found = iter(tensors)
    return [next(found) if there else None for there in present]


def _transposed(weight: Tensor, steps: int) -> Tensor:
    """weightᵀ for the per-step products: as a contiguous copy for a sequence (on it the products
    measured 1.2–2.4× faster than on the transposed view), as the view for a few steps (a streaming
    call of one step would otherwise copy the whole matrix to use it once)."""
    return weight.t().contiguous() if steps >= 8 else weight.t()


def _or_empty(t: Tensor | None, like: Tensor) -> Tensor:
    return t.contiguous() if t is not None else like.new_empty(0)


# ----- the GRU ---------------------------------------------------------------------------------------
def run_fused_gru(cell, p: Params, u: Tensor, state: State, valid: Tensor | None) -> tuple[Tensor, State]:
    """Outputs (T, B, H) and the final (h,), through the compiled loop, with its backward."""
    bias = p.get("bias_hh")
    tensors = (p["weight_hh"],) if bias is None else (p["weight_hh"], bias)
    outputs, final = _apply(_FusedGRU, cell.variant == "original", valid, u, state[0], *tensors)
    return outputs, (final,)


class _FusedGRU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, original, valid, u, h0, weight_hh, bias_hh=None):
        T, B, _ = u.shape
        order = _BatchOrder(valid, T, B)
        h0_sorted = order.sort(h0, 0).contiguous()
        h_all, gates, saved, h_final = _kernels.gru_forward(
            order.sort(u, 1).contiguous(), h0_sorted, _transposed(weight_hh, T),
            _or_empty(bias_hh, u), original, order.running)
        ctx.original, ctx.order, ctx.has_bias = original, order, bias_hh is not None
        ctx.save_for_backward(h_all, gates, saved, h0_sorted, weight_hh)
        return order.unsort(h_all, 1), order.unsort(h_final, 0)

    @staticmethod
    def backward(ctx, grad_h_all, grad_h):
        h_all, gates, saved, h0, weight_hh = ctx.saved_tensors
        order, H = ctx.order, h0.shape[-1]
        d_u, d_rec, dh0 = _kernels.gru_backward(
            order.sort(grad_h_all, 1).contiguous(), order.sort(grad_h, 0).contiguous(), gates, saved,
            h_all, h0, weight_hh.contiguous(), ctx.original, order.running)
        # Once per sequence: dU = Σ δ(U h)ᵀ h_{t−1} (original: U_n's rows see r ⊙ h_{t−1}), db = Σ δ.
        h_prev = previous_steps(h_all, h0)                                      # (T, B, H)
        if ctx.original:
            d_weight = torch.cat([summed_outer(d_rec[..., :2 * H], h_prev),
                                  summed_outer(d_rec[..., 2 * H:], saved)])
        else:
            d_weight = summed_outer(d_rec, h_prev)
        grads = (d_weight, summed(d_rec)) if ctx.has_bias else (d_weight,)
        return (None, None, order.unsort(d_u, 1), order.unsort(dh0, 0), *grads)


# ----- minGRU / minLSTM ------------------------------------------------------------------------------
def minimal_scan(cell, u: Tensor, h0: Tensor, valid: Tensor | None) -> Tensor | None:
    """h (T, B, H) of the minGRU / minLSTM recurrence through the compiled scan, or None where it
    does not apply (the caller then runs the Python form)."""
    lstm = {"MinGRUCell": False, "MinLSTMCell": True}.get(type(cell).__name__)
    if lstm is None or not _compiled_for(u):
        return None
    lengths = valid.sum(0).to("cpu", torch.int64) if valid is not None else u.new_empty(0, dtype=torch.int64)
    return _apply(_FusedMinimal, lstm, lengths, u, h0)


class _FusedMinimal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, lstm, lengths, u, h0):
        u, h0 = u.contiguous(), h0.contiguous()
        h = _kernels.minimal_scan_forward(u, h0, lengths, lstm)                 # (T, B, H)
        ctx.lstm, ctx.lengths = lstm, lengths
        ctx.save_for_backward(u, h, h0)
        return h

    @staticmethod
    def backward(ctx, grad_h):
        u, h, h0 = ctx.saved_tensors
        d_u, d_h0 = _kernels.minimal_scan_backward(u, h, h0, grad_h.contiguous(), ctx.lengths, ctx.lstm)
        return None, None, d_u, d_h0


def _lstm_applies(cell: LSTMCell) -> bool:
    return not cell.proj_size and not cell.layer_norm


def _gru_applies(cell: GRUCell) -> bool:
    return not cell.layer_norm


# (cell class, whether this cell's options are covered, the runner)
_LOOPS = [(LSTMCell, _lstm_applies, run_fused_lstm), (GRUCell, _gru_applies, run_fused_gru)]
_PREFERRED_OVER_NATIVE = (GRUCell,)
