r"""rnnkit's compiled loops (``rnnkit/csrc``) as torch custom operators, namespace ``rnnkit``.

Registered with ``torch.library.custom_op``, each loop is one node to torch.compile and torch.export:
its fake implementation gives the outputs' shapes and dtypes from the inputs' (symbolic batch B and
length T included), and its gradient (``register_autograd``) is the backward op plus ordinary torch
ops, which AOTAutograd traces like any others. The C++ loops take the number of rows still running at
each step as a Python list, a data-dependent value a tracer cannot see; the ops take ``lengths`` as a
tensor and compute that list inside their real implementation.

==================================  =========================================================================
``rnnkit::lstm_family_forward``     every LSTM variant of ``rnnkit.cells.lstm`` (no ``proj_size``, no layer norm)
``rnnkit::lstm_family_backward``    its δ recursion: the gradients of u, of the initial state and of the peepholes
``rnnkit::gru_forward``             the GRU, standard or original (no layer norm)
``rnnkit::gru_backward``            its δ recursion: the gradients of u, of U h + b_hh, of h_0
``rnnkit::minimal_scan_forward``    minGRU / minLSTM: the coefficients and h_t = a_t ⊙ h_{t−1} + (1 − a_t) ⊙ h̃_t
``rnnkit::minimal_scan_backward``   its δ recursion: the gradients of u and h_0
==================================  =========================================================================

Shapes: u (T, B, G) the input projection of every step (G = 4H for the LSTM, fewer without some
gates; 3H for the GRU; 2H minGRU, 3H minLSTM); h0, c0 (B, H); ``lengths`` (B,) int64, or empty when
every sequence runs all T steps. The LSTM and GRU loops take the batch sorted longest first
(``lengths`` non-increasing; the caller sorts with ordinary, traceable ops: ``rnnkit.engine.fused``),
so that step t computes only the first n_t rows; the minimal scan takes any order.

Each forward op returns, besides the outputs, what its backward reads (gates, cell states), and the
gradient's setup marks those as not differentiable.

The LSTM and GRU ops also take, as optional trailing arguments, a recurrent dropout mask and zoneout's
masks or evaluation rate (below, "recurrent dropout and zoneout"); without them they run the plain loop.
"""
from __future__ import annotations

import bisect

import torch
from torch import Tensor

from ..cells.functional import previous_steps, summed, summed_outer

try:
    from .. import _fused as kernels                                            # type: ignore[attr-defined]
    LOAD_ERROR = None
except ImportError as error:                                                    # not built
    kernels, LOAD_ERROR = None, error


def running_counts(lengths: Tensor, T: int, B: int) -> list[int]:
    """n_t, the rows still running at step t, from ``lengths`` (B,) sorted longest first (empty: all B
    rows run all T steps). The one data-dependent value; only the real implementations compute it
    (in Python: at a streaming call's size, each tensor op would cost more than the loop)."""
    if lengths.numel() == 0:
        return [B] * T
    counts = lengths.tolist()
    if lengths.dim() != 1 or len(counts) != B:
        raise ValueError(f"lengths must have shape ({B},) (one per sequence) or be empty, got {tuple(lengths.shape)}")
    if any(later > earlier for earlier, later in zip(counts, counts[1:])):
        raise ValueError(f"lengths must be sorted longest first for the compiled LSTM/GRU loops, got {counts}")
    ascending = counts[::-1]
    return [B - bisect.bisect_right(ascending, t) for t in range(T)]             # n_t = #{b: length_b > t}


def _transposed(weight: Tensor, steps: int) -> Tensor:
    """weightᵀ for the per-step products: as a contiguous copy for a sequence (on it the products
    measured 1.2–2.4× faster than on the transposed view), as the view for a few steps (a streaming
    call of one step would otherwise copy the whole matrix to use it once)."""
    return weight.t().contiguous() if steps >= 8 else weight.t()


def _or_empty(t: Tensor | None, like: Tensor) -> Tensor:
    """An absent optional tensor as the C++ loops take it: empty."""
    return t.contiguous() if t is not None else like.new_empty(0)


def _or_zeros(grad: Tensor | None, like: Tensor) -> Tensor:
    """An output's gradient, zeros where autograd passed None (the output was not used)."""
    return grad.contiguous() if grad is not None else torch.zeros_like(like)


