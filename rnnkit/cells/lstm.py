"""Long short-term memory and the variants of the LSTM search-space odyssey.

S. Hochreiter, J. Schmidhuber, "Long Short-Term Memory", Neural Computation 9(8), 1997.
F. A. Gers, J. Schmidhuber, F. Cummins, "Learning to Forget", 2000 (the forget gate).
K. Greff, R. K. Srivastava, J. Koutník, B. R. Steunebrink, J. Schmidhuber,
"LSTM: A Search Space Odyssey", IEEE TNNLS 2017, arXiv:1503.04069 (vanilla LSTM and 8 variants).
H. Sak, A. Senior, F. Beaufays, "Long Short-Term Memory Based Recurrent Neural Network
Architectures for Large Vocabulary Speech Recognition", arXiv:1402.1128, 2014 (projection, LSTMP).
J. L. Ba, J. R. Kiros, G. E. Hinton, "Layer Normalization", arXiv:1607.06450, 2016 (LN-LSTM).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .activations import DERIVATIVES_FROM_OUTPUT, NONLINEARITIES
from .base import Params, RecurrentCell, State, check_choice
from .functional import affine, init_layer_norm, layer_norm, masked, summed, summed_outer
from .registry import register

# Which gates each variant computes (in the order they are stacked in weight_ih / weight_hh),
# and what each variant changes relative to the vanilla LSTM of Greff et al.
VARIANTS: dict[str, str] = {
    "standard": "torch.nn.LSTM: no peepholes (the same equations as 'np')",
    "vanilla": "Greff et al.'s vanilla LSTM: peepholes p_i, p_f on c_{t-1} and p_o on c_t",
    "nig": "no input gate (i = 1)",
    "nfg": "no forget gate (f = 1)",
    "nog": "no output gate (o = 1)",
    "niaf": "no input activation function (g = identity)",
    "noaf": "no output activation function (h = identity)",
    "np": "no peepholes",
    "cifg": "coupled input and forget gate (f = 1 - i)",
    "fgr": "full gate recurrence (i, f, o also see i_{t-1}, f_{t-1}, o_{t-1})",
}
_GATES = {"nig": "fgo", "nfg": "igo", "cifg": "igo", "nog": "ifg"}


@register("lstm")
class LSTMCell(RecurrentCell):
    r"""LSTM cell, in torch.nn.LSTM's form and in the nine forms of Greff et al. 2017.

    Vanilla LSTM (Greff et al. 2017, with the previous output written h_{t-1}):

    .. math::
        i_t &= σ(W_i x_t + U_i h_{t-1} + p_i ⊙ c_{t-1} + b_i)        \\
        f_t &= σ(W_f x_t + U_f h_{t-1} + p_f ⊙ c_{t-1} + b_f)        \\
        g_t &= \tanh(W_g x_t + U_g h_{t-1} + b_g)                    \\
        c_t &= f_t ⊙ c_{t-1} + i_t ⊙ g_t                              \\
        o_t &= σ(W_o x_t + U_o h_{t-1} + p_o ⊙ c_t + b_o)            \\
        h_t &= o_t ⊙ \tanh(c_t)

    ``variant="standard"`` is torch.nn.LSTM (no peepholes). The Odyssey variants each change one
    thing: ``nig`` i=1, ``nfg`` f=1, ``nog`` o=1, ``niaf`` g without tanh, ``noaf`` h = o ⊙ c,
    ``np`` no peepholes, ``cifg`` f = 1 − i, ``fgr`` adds R·[i,f,o]_{t-1} to the gates' inputs.
    State: (h (B, P or H), c (B, H)), plus the previous gates (B, 3H) for ``fgr``.

    Args:
        input_size, hidden_size: I, H (``own_parameters``, ``device``, ``dtype``: see ``RecurrentCell``).
        variant: ``"standard"`` (default) or a name of ``LSTM_VARIANTS`` (``"vanilla"``, ``"cifg"``, ...).
        proj_size: P, in [0, H): when P > 0, h_t = W_hr (o_t ⊙ tanh(c_t)), of size P (LSTMP, Sak et al.).
        bias: whether the cell has ``bias_ih`` and ``bias_hh``.
        forget_bias: initial value of the forget gate's bias (None: the default draw; 1.0 is
            Jozefowicz et al. 2015's advice; for ``cifg``, whose forget gate is 1 − i = σ(−a_i),
            the input gate's bias is set to −forget_bias).
        layer_norm: LN(W x) + LN(U h) + b for the gates and h_t = o ⊙ tanh(LN(c_t)) (Ba et al. 2016).

    Attributes:
        weight_ih: (G·H, I), the G gates stacked in the order i, f, g, o (torch's), leaving out
            the ones a variant drops.
        weight_hh: (G·H, P or H).
        bias_ih, bias_hh: (G·H).
        peephole_i, peephole_f, peephole_o: p_i, p_f, p_o (H), for the variants with peepholes.
        weight_hr: (P, H) when ``proj_size`` P > 0.
        weight_gg: R (3H, 3H) for ``fgr``.
        ln_ih_weight, ln_ih_bias, ln_hh_weight, ln_hh_bias: layer norm's gains and shifts (G·H) when
            ``layer_norm``; ln_c_weight, ln_c_bias (H) for c_t.

    Example:
        >>> import torch, rnnkit
        >>> cell = rnnkit.cells.create("lstm", 3, 8, variant="cifg", forget_bias=1.0)
        >>> y, (h, c) = cell(torch.randn(2, 3))                       # x_t (B, I)
        >>> h.shape, c.shape, cell.weight_ih.shape                    # cifg: 3 gates (i, g, o)
        (torch.Size([2, 8]), torch.Size([2, 8]), torch.Size([24, 3]))
        >>> lstmp = rnnkit.Recurrent("lstm", 3, 8, proj_size=4, variant="vanilla")
        >>> output, (h, c) = lstmp(torch.randn(7, 2, 3))             # x (T, B, I)
        >>> output.shape, h.shape, c.shape                            # h projected to P = 4
        (torch.Size([7, 2, 4]), torch.Size([1, 2, 4]), torch.Size([1, 2, 8]))
    """

    def __init__(self, input_size: int, hidden_size: int, *, variant: str = "standard",
                 proj_size: int = 0, bias: bool = True, forget_bias: float | None = None,
                 layer_norm: bool = False, own_parameters: bool = True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, own_parameters=own_parameters,
                         device=device, dtype=dtype)
        check_choice("variant", variant, tuple(VARIANTS))
        if isinstance(proj_size, bool) or not isinstance(proj_size, int) or not 0 <= proj_size < hidden_size:
            raise ValueError(f"proj_size must be an int in [0, hidden_size={hidden_size}), got {proj_size!r}")
        self.variant, self.proj_size, self.bias = variant, proj_size, bias
        self.layer_norm = bool(layer_norm)
        self.gates = _GATES.get(variant, "ifgo")
        if forget_bias is not None and (isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float))
                                        or not math.isfinite(forget_bias)):
            raise ValueError(f"forget_bias must be a finite number or None, got {forget_bias!r}")
        if forget_bias is not None and variant in ("nfg",):
            raise ValueError(f"forget_bias must be None for variant {variant!r}, which has no forget gate "
                             f"(f = 1); got forget_bias={forget_bias!r}")
        if forget_bias is not None and not bias:
            raise ValueError(f"forget_bias needs bias=True (it initialises the forget gate's bias); "
                             f"got forget_bias={forget_bias!r} with bias=False")
        self.forget_bias = forget_bias
        self.peepholes = "" if variant in ("standard", "np") else \
            "".join(g for g in "ifo" if g in self.gates and not (variant == "cifg" and g == "f"))
        self.g_name = "identity" if variant == "niaf" else "tanh"
        self.h_name = "identity" if variant == "noaf" else "tanh"
        self.g_act, self.h_act = NONLINEARITIES[self.g_name], NONLINEARITIES[self.h_name]
        self.state_names = ("h", "c", "ifo") if variant == "fgr" else ("h", "c")
        self._build()

    @property
    def output_size(self) -> int:
        return self.proj_size or self.hidden_size

    def state_sizes(self):
        sizes = (self.output_size, self.hidden_size)
        return sizes + (3 * self.hidden_size,) if self.variant == "fgr" else sizes

    def parameter_shapes(self):
        H, I, P, G = self.hidden_size, self.input_size, self.output_size, len(self.gates) * self.hidden_size
        shapes = {"weight_ih": (G, I), "weight_hh": (G, P)}
        if self.bias:
            shapes.update(bias_ih=(G,), bias_hh=(G,))
        if self.proj_size:
            shapes["weight_hr"] = (P, H)
        for gate in self.peepholes:
            shapes[f"peephole_{gate}"] = (H,)
        if self.variant == "fgr":
            shapes["weight_gg"] = (3 * H, 3 * H)
        if self.layer_norm:
            shapes.update(ln_ih_weight=(G,), ln_ih_bias=(G,), ln_hh_weight=(G,), ln_hh_bias=(G,),
                          ln_c_weight=(H,), ln_c_bias=(H,))
        return shapes

    def init_parameters(self, p: Params) -> None:
        super().init_parameters(p)
        init_layer_norm(p)
        if self.forget_bias is not None and self.bias:
            # CIFG's forget gate is 1 − i = σ(−a_i): its bias is the input gate's, negated.
            gate, value = ("i", -self.forget_bias) if self.variant == "cifg" else ("f", self.forget_bias)
            H, k = self.hidden_size, self.gates.index(gate)
            with torch.no_grad():
                p["bias_ih"][k * H:(k + 1) * H].fill_(value)
                p["bias_hh"][k * H:(k + 1) * H].zero_()

    def project_input(self, p: Params, x: Tensor) -> Tensor:
        if not self.layer_norm:
            return affine(x, p["weight_ih"], p.get("bias_ih"))                  # (T, B, G·H)
        a = layer_norm(affine(x, p["weight_ih"]), p, "ln_ih")                   # (T, B, G·H)
        return a if not self.bias else a + p["bias_ih"]

    def step(self, p: Params, u_t: Tensor, state: State, recurrent_mask=None):
        y, state, _ = self.step_with_gates(p, u_t, state, recurrent_mask)
        return y, state

    def step_with_gates(self, p: Params, u_t: Tensor, state: State, recurrent_mask=None):
        h, new_state, parts = self._step_parts(p, u_t, state, recurrent_mask)
        return h, new_state, {k: parts[k] for k in "ifo" if k in parts}

    def _step_parts(self, p: Params, u_t: Tensor, state: State, recurrent_mask=None):
        """The step, with every intermediate by its letter: gates i, f, o, input g, squashed cell s."""
        h, c = state[0], state[1]                                               # (B, P), (B, H)
        if self.layer_norm:
            a = u_t + layer_norm(affine(masked(h, recurrent_mask), p["weight_hh"]), p, "ln_hh")
            a = a if not self.bias else a + p["bias_hh"]
        else:
            a = u_t + affine(masked(h, recurrent_mask), p["weight_hh"], p.get("bias_hh"))
        pre = dict(zip(self.gates, a.chunk(len(self.gates), dim=-1)))           # each (B, H)
        if self.variant == "fgr":
            i_prev_r, f_prev_r, o_prev_r = affine(state[2], p["weight_gg"]).chunk(3, dim=-1)
            pre["i"], pre["f"], pre["o"] = pre["i"] + i_prev_r, pre["f"] + f_prev_r, pre["o"] + o_prev_r

        i = self._gate(p, pre, "i", c)
        f = (1 - i) if self.variant == "cifg" else self._gate(p, pre, "f", c)
        g = self.g_act(pre["g"])
        c = (c if f is None else f * c) + (g if i is None else i * g)           # (B, H)
        o = self._gate(p, pre, "o", c)
        s = self.h_act(layer_norm(c, p, "ln_c") if self.layer_norm else c)
        h = s if o is None else o * s                                           # (B, H)
        if self.proj_size:
            h = affine(h, p["weight_hr"])                                       # (B, P)
        parts = {name: value for name, value in (("i", i), ("f", f), ("o", o)) if value is not None}
        parts.update(g=g, s=s)
        if self.variant == "fgr":
            return h, (h, c, torch.cat([i, f, o], dim=-1)), parts              # ifo: (B, 3H)
        return h, (h, c), parts

    def _gate(self, p: Params, pre: dict[str, Tensor], gate: str, c: Tensor) -> Tensor | None:
        """σ(pre + p ⊙ c) for a gate with a peephole, σ(pre) without; None for a gate fixed at 1."""
        if gate not in pre:
            return None
        if gate in self.peepholes:
            return torch.sigmoid(pre[gate] + p[f"peephole_{gate}"] * c)
        return torch.sigmoid(pre[gate])

    # ----- hand-derived BPTT (every variant and proj_size; layer_norm falls back to autograd) -----
    def supports_hand_bptt(self):
        return not self.layer_norm

    def step_saving(self, p, u_t, state):
        _, new_state, parts = self._step_parts(p, u_t, state)
        cache = {"h_prev": state[0], "c_prev": state[1], "c": new_state[1], **parts}
        if self.variant == "fgr":
            cache["ifo_prev"] = state[2]
        return new_state, cache

    def step_backward(self, p, cache, grad_state):
        r"""One step of the LSTM's δ recursion (vanilla form; absent gates are the constant 1):

        δm = W_hrᵀ δh (or δh),  δo = δm ⊙ s,  δs = δm ⊙ o,  s = h_act(c_t)
        δc_t = δc_{t+1 → t} + δs ⊙ h_act'(c_t) + p_o ⊙ δâ_o,        δâ_o = δo ⊙ o(1 − o)
        δi = δc_t ⊙ g,  δf = δc_t ⊙ c_{t−1},  δg = δc_t ⊙ i      (CIFG: δi −= δf, f = 1 − i)
        δâ_i = δi ⊙ i(1 − i),  δâ_f = δf ⊙ f(1 − f),  δâ_g = δg ⊙ g_act'(g)
        δc_{t−1} = δc_t ⊙ f + p_i ⊙ δâ_i + p_f ⊙ δâ_f,   δh_{t−1} = Uᵀ δâ
        """
        dh, dc = grad_state[0], grad_state[1]
        i, f, o, g, c, c_prev = (cache.get(k) for k in ("i", "f", "o", "g", "c", "c_prev"))
        record = {"h_prev": cache["h_prev"]}
        if self.proj_size:
            record.update(d_m=dh, m=cache["s"] if o is None else o * cache["s"])
            dh = dh @ p["weight_hr"]                                            # (B, H)
        d_pre = {}
        if self.variant == "fgr":
            d_i_prev, d_f_prev, d_o_prev = grad_state[2].chunk(3, dim=-1)     # δ of the ifo state
        if o is not None:
            d_o = dh * cache["s"] + (d_o_prev if self.variant == "fgr" else 0)
            d_pre["o"] = d_o * o * (1 - o)
            d_s = dh * o
        else:
            d_s = dh
        dc = dc + d_s * DERIVATIVES_FROM_OUTPUT[self.h_name](cache["s"])
        if "o" in self.peepholes:
            dc = dc + d_pre["o"] * p["peephole_o"]
        d_g = dc if i is None else dc * i
        d_pre["g"] = d_g * DERIVATIVES_FROM_OUTPUT[self.g_name](g)
        dc_prev = dc if f is None else dc * f
        if i is not None:
            d_i = dc * g + (d_i_prev if self.variant == "fgr" else 0)
            if self.variant == "cifg":
                d_i = d_i - dc * c_prev                                         # f = 1 − i
            d_pre["i"] = d_i * i * (1 - i)
        if f is not None and self.variant != "cifg":
            d_f = dc * c_prev + (d_f_prev if self.variant == "fgr" else 0)
            d_pre["f"] = d_f * f * (1 - f)
        for gate in self.peepholes:
            if gate != "o":
                dc_prev = dc_prev + d_pre[gate] * p[f"peephole_{gate}"]
                record[f"d_peephole_{gate}"] = d_pre[gate] * c_prev
        if "o" in self.peepholes:
            record["d_peephole_o"] = d_pre["o"] * c
        d_a = torch.cat([d_pre[gate] for gate in self.gates], dim=-1)          # (B, G·H)
        record["d_a"] = d_a
        grad_prev = (d_a @ p["weight_hh"], dc_prev)
        if self.variant == "fgr":
            d_ifo_pre = torch.cat([d_pre["i"], d_pre["f"], d_pre["o"]], dim=-1)   # (B, 3H)
            record.update(d_ifo=d_ifo_pre, ifo_prev=cache["ifo_prev"])
            grad_prev = grad_prev + (d_ifo_pre @ p["weight_gg"],)
        return d_a, grad_prev, record

    def recurrent_grads(self, p, records):
        grads = {"weight_hh": summed_outer(records["d_a"], records["h_prev"])}
        if self.bias:
            grads["bias_hh"] = summed(records["d_a"])
        if self.proj_size:
            grads["weight_hr"] = summed_outer(records["d_m"], records["m"])
        for gate in self.peepholes:
            grads[f"peephole_{gate}"] = summed(records[f"d_peephole_{gate}"])
        if self.variant == "fgr":
            grads["weight_gg"] = summed_outer(records["d_ifo"], records["ifo_prev"])
        return grads

    def extra_repr(self):
        extra = f", proj_size={self.proj_size}" if self.proj_size else ""
        extra += ", layer_norm=True" if self.layer_norm else ""
        return f"{super().extra_repr()}, variant={self.variant!r}{extra}"
