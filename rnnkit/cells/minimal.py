"""minGRU and minLSTM: gates that see only the input, so the recurrence is a linear scan.

L. Feng, F. Tung, M. O. Ahmed, Y. Bengio, H. Hajimirsadeghi, "Were RNNs All We Needed?",
arXiv:2410.01201, 2024. The parallel form is the log-space scan of F. A. Heinsen,
"Efficient Parallelization of a Ubiquitous Sequential Computation", arXiv:2311.06281, 2023.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .activations import log_positive_g, positive_g, positive_g_derivative
from .base import Params, RecurrentCell, State, check_choice
from .functional import affine
from .registry import register
from ..engine.scan import gated_scan


def log_space_scan(log_a: Tensor, log_b: Tensor, h0: Tensor, valid: Tensor | None = None) -> Tensor:
    r"""All h_t of h_t = a_t ⊙ h_{t-1} + b_t at once, from log a_t and log b_t (b_t > 0).

    With a*_t = Σ_{k≤t} log a_k:  h_t = e^{a*_t} h_0 + exp(a*_t + logcumsumexp_k≤t(log b_k − a*_k)).
    h_0 may have any sign (it is kept out of the logarithms). Where ``valid`` (T, B) is False the
    step is skipped (a = 1, b = 0), so the state stays at each sequence's last valid step.

    Shapes: log_a, log_b (T, B, H); h0 (B, H); returns (T, B, H).
    """
    if valid is not None:
        keep = valid.unsqueeze(-1)                                              # (T, B, 1)
        log_a = torch.where(keep, log_a, torch.zeros_like(log_a))
        log_b = torch.where(keep, log_b, torch.full_like(log_b, float("-inf")))
    a_star = torch.cumsum(log_a, dim=0)                                         # (T, B, H)
    return torch.exp(a_star) * h0 + torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=0))


class _MinimalCell(RecurrentCell):
    """What minGRU and minLSTM share: input-only gates, a state-free step, a parallel scan."""

    takes_recurrent_dropout = False   # no recurrent matrix: there is nothing to drop
    n_projections = 0

    def __init__(self, input_size, hidden_size, *, mode="auto", bias=True,
                 own_parameters=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, own_parameters=own_parameters,
                         device=device, dtype=dtype)
        check_choice("mode", mode, ("auto", "parallel", "scan", "sequential"))
        self.mode, self.bias = mode, bias
        self._build()

    def parameter_shapes(self):
        G = self.n_projections * self.hidden_size
        shapes = {"weight_ih": (G, self.input_size)}
        if self.bias:
            shapes["bias_ih"] = (G,)
        return shapes

    def project_input(self, p: Params, x: Tensor) -> Tensor:
        return affine(x, p["weight_ih"], p.get("bias_ih"))                     # (T, B, G)

    def step(self, p: Params, u_t: Tensor, state: State, recurrent_mask=None):
        y, state, _ = self.step_with_gates(p, u_t, state, recurrent_mask)
        return y, state

    def step_with_gates(self, p: Params, u_t: Tensor, state: State, recurrent_mask=None):
        (h,) = state                                                            # (B, H)
        a, h_tilde = self.coefficients(u_t)
        h = a * h + (1 - a) * h_tilde
        return h, (h,), {self.update_gate: 1 - a}

    # Hand BPTT for the sequential mode: with h_t = a_t h_{t-1} + (1 − a_t) h̃_t,
    # δh_{t-1} = a_t δh_t, δa_t = δh_t ⊙ (h_{t-1} − h̃_t), δh̃_t = δh_t ⊙ (1 − a_t); then through
    # a_t and h̃_t to u_t (``coefficients_backward``). There are no recurrent weights.
    def supports_hand_bptt(self):
        return True

    def step_saving(self, p, u_t, state):
        (h_prev,) = state
        a, h_tilde = self.coefficients(u_t)
        return (a * h_prev + (1 - a) * h_tilde,), {"u": u_t, "h_prev": h_prev, "a": a, "h_tilde": h_tilde}

    def step_backward(self, p, cache, grad_state):
        (dh,) = grad_state
        a = cache["a"]
        d_a, d_h_tilde = dh * (cache["h_prev"] - cache["h_tilde"]), dh * (1 - a)
        return self.coefficients_backward(cache["u"], a, d_a, d_h_tilde), (a * dh,), {}

    def recurrent_grads(self, p, records):
        return {}

    def scan(self, p: Params, u: Tensor, state: State, valid: Tensor | None) -> tuple[Tensor, State] | None:
        """The whole sequence at once, or None in sequential mode (the loop then runs ``step``).

        ``"parallel"``: the log-space scan; ``"scan"``: the coefficients of all steps at once, then
        the linear recurrence in time order (``rnnkit.engine.scan``); ``"auto"``: the parallel scan
        on a GPU, the time-ordered one elsewhere (faster on a CPU, where B·H fills the cores)."""
        mode = self.mode
        if mode == "auto":
            mode = "parallel" if u.is_cuda else "scan"
        if mode == "parallel":
            log_a, log_b = self.log_coefficients(u)
            h = log_space_scan(log_a, log_b, state[0], valid)                   # (T, B, H)
        elif mode == "scan":
            h = gated_scan(self, u, state[0], valid)                            # (T, B, H)
        else:
            return None
        return h, (h[-1],)

    def extra_repr(self):
        return f"{super().extra_repr()}, mode={self.mode!r}"


@register("mingru")
class MinGRUCell(_MinimalCell):
    r"""minGRU (Feng et al. 2024), log-space form.

    .. math::
        z_t = σ(W_z x_t + b_z), \quad \tilde h_t = g(W_h x_t + b_h), \quad
        h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ \tilde h_t

    with g(a) = a + ½ for a ≥ 0 and σ(a) otherwise, which keeps \tilde h positive for the scan.
    Parameters: ``weight_ih`` (2H, I) stacked [z; h̃], ``bias_ih`` (2H).
    ``mode="parallel"`` runs the log-space scan over the whole sequence; ``"scan"`` computes the
    coefficients of all steps at once and runs h_t = a_t ⊙ h_{t−1} + b_t in time order with a
    hand-derived backward (the fast form on a CPU); ``"sequential"`` runs the step above (the
    reference); ``"auto"`` (default) is ``"parallel"`` on a GPU and ``"scan"`` elsewhere. All give
    the same result.
    """

    n_projections = 2
    update_gate = "z"

    def coefficients(self, u_t):
        k, a = u_t.chunk(2, dim=-1)                                             # each (B, H)
        return 1 - torch.sigmoid(k), positive_g(a)

    def coefficients_backward(self, u_t, a, d_a, d_h_tilde):
        k, pre = u_t.chunk(2, dim=-1)                                           # each (B, H)
        z = 1 - a                                                               # a = 1 − σ(k)
        return torch.cat([-d_a * z * (1 - z), d_h_tilde * positive_g_derivative(pre)], dim=-1)

    def log_coefficients(self, u):
        k, a = u.chunk(2, dim=-1)                                               # each (T, B, H)
        log_z = -F.softplus(-k)
        return -F.softplus(k), log_z + log_positive_g(a)                       # log(1-z), log(z h̃)


@register("minlstm")
class MinLSTMCell(_MinimalCell):
    r"""minLSTM (Feng et al. 2024), log-space form, with normalised gates.

    .. math::
        f_t = σ(W_f x_t + b_f), \quad i_t = σ(W_i x_t + b_i), \quad \tilde h_t = g(W_h x_t + b_h) \\
        f'_t = f_t / (f_t + i_t), \quad i'_t = i_t / (f_t + i_t), \quad
        h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ \tilde h_t

    Parameters: ``weight_ih`` (3H, I) stacked [f; i; h̃], ``bias_ih`` (3H).
    """

    n_projections = 3
    update_gate = "i'"   # the normalised input gate i' = i / (f + i)

    # f' = f / (f + i) is computed as σ(log f − log i) = σ(softplus(−k_i) − softplus(−k_f)): the same
    # number, but f and i can both underflow to 0 (k below about −88 in float32) where their ratio
    # cannot. Its derivatives: ∂f'/∂k_f = f'(1 − f')(1 − f), ∂f'/∂k_i = −f'(1 − f')(1 − i).
    def coefficients(self, u_t):
        k_f, k_i, a = u_t.chunk(3, dim=-1)                                      # each (B, H)
        return torch.sigmoid(F.softplus(-k_i) - F.softplus(-k_f)), positive_g(a)  # f' and h̃; i' = 1 − f'

    def coefficients_backward(self, u_t, a, d_a, d_h_tilde):
        k_f, k_i, pre = u_t.chunk(3, dim=-1)                                    # each (B, H)
        d_a_a = d_a * a * (1 - a)                                               # a = f' (B, H)
        return torch.cat([d_a_a * (1 - torch.sigmoid(k_f)), -d_a_a * (1 - torch.sigmoid(k_i)),
                          d_h_tilde * positive_g_derivative(pre)], dim=-1)

    def log_coefficients(self, u):
        k_f, k_i, a = u.chunk(3, dim=-1)                                        # each (T, B, H)
        log_f, log_i = -F.softplus(-k_f), -F.softplus(-k_i)
        log_norm = torch.logaddexp(log_f, log_i)
        return log_f - log_norm, log_i - log_norm + log_positive_g(a)