def _operator(name: str, implementation):
    """``implementation`` registered as the custom operator ``name``, for CPU tensors (the loops run
    on a CPU tensor's memory); its schema is read from the type hints."""
    return torch.library.custom_op(name, implementation, mutates_args=(), device_types="cpu")


# ----- recurrent dropout and zoneout -------------------------------------------------------------------
# Both loops take them as optional arguments (absent: the plain loop, unchanged):
#   recurrent_mask (B, H_in): variational dropout (Gal & Ghahramani 2016), one mask per sequence on
#     the state entering the recurrent product, a_t = u_t + (h_{t−1} ⊙ r) Uᵀ + b;
#   zoneout_<state> (T, B, S): zoneout (Krueger et al. 2017) in training, each state's keep-old
#     indicators m_t ∈ {0, 1}, s_t = m_t ⊙ s_{t−1} + (1 − m_t) ⊙ s̃_t; or, with no mask,
#     ``zoneout_rate`` the evaluation rate, m_t = rate (0: no zoneout).
# The masks are constants to the gradient (drawn, not learned): their gradients are None.
def _steps_contiguous(mask: Tensor | None, like: Tensor) -> Tensor:
    """A zoneout mask (T, B, S) as the loops take it: each step's (B, S) block contiguous (the steps
    may be apart: one draw split by state needs no copy), or empty when absent."""
    if mask is None:
        return like.new_empty(0)
    if mask.stride(-1) == 1 and mask.stride(-2) == mask.shape[-1]:
        return mask
    return mask.contiguous()


def _zoned(zoneout_h: Tensor | None, zoneout_rate: float) -> bool:
    """Whether a call zones out its states: training masks given, or an evaluation rate."""
    return zoneout_h is not None or zoneout_rate != 0


