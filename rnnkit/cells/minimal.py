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
from .base import Params, RecurrentCell, State
from .functional import affine
from .registry import register


class _MinimalCell(RecurrentCell):
    """What minGRU and minLSTM share: input-only gates, so that a layer reduces to the linear
    recurrence h_t = a_t ⊙ h_{t−1} + (1 − a_t) ⊙ h̃_t with (a_t, h̃_t) = ``coefficients(u_t)``.

    Besides the step, the cells give the math the engine's scans need: ``coefficients`` (and its
    hand-derived ``coefficients_backward``) for the time-ordered scan, ``log_coefficients`` for the
    log-space parallel scan (``rnnkit.engine.scan``); which one runs is the dispatcher's choice."""

    takes_recurrent_dropout = False   # no recurrent matrix: there is nothing to drop
    n_projections = 0

    def __init__(self, input_size, hidden_size, *, bias=True, own_parameters=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, own_parameters=own_parameters,
                         device=device, dtype=dtype)
        self.bias = bias
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

@register("mingru")
class MinGRUCell(_MinimalCell):
    r"""minGRU (Feng et al. 2024), log-space form.

    .. math::
        z_t = σ(W_z x_t + b_z), \quad \tilde h_t = g(W_h x_t + b_h), \quad
        h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ \tilde h_t

    with g(a) = a + ½ for a ≥ 0 and σ(a) otherwise, which keeps \tilde h positive for the scan.
    A layer runs the step above (``backend="reference"``), the log-space parallel scan over the
    whole sequence (``"parallel_scan"``, first on a GPU) or the coefficients of all steps at once
    and h_t = a_t ⊙ h_{t−1} + b_t in time order (``"scan"``, and its compiled form ``"fused"``, first
    on a CPU); all give the same result (``rnnkit.engine.dispatch``).

    Args:
        input_size, hidden_size: I, H (``own_parameters``, ``device``, ``dtype``: see ``RecurrentCell``).
        bias: whether the cell has ``bias_ih``.

    Attributes:
        weight_ih: (2H, I), stacked [z; h̃].
        bias_ih: (2H).

    Example:
        >>> import torch, rnnkit
        >>> x = torch.randn(50, 2, 3)                                     # x (T, B, I)
        >>> scan = rnnkit.Recurrent("mingru", 3, 8, backend="parallel_scan")
        >>> loop = rnnkit.Recurrent("mingru", 3, 8, backend="reference")
        >>> loop.load_state_dict(scan.state_dict())
        <All keys matched successfully>
        >>> output, h = scan(x)
        >>> output.shape, torch.allclose(output, loop(x)[0], atol=1e-4)   # (T, B, H), one result
        (torch.Size([50, 2, 8]), True)
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

    Args:
        input_size, hidden_size: I, H (``own_parameters``, ``device``, ``dtype``: see ``RecurrentCell``).
        bias: whether the cell has ``bias_ih``.

    Attributes:
        weight_ih: (3H, I), stacked [f; i; h̃].
        bias_ih: (3H).

    Example:
        >>> import torch, rnnkit
        >>> cell = rnnkit.cells.create("minlstm", 3, 8)
        >>> y, (h,) = cell(torch.randn(2, 3))                # one step from zeros: x_t (B, I)
        >>> h.shape, cell.weight_ih.shape                    # three projections of the input alone
        (torch.Size([2, 8]), torch.Size([24, 3]))
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
