"""Gated recurrent unit.

K. Cho, B. van Merriënboer, C. Gulcehre, D. Bahdanau, F. Bougares, H. Schwenk, Y. Bengio,
"Learning Phrase Representations using RNN Encoder-Decoder for Statistical Machine Translation",
EMNLP 2014, arXiv:1406.1078 (the original GRU: reset applied before the recurrent product).
The "standard" form is cuDNN's and torch.nn.GRU's (reset applied after the recurrent product).
J. L. Ba, J. R. Kiros, G. E. Hinton, "Layer Normalization", arXiv:1607.06450, 2016.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .base import Params, RecurrentCell, State, check_choice
from .functional import affine, init_layer_norm, layer_norm, masked, summed, summed_outer
from .registry import register


@register("gru")
class GRUCell(RecurrentCell):
    r"""GRU cell with reset gate r and update gate z.

    .. math::
        r_t &= σ(W_r x_t + b_{ir} + U_r h_{t-1} + b_{hr})                               \\
        z_t &= σ(W_z x_t + b_{iz} + U_z h_{t-1} + b_{hz})                               \\
        n_t &= \tanh(W_n x_t + b_{in} + r_t ⊙ (U_n h_{t-1} + b_{hn}))  \quad\text{standard}  \\
        n_t &= \tanh(W_n x_t + b_{in} + U_n (r_t ⊙ h_{t-1}) + b_{hn})  \quad\text{original}  \\
        h_t &= (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

    Args:
        input_size, hidden_size: I, H (``own_parameters``, ``device``, ``dtype``: see ``RecurrentCell``).
        variant: ``"standard"`` (default; torch.nn.GRU, cuDNN) or ``"original"`` (Cho et al. 2014:
            the reset gate before the recurrent product).
        bias: whether the cell has ``bias_ih`` and ``bias_hh``.
        layer_norm: the input and recurrent pre-activations layer-normalised separately before the
            biases are added (``variant="standard"`` only).

    Attributes:
        weight_ih: (3H, I), gates stacked r, z, n (torch.nn.GRU's names and shapes).
        weight_hh: (3H, H).
        bias_ih, bias_hh: (3H).
        ln_ih_weight, ln_ih_bias, ln_hh_weight, ln_hh_bias: layer norm's gains and shifts (3H) when
            ``layer_norm``.

    Example:
        >>> import torch, rnnkit
        >>> gru = rnnkit.Recurrent("gru", 3, 8, num_layers=2, bidirectional=True, batch_first=True,
        ...                        variant="original")
        >>> x, lengths = torch.randn(2, 7, 3), torch.tensor([7, 4])      # x (B, T, I), true lengths
        >>> output, h = gru(x, lengths=lengths)
        >>> output.shape, h.shape                                         # (B, T, D·H), (L·D, B, H)
        (torch.Size([2, 7, 16]), torch.Size([4, 2, 8]))
        >>> bool((output[1, 4:] == 0).all())                              # zero past the true end
        True
    """

    def __init__(self, input_size: int, hidden_size: int, *, variant: str = "standard",
                 bias: bool = True, layer_norm: bool = False, own_parameters: bool = True,
                 device=None, dtype=None):
        super().__init__(input_size, hidden_size, own_parameters=own_parameters,
                         device=device, dtype=dtype)
        check_choice("variant", variant, ("standard", "original"))
        if layer_norm and variant != "standard":
            raise ValueError("layer_norm=True is implemented for variant='standard' only "
                             f"(got variant={variant!r})")
        self.variant, self.bias, self.layer_norm = variant, bias, bool(layer_norm)
        self._build()

    def parameter_shapes(self):
        H, I = self.hidden_size, self.input_size
        shapes = {"weight_ih": (3 * H, I), "weight_hh": (3 * H, H)}
        if self.bias:
            shapes.update(bias_ih=(3 * H,), bias_hh=(3 * H,))
        if self.layer_norm:
            shapes.update(ln_ih_weight=(3 * H,), ln_ih_bias=(3 * H,),
                          ln_hh_weight=(3 * H,), ln_hh_bias=(3 * H,))
        return shapes

    def init_parameters(self, p: Params) -> None:
        super().init_parameters(p)
        init_layer_norm(p)

    def project_input(self, p: Params, x: Tensor) -> Tensor:
        if not self.layer_norm:
            return affine(x, p["weight_ih"], p.get("bias_ih"))                  # (T, B, 3H)
        a = layer_norm(affine(x, p["weight_ih"]), p, "ln_ih")
        return a if not self.bias else a + p["bias_ih"]

    def _recurrent(self, p: Params, h: Tensor) -> Tensor:
        """U h + b_hh (layer-normalised when asked), (B, 3H)."""
        if not self.layer_norm:
            return affine(h, p["weight_hh"], p.get("bias_hh"))
        a = layer_norm(affine(h, p["weight_hh"]), p, "ln_hh")
        return a if not self.bias else a + p["bias_hh"]

    def step(self, p: Params, u_t: Tensor, state: State, recurrent_mask=None):
        y, state, _ = self.step_with_gates(p, u_t, state, recurrent_mask)
        return y, state

    def step_with_gates(self, p: Params, u_t: Tensor, state: State, recurrent_mask=None):
        (h,) = state                                                            # (B, H)
        h_in = masked(h, recurrent_mask)
        x_r, x_z, x_n = u_t.chunk(3, dim=-1)                                    # each (B, H)
        if self.variant == "standard":
            h_r, h_z, h_n = self._recurrent(p, h_in).chunk(3, dim=-1)
            r = torch.sigmoid(x_r + h_r)
            z = torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + r * h_n)
        else:
            H = self.hidden_size
            weight_rz, weight_n = p["weight_hh"][:2 * H], p["weight_hh"][2 * H:]
            bias_rz = p["bias_hh"][:2 * H] if self.bias else None
            bias_n = p["bias_hh"][2 * H:] if self.bias else None
            h_r, h_z = affine(h_in, weight_rz, bias_rz).chunk(2, dim=-1)
            r = torch.sigmoid(x_r + h_r)
            z = torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + affine(r * h_in, weight_n, bias_n))
        h = (1 - z) * n + z * h                                                 # (B, H)
        return h, (h,), {"r": r, "z": z}

    # ----- hand-derived BPTT (both variants; layer_norm falls back to autograd) ------------------
    def supports_hand_bptt(self):
        return not self.layer_norm

    def step_saving(self, p, u_t, state):
        (h_prev,) = state                                                       # (B, H)
        H = self.hidden_size
        x_r, x_z, x_n = u_t.chunk(3, dim=-1)
        bias_hh = p.get("bias_hh")
        if self.variant == "standard":
            h_r, h_z, h_n = affine(h_prev, p["weight_hh"], bias_hh).chunk(3, dim=-1)
            r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + r * h_n)
            cache = {"h_n": h_n}
        else:
            h_r, h_z = affine(h_prev, p["weight_hh"][:2 * H], None if bias_hh is None else bias_hh[:2 * H]
                              ).chunk(2, dim=-1)
            r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
            rh = r * h_prev
            n = torch.tanh(x_n + affine(rh, p["weight_hh"][2 * H:], None if bias_hh is None else bias_hh[2 * H:]))
            cache = {"rh": rh}
        h = (1 - z) * n + z * h_prev
        cache.update(h_prev=h_prev, r=r, z=z, n=n)
        return (h,), cache

    def step_backward(self, p, cache, grad_state):
        r"""One step of the GRU's δ recursion.

        δn = δh ⊙ (1 − z),  δz = δh ⊙ (h_{t−1} − n),  δâ_n = δn ⊙ (1 − n²),
        δâ_z = δz ⊙ z(1 − z),  δâ_r = δr ⊙ r(1 − r) with
        δr = δâ_n ⊙ (U_n h_{t−1} + b_hn) (standard) or δr = (U_nᵀ δâ_n) ⊙ h_{t−1} (original);
        δh_{t−1} = δh ⊙ z + U_{rz}ᵀ [δâ_r; δâ_z] + (r ⊙ U_nᵀ δâ_n  or  U_nᵀ (r ⊙ δâ_n)).
        """
        (dh,) = grad_state
        h_prev, r, z, n = cache["h_prev"], cache["r"], cache["z"], cache["n"]
        d_n = dh * (1 - z) * (1 - n * n)                                        # δâ_n
        d_z = dh * (h_prev - n) * z * (1 - z)                                   # δâ_z
        if self.variant == "standard":
            d_r = d_n * cache["h_n"] * r * (1 - r)                              # δâ_r
            d_rec = torch.cat([d_r, d_z, d_n * r], dim=-1)                      # δ(U h + b_hh), (B, 3H)
            dh_prev = dh * z + d_rec @ p["weight_hh"]
            record = {"d_rec": d_rec, "h_prev": h_prev}
        else:
            H = self.hidden_size
            d_rh = d_n @ p["weight_hh"][2 * H:]                                 # δ(r ⊙ h), (B, H)
            d_r = d_rh * h_prev * r * (1 - r)
            d_rz = torch.cat([d_r, d_z], dim=-1)                                # (B, 2H)
            dh_prev = dh * z + d_rz @ p["weight_hh"][:2 * H] + d_rh * r
            record = {"d_rz": d_rz, "d_n": d_n, "h_prev": h_prev, "rh": cache["rh"]}
        return torch.cat([d_r, d_z, d_n], dim=-1), (dh_prev,), record

    def recurrent_grads(self, p, records):
        if self.variant == "standard":
            grads = {"weight_hh": summed_outer(records["d_rec"], records["h_prev"])}
            if self.bias:
                grads["bias_hh"] = summed(records["d_rec"])
            return grads
        grads = {"weight_hh": torch.cat([summed_outer(records["d_rz"], records["h_prev"]),
                                         summed_outer(records["d_n"], records["rh"])])}
        if self.bias:
            grads["bias_hh"] = torch.cat([summed(records["d_rz"]), summed(records["d_n"])])
        return grads

    def extra_repr(self):
        return f"{super().extra_repr()}, variant={self.variant!r}" + \
            (", layer_norm=True" if self.layer_norm else "")