# ----- the LSTM family -----------------------------------------------------------------------------
def _lstm_family_forward(u: Tensor, h0: Tensor, c0: Tensor, weight_hh: Tensor, bias_hh: Tensor | None,
                         peephole_i: Tensor | None, peephole_f: Tensor | None, peephole_o: Tensor | None,
                         weight_gg: Tensor | None, ifo0: Tensor | None, lengths: Tensor, offsets: list[int],
                         cifg: bool, g_identity: bool, h_identity: bool, recurrent_mask: Tensor | None = None,
                         zoneout_h: Tensor | None = None, zoneout_c: Tensor | None = None,
                         zoneout_ifo: Tensor | None = None, zoneout_rate: float = 0.0
                         ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(h_all, c_all, gates) (T, B, ·), zero past each end, the final h, c (B, H) and ifo (B, 3H;
    empty unless ``weight_gg``, the fgr variant's W_gg (3H, 3H), is given), and with zoneout the
    candidate cells c̃ (T, B, H) and, for fgr, the zoned ifo states (T, B, 3H) (else empty).
    h_all and c_all are the (zoned) states. ``offsets``: the block of each of the gates i, f, g, o in
    the stack (−1 for an absent one); weight_hh U (G, H). Masks: see above."""
    T, B, _ = u.shape
    fgr = weight_gg is not None
    return tuple(kernels.lstm_family_forward(
        u.contiguous(), h0.contiguous(), c0.contiguous(), _transposed(weight_hh, T), _or_empty(bias_hh, u),
        _or_empty(peephole_i, u), _or_empty(peephole_f, u), _or_empty(peephole_o, u),
        _transposed(weight_gg, T) if fgr else u.new_empty(0), _or_empty(ifo0 if fgr else None, u),
        _or_empty(recurrent_mask, u), _steps_contiguous(zoneout_h, u), _steps_contiguous(zoneout_c, u),
        _steps_contiguous(zoneout_ifo if fgr else None, u), zoneout_rate,
        offsets, cifg, g_identity, h_identity, running_counts(lengths, T, B)))


lstm_family_forward = _operator("rnnkit::lstm_family_forward", _lstm_family_forward)


@lstm_family_forward.register_fake
def _(u, h0, c0, weight_hh, bias_hh, peephole_i, peephole_f, peephole_o, weight_gg, ifo0, lengths, offsets,
      cifg, g_identity, h_identity, recurrent_mask=None, zoneout_h=None, zoneout_c=None, zoneout_ifo=None,
      zoneout_rate=0.0):
    T, B, G = u.shape
    H = h0.shape[-1]
    fgr, zoned = weight_gg is not None, _zoned(zoneout_h, zoneout_rate)
    ifo = u.new_empty(B, 3 * H) if fgr else u.new_empty(0)
    c_cand = u.new_empty(T, B, H) if zoned else u.new_empty(0)
    ifo_all = u.new_empty(T, B, 3 * H) if zoned and fgr else u.new_empty(0)
    return u.new_empty(T, B, H), u.new_empty(T, B, H), u.new_empty(T, B, G), u.new_empty(B, H), \
        u.new_empty(B, H), ifo, c_cand, ifo_all


def _lstm_family_backward(grad_h_all: Tensor, grad_h: Tensor, grad_c: Tensor, grad_ifo: Tensor | None,
                          gates: Tensor, c_all: Tensor, c0: Tensor, weight_hh: Tensor,
                          peephole_i: Tensor | None, peephole_f: Tensor | None, peephole_o: Tensor | None,
                          weight_gg: Tensor | None, lengths: Tensor, offsets: list[int], cifg: bool,
                          g_identity: bool, h_identity: bool, c_cand: Tensor | None = None,
                          recurrent_mask: Tensor | None = None, zoneout_h: Tensor | None = None,
                          zoneout_c: Tensor | None = None, zoneout_ifo: Tensor | None = None,
                          zoneout_rate: float = 0.0) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """d_a (T, B, G) (= the gradient of u), dh0, dc0 (B, H), d_ifo0 (B, 3H; empty unless fgr) and the
    peepholes' gradients (3, H; rows i, f, o), from the outputs' gradient (T, B, H) and the final
    state's. With zoneout ``c_cand`` is the forward's candidate cells c̃ (T, B, H)."""
    T, B, _ = gates.shape
    fgr = weight_gg is not None
    return tuple(kernels.lstm_family_backward(
        grad_h_all.contiguous(), grad_h.contiguous(), grad_c.contiguous(), gates.contiguous(),
        c_all.contiguous(), c0.contiguous(), weight_hh.contiguous(), _or_empty(peephole_i, gates),
        _or_empty(peephole_f, gates), _or_empty(peephole_o, gates), _or_empty(weight_gg, gates),
        _or_empty(grad_ifo if fgr else None, gates), _or_empty(c_cand, gates), _or_empty(recurrent_mask, gates),
        _steps_contiguous(zoneout_h, gates), _steps_contiguous(zoneout_c, gates),
        _steps_contiguous(zoneout_ifo if fgr else None, gates), zoneout_rate, offsets, cifg, g_identity,
        h_identity, running_counts(lengths, T, B)))


lstm_family_backward = _operator("rnnkit::lstm_family_backward", _lstm_family_backward)


@lstm_family_backward.register_fake
def _(grad_h_all, grad_h, grad_c, grad_ifo, gates, c_all, c0, weight_hh, peephole_i, peephole_f, peephole_o,
      weight_gg, lengths, offsets, cifg, g_identity, h_identity, c_cand=None, recurrent_mask=None,
      zoneout_h=None, zoneout_c=None, zoneout_ifo=None, zoneout_rate=0.0):
    B, H = c0.shape
    d_ifo0 = gates.new_empty(B, 3 * H) if weight_gg is not None else gates.new_empty(0)
    return torch.empty_like(gates), c0.new_empty(B, H), c0.new_empty(B, H), d_ifo0, gates.new_empty(3, H)


_LSTM_MASKS = (None, None, None, None, 0.0)      # recurrent_mask, zoneout_h, zoneout_c, zoneout_ifo, rate


def _lstm_setup_context(ctx, inputs, output) -> None:
    u, h0, c0, weight_hh, bias_hh, p_i, p_f, p_o, weight_gg, ifo0, lengths, offsets, cifg, g_id, h_id, \
        *masks = inputs
    recurrent_mask, zoneout_h, zoneout_c, zoneout_ifo, rate = (*masks, *_LSTM_MASKS[len(masks):])
    h_all, c_all, gates, _, _, _, c_cand, ifo_all = output
    ctx.mark_non_differentiable(c_all, gates, c_cand, ifo_all)
    ctx.set_materialize_grads(False)                       # no zero-filled (T, B, G) for gates
    ctx.layout, ctx.has_bias, ctx.rate = (offsets, cifg, g_id, h_id), bias_hh is not None, rate
    zoned = _zoned(zoneout_h, rate)
    ctx.save_for_backward(h_all, c_all, gates, h0, c0, ifo0, weight_hh, p_i, p_f, p_o, weight_gg, lengths,
                          c_cand if zoned else None, ifo_all if zoned and weight_gg is not None else None,
                          recurrent_mask, zoneout_h, zoneout_c, zoneout_ifo)


def _lstm_gradients(ctx, grad_h_all, _grad_c_all, _grad_gates, grad_h, grad_c, grad_ifo, _grad_c_cand,
                    _grad_ifo_all):
    h_all, c_all, gates, h0, c0, ifo0, weight_hh, p_i, p_f, p_o, weight_gg, lengths, c_cand, ifo_all, \
        recurrent_mask, zoneout_h, zoneout_c, zoneout_ifo = ctx.saved_tensors
    fgr = weight_gg is not None
    offsets = ctx.layout[0]
    d_a, dh0, dc0, d_ifo0, d_peepholes = call(
        lstm_family_backward, _or_zeros(grad_h_all, h_all), _or_zeros(grad_h, h0), _or_zeros(grad_c, c0),
        _or_zeros(grad_ifo, ifo0) if fgr else None, gates, c_all, c0, weight_hh, p_i, p_f, p_o, weight_gg,
        lengths, *ctx.layout, c_cand, recurrent_mask, zoneout_h, zoneout_c, zoneout_ifo, ctx.rate)
    # Once per sequence: dU = Σ δa (h_{t−1} ⊙ r)ᵀ over all rows, db = Σ δa (the loop summed the
    # peepholes' dp = Σ δa_gate ⊙ c as it went).
    h_prev = previous_steps(h_all, h0)                                          # (T, B, H)
    d_weight_hh = summed_outer(d_a, h_prev if recurrent_mask is None else h_prev * recurrent_mask)   # (G, H)
    d_bias = summed(d_a) if ctx.has_bias else None                              # (G,)
    d_p_i, d_p_f, d_p_o = (d_peepholes[k] if p is not None else None for k, p in enumerate((p_i, p_f, p_o)))
    d_weight_gg = None
    if fgr:                                                # dW_gg = Σ δ[a_i, a_f, a_o] ifo_{t−1}ᵀ
        H = h0.shape[-1]
        blocks = [slice(offsets[k] * H, (offsets[k] + 1) * H) for k in (0, 1, 3)]     # i, f, o
        if ifo_all is None:                                # without zoneout the state is the gates themselves
            ifo_all = torch.cat([gates[..., block] for block in blocks], dim=-1)      # (T, B, 3H)
        d_ifo_pre = torch.cat([d_a[..., block] for block in blocks], dim=-1)    # (T, B, 3H)
        d_weight_gg = summed_outer(d_ifo_pre, previous_steps(ifo_all, ifo0))   # (3H, 3H)
    return (d_a, dh0, dc0, d_weight_hh, d_bias, d_p_i, d_p_f, d_p_o, d_weight_gg, d_ifo0 if fgr else None,
            None, None, None, None, None, None, None, None, None, None)


lstm_family_forward.register_autograd(_lstm_gradients, setup_context=_lstm_setup_context)


# ----- the GRU ---------------------------------------------------------------------------------------
def _gru_forward(u: Tensor, h0: Tensor, weight_hh: Tensor, bias_hh: Tensor | None, lengths: Tensor,
                 original: bool, recurrent_mask: Tensor | None = None, zoneout_h: Tensor | None = None,
                 zoneout_rate: float = 0.0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """h_all (T, B, H) (the zoned states, zero past each end), gates (T, B, 3H) = r, z, n, saved
    (T, B, H) (standard: U_n h_in + b_hn; original: r ⊙ h_in, h_in = h ⊙ recurrent_mask or h) and the
    final h (B, H). weight_hh U (3H, H). Masks: see above."""
    T, B, _ = u.shape
    return tuple(kernels.gru_forward(u.contiguous(), h0.contiguous(), _transposed(weight_hh, T),
                                     _or_empty(bias_hh, u), _or_empty(recurrent_mask, u),
                                     _steps_contiguous(zoneout_h, u), zoneout_rate, original,
                                     running_counts(lengths, T, B)))


gru_forward = _operator("rnnkit::gru_forward", _gru_forward)


@gru_forward.register_fake
def _(u, h0, weight_hh, bias_hh, lengths, original, recurrent_mask=None, zoneout_h=None, zoneout_rate=0.0):
    T, B, G = u.shape
    H = h0.shape[-1]
    return u.new_empty(T, B, H), u.new_empty(T, B, G), u.new_empty(T, B, H), u.new_empty(B, H)


def _gru_backward(grad_h_all: Tensor, grad_h: Tensor, gates: Tensor, saved: Tensor, h_all: Tensor,
                  h0: Tensor, weight_hh: Tensor, lengths: Tensor, original: bool,
                  recurrent_mask: Tensor | None = None, zoneout_h: Tensor | None = None,
                  zoneout_rate: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """d_u (T, B, 3H), d_rec (T, B, 3H) (the gradient of U h_in + b_hh's rows; original: of
    [U_rz h_in + b_rz, U_n (r ⊙ h_in) + b_n]) and dh0 (B, H)."""
    T, B, _ = gates.shape
    return tuple(kernels.gru_backward(grad_h_all.contiguous(), grad_h.contiguous(), gates.contiguous(),
                                      saved.contiguous(), h_all.contiguous(), h0.contiguous(),
                                      weight_hh.contiguous(), _or_empty(recurrent_mask, gates),
                                      _steps_contiguous(zoneout_h, gates), zoneout_rate, original,
                                      running_counts(lengths, T, B)))


gru_backward = _operator("rnnkit::gru_backward", _gru_backward)


@gru_backward.register_fake
def _(grad_h_all, grad_h, gates, saved, h_all, h0, weight_hh, lengths, original, recurrent_mask=None,
      zoneout_h=None, zoneout_rate=0.0):
    return torch.empty_like(gates), torch.empty_like(gates), h0.new_empty(h0.shape)


_GRU_MASKS = (None, None, 0.0)                  # recurrent_mask, zoneout_h, zoneout_rate


def _gru_setup_context(ctx, inputs, output) -> None:
    u, h0, weight_hh, bias_hh, lengths, original, *masks = inputs
    recurrent_mask, zoneout_h, rate = (*masks, *_GRU_MASKS[len(masks):])
    h_all, gates, saved, _ = output
    ctx.mark_non_differentiable(gates, saved)
    ctx.set_materialize_grads(False)
    ctx.original, ctx.has_bias, ctx.rate = original, bias_hh is not None, rate
    ctx.save_for_backward(h_all, gates, saved, h0, weight_hh, lengths, recurrent_mask, zoneout_h)


def _gru_gradients(ctx, grad_h_all, _grad_gates, _grad_saved, grad_h):
    h_all, gates, saved, h0, weight_hh, lengths, recurrent_mask, zoneout_h = ctx.saved_tensors
    H = h0.shape[-1]
    d_u, d_rec, dh0 = call(gru_backward, _or_zeros(grad_h_all, h_all), _or_zeros(grad_h, h0), gates, saved,
                           h_all, h0, weight_hh, lengths, ctx.original, recurrent_mask, zoneout_h, ctx.rate)
    # Once per sequence: dU = Σ δ(U h_in)ᵀ h_in,{t−1} (original: U_n's rows see r ⊙ h_in), db = Σ δ.
    h_in = previous_steps(h_all, h0)                                            # (T, B, H)
    if recurrent_mask is not None:
        h_in = h_in * recurrent_mask
    if ctx.original:
        d_weight = torch.cat([summed_outer(d_rec[..., :2 * H], h_in), summed_outer(d_rec[..., 2 * H:], saved)])
    else:
        d_weight = summed_outer(d_rec, h_in)                                    # (3H, H)
    return d_u, dh0, d_weight, summed(d_rec) if ctx.has_bias else None, None, None, None, None, None


gru_forward.register_autograd(_gru_gradients, setup_context=_gru_setup_context)


# ----- minGRU / minLSTM ------------------------------------------------------------------------------
def _minimal_scan_forward(u: Tensor, h0: Tensor, lengths: Tensor, lstm: bool) -> Tensor:
    """h (T, B, H); past a sequence's end h holds its last state, so h[T−1] is the final state.
    ``lstm``: minLSTM's coefficients (u = [k_f, k_i, p]), else minGRU's (u = [k, p])."""
    return kernels.minimal_scan_forward(u.contiguous(), h0.contiguous(), lengths.contiguous(), lstm)


minimal_scan_forward = _operator("rnnkit::minimal_scan_forward", _minimal_scan_forward)


@minimal_scan_forward.register_fake
def _(u, h0, lengths, lstm):
    T, B, _ = u.shape
    return u.new_empty(T, B, h0.shape[-1])


def _minimal_scan_backward(u: Tensor, h: Tensor, h0: Tensor, grad_h: Tensor, lengths: Tensor,
                           lstm: bool) -> tuple[Tensor, Tensor]:
    """d_u (T, B, G) and dh0 (B, H) from grad_h (T, B, H), h's gradient through every path."""
    return tuple(kernels.minimal_scan_backward(u.contiguous(), h.contiguous(), h0.contiguous(),
                                               grad_h.contiguous(), lengths.contiguous(), lstm))


minimal_scan_backward = _operator("rnnkit::minimal_scan_backward", _minimal_scan_backward)


@minimal_scan_backward.register_fake
def _(u, h, h0, grad_h, lengths, lstm):
    return torch.empty_like(u), torch.empty_like(h0)


def _minimal_setup_context(ctx, inputs, output) -> None:
    u, h0, lengths, lstm = inputs
    ctx.lstm = lstm
    ctx.save_for_backward(u, output, h0, lengths)


def _minimal_gradients(ctx, grad_h):
    u, h, h0, lengths = ctx.saved_tensors
    d_u, d_h0 = call(minimal_scan_backward, u, h, h0, grad_h, lengths, ctx.lstm)
    return d_u, d_h0, None, None


minimal_scan_forward.register_autograd(_minimal_gradients, setup_context=_minimal_setup_context)


# ----- calling the ops -------------------------------------------------------------------------------
class _EagerForward(torch.autograd.Function):
    """A forward op's implementation as an autograd.Function with the op's own gradient formula, for
    eager calls: torch's Python dispatch of a custom op with a registered gradient measured 0.14 ms
    per call of the LSTM's (``torch._library.utils.fill_defaults`` walks the schema once per
    argument), several times a one-step loop at batch 1; this costs what a plain autograd.Function
    costs."""
    implementation = setup = formula = None

    @classmethod
    def forward(cls, ctx, *args):      # ctx in forward: a separate setup_context costs an inspect.signature per call
        output = cls.implementation(*args)
        cls.setup(ctx, args, output)
        return output

    @classmethod
    def backward(cls, ctx, *grads):
        return cls.formula(ctx, *grads)


def _eager(name: str, implementation, setup, formula) -> type[torch.autograd.Function]:
    """The eager autograd.Function ``name`` of one forward op (its graph node: ``<name>Backward``)."""
    return type(name, (_EagerForward,), dict(implementation=staticmethod(implementation),
                                              setup=staticmethod(setup), formula=staticmethod(formula)))


# op: (its Python implementation, the autograd.Function that runs it eagerly with its gradient)
_EAGER = {
    lstm_family_forward: (_lstm_family_forward,
                          _eager("_FusedLSTM", _lstm_family_forward, _lstm_setup_context, _lstm_gradients)),
    lstm_family_backward: (_lstm_family_backward, None),
    gru_forward: (_gru_forward, _eager("_FusedGRU", _gru_forward, _gru_setup_context, _gru_gradients)),
    gru_backward: (_gru_backward, None),
    minimal_scan_forward: (_minimal_scan_forward,
                           _eager("_FusedMinimal", _minimal_scan_forward, _minimal_setup_context,
                                  _minimal_gradients)),
    minimal_scan_backward: (_minimal_scan_backward, None),
}


def call(op, *args):
    """``op(*args)`` by the cheapest route that computes the same thing: through torch's dispatcher
    where a tracer sees the call (the op is then one node of its graph); on real tensors in eager mode
    its implementation, inside an autograd.Function with the same gradient formula where a gradient
    will be asked for, else directly (inference, streaming)."""
    if _traced(args):
        return op(*args)
    implementation, differentiable = _EAGER[op]
    if differentiable is not None and torch.is_grad_enabled() and any(
            isinstance(a, Tensor) and a.requires_grad for a in args):
        return differentiable.apply(*args)
    return implementation(*args)


def _traced(args) -> bool:
    """Whether a tracer sees this call: torch.compile or torch.export, a dispatch mode (make_fx,
    AOTAutograd, FakeTensorMode), a torch.func transform, or a tensor subclass (a FakeTensor) among
    the arguments. Then the kernels' data pointers are not there to run on."""
    return (torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack() > 0
            or torch._C._functorch.peek_interpreter_stack() is not None
            or any(isinstance(a, Tensor) and type(a) not in _PLAIN_TENSORS for a in args))


_PLAIN_TENSORS = (Tensor, torch.nn.Parameter)
