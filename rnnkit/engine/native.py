"""torch's own recurrent kernels (oneDNN / cuDNN / ATen), for the cells that compute exactly them."""
from __future__ import annotations

from torch import Tensor, _VF
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..cells.base import RecurrentCell

_KERNELS = {"lstm": _VF.lstm, "gru": _VF.gru, "rnn_tanh": _VF.rnn_tanh, "rnn_relu": _VF.rnn_relu}
# torch's order of one direction's tensors in its flat weight list
FLAT_WEIGHT_ORDER = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


def flat_weights(cell: RecurrentCell, p) -> list[Tensor]:
    return [p[name] for name in FLAT_WEIGHT_ORDER if name in p]


def run_native(kind: str, x: Tensor, state: tuple[Tensor, ...], weights: list[Tensor],
               has_bias: bool, bidirectional: bool, training: bool,
               lengths: Tensor | None) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One layer (both directions when ``bidirectional``) through torch's kernel.

    x (T, B, I); state tensors (D, B, S); ``weights`` torch's flat list for the D directions.
    Returns outputs (T, B, D·O), zero past each sequence's end, and the final state (D, B, S).
    """
    kernel = _KERNELS[kind]
    hx = state if kind == "lstm" else state[0]
    if lengths is None:
        result = kernel(x, hx, weights, has_bias, 1, 0.0, training, bidirectional, False)
        return result[0], tuple(result[1:])
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    order, unorder = packed.sorted_indices, packed.unsorted_indices
    hx = tuple(h.index_select(1, order) for h in hx) if kind == "lstm" else hx.index_select(1, order)
    result = kernel(packed.data, packed.batch_sizes, hx, weights, has_bias, 1, 0.0, training,
                    bidirectional)
    out_packed = PackedSequence(result[0], packed.batch_sizes, order, unorder)
    outputs, _ = pad_packed_sequence(out_packed, total_length=x.shape[0])
    return outputs, tuple(h.index_select(1, unorder) for h in result[1:])
