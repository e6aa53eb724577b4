r"""Encoder-decoder translation with attention: any cell, teacher forcing, one shared decoder step.

I. Sutskever, O. Vinyals, Q. V. Le, "Sequence to Sequence Learning with Neural Networks", NeurIPS
2014, arXiv:1409.3215 (encoder-decoder, attention ``"none"``).
D. Bahdanau, K. Cho, Y. Bengio, "Neural Machine Translation by Jointly Learning to Align and
Translate", ICLR 2015, arXiv:1409.0473 (bidirectional encoder, additive attention, the bridge).
M.-T. Luong, H. Pham, C. D. Manning, "Effective Approaches to Attention-based Neural Machine
Translation", EMNLP 2015, arXiv:1508.04025 (global attention, attentional vector, input feeding).
S. Bengio, O. Vinyals, N. Jaitly, N. Shazeer, "Scheduled Sampling for Sequence Prediction with
Recurrent Neural Networks", NeurIPS 2015, arXiv:1506.03099 (``teacher_forcing`` < 1).

Source x_1..x_S, target y_1..y_T (y_0 = BOS). The encoder reads the embedded source with its true
lengths; its outputs k_s are the attention's keys and values. Every decoder step (Luong's global
attention, the score chosen by ``attention``; ``"bahdanau"`` is Luong's additive "concat" score):

.. math::
    s_0 &= [\tanh(B_h\, \bar h),\; B_c\, \bar c]        \quad\text{(bridge of the encoder's final state)} \\
    h_t, s_t &= \mathrm{cell}([E y_{t-1};\ \tilde h_{t-1}],\ s_{t-1})   \quad\text{(input feeding; } \tilde h_0 = 0) \\
    a_t &= \mathrm{softmax}_s\, \mathrm{score}(h_t, k_s), \qquad c_t = \textstyle\sum_s a_{t,s} k_s \\
    \tilde h_t &= \tanh(W_c [c_t; h_t])                  \\
    p(y_t \mid y_{<t}, x) &= \mathrm{softmax}(W_o \tilde h_t + b_o)

Without attention (``"none"``) \tilde h_t = h_t and the source reaches the decoder only through s_0;
input feeding then has nothing to feed and is off.

Shapes: B batch, S source steps, T target steps, V target vocabulary, E embedding size, H hidden size,
O the decoder cell's output size, Hk = D·O the encoder's output size (D = 2 when bidirectional).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cells import create
from ..cells.base import State, check_choice
from .attention import KINDS, Attention
from .encoder import FLAT_SETTINGS, EncoderConfig, EncoderLike, build_encoder, encoder_from_flat, length_mask

ATTENTIONS = KINDS + ("none",)
DEFAULT_ENCODER = EncoderConfig("gru", hidden_size=256, bidirectional=True)


class EncodedSource(NamedTuple):
    """What every decoder step reads from the source."""
    keys: Tensor                 # (B, S, Hk) the encoder's outputs, zero on padding
    prepared: Tensor | None      # (B, S, ·) the keys' share of the attention score; None without attention
    mask: Tensor                 # (B, S) bool, True on real source tokens

    def index_select(self, indices: Tensor) -> "EncodedSource":
        """The rows ``indices`` (a beam copies one sentence once per hypothesis)."""
        return EncodedSource(*(None if t is None else t.index_select(0, indices) for t in self))


class DecoderState(NamedTuple):
    """The decoder's memory between two steps."""
    layers: tuple[State, ...]    # one cell state per decoder layer, each a tuple of (B, ·)
    attentional: Tensor | None   # (B, O) h̃_{t-1} for input feeding; None when not fed

    def index_select(self, indices: Tensor) -> "DecoderState":
        layers = tuple(tuple(s.index_select(0, indices) for s in layer) for layer in self.layers)
        fed = None if self.attentional is None else self.attentional.index_select(0, indices)
        return DecoderState(layers, fed)


class Seq2Seq(nn.Module):
    r"""Recurrent encoder-decoder with attention (see the module docstring for the equations).

    Args:
        source_vocab_size, target_vocab_size: vocabulary sizes (V for the target).
        embedding_dim: E, the size of source and target token embeddings.
        encoder: the source encoder (``rnnkit.models.encoder``): an ``EncoderConfig``, built here for
            E, or a built ``rnnkit.Recurrent`` / ``RecurrentEncoder`` reading E features. Default: one
            bidirectional GRU layer, H = 256 (D = 2). The decoder has the encoder's cell, hidden size,
            number of layers and cell options (``Recurrent.cell_name``, ``hidden_size``,
            ``num_layers``, ``cell_options``); Recurrent's own options (zoneout, ...) are the encoder's.
        attention: ``"bahdanau"`` (additive), ``"luong-dot"``, ``"luong-general"`` or ``"none"``.
        input_feeding: feed h̃_{t-1} into step t (Luong et al. 2015, §3.3); needs attention.
        dropout: on embeddings, between the decoder's stacked layers, and on h̃_t before the output
            layer (between the encoder's layers: ``EncoderConfig.dropout``).
        bos_index, eos_index: the target's begin- and end-of-sentence ids (decoding needs them).
        padding_idx: the padding id of both vocabularies; its embedding is zero and the loss skips it.
        tie_target_embeddings: the output layer reuses the target embedding matrix (Press & Wolf
            2017, arXiv:1608.05859); needs O = E.
        *flat_settings, **flat_options: deprecated: ``hidden_size``, ``cell``, ``num_layers`` (after
            ``embedding_dim``, or by keyword), ``bidirectional_encoder`` and the cell's options, as
            earlier releases took them (``dropout`` then also acts between the encoder's layers); a
            DeprecationWarning shows the ``encoder=`` that replaces them.

    ``forward(source, source_lengths, target_in, teacher_forcing=1.0) -> (logits, attention)``:
    source (B, S) ids, source_lengths (B,), target_in (B, T) = BOS y_1 .. y_{T-1} → logits (B, T, V)
    and the attention weights (B, T, S) (None without attention). ``teacher_forcing`` is the
    probability, per sequence and step, of reading the true previous token rather than the model's
    own argmax (scheduled sampling; 1.0 = always the truth). With ``targets=target_out`` (B, T)
    = y_1 .. y_T: ``((logits, attention), loss)``, the loss as ``loss(logits, target_out)``.

    Decoding (``rnnkit.models.decoding``) uses ``encode`` once and ``decode_step`` per token, the
    same step ``forward`` runs.
    """

    def __init__(self, source_vocab_size: int, target_vocab_size: int, embedding_dim: int = 256,
                 *flat_settings, encoder: EncoderLike = DEFAULT_ENCODER, attention: str = "bahdanau",
                 input_feeding: bool = True, dropout: float = 0.0, bos_index: int, eos_index: int,
                 padding_idx: int = 0, tie_target_embeddings: bool = False, **flat_options) -> None:
        super().__init__()
        encoder = encoder_from_flat("Seq2Seq", encoder, DEFAULT_ENCODER, dropout=dropout, args=flat_settings,
                                    names=FLAT_SETTINGS[:3], options=flat_options,
                                    renamed={"bidirectional_encoder": "bidirectional"})
        check_choice("attention", attention, ATTENTIONS)
        for name, index in (("bos_index", bos_index), ("eos_index", eos_index), ("padding_idx", padding_idx)):
            if not 0 <= index < target_vocab_size:
                raise ValueError(f"{name} must be a target id in [0, target_vocab_size={target_vocab_size}), "
                                 f"got {index}")
        self.bos_index, self.eos_index, self.padding_idx = bos_index, eos_index, padding_idx
        self.attention_kind = attention
        self.input_feeding = bool(input_feeding) and attention != "none"
        self.target_vocab_size = target_vocab_size

        self.source_embedding = nn.Embedding(source_vocab_size, embedding_dim, padding_idx=padding_idx)
        self.target_embedding = nn.Embedding(target_vocab_size, embedding_dim, padding_idx=padding_idx)
        self.dropout = nn.Dropout(dropout)
        self.encoder = build_encoder("Seq2Seq", encoder, embedding_dim,
                                     f"source token vectors of embedding_dim={embedding_dim}")
        layer = self.encoder.rnn
        num_layers, D = layer.num_layers, self.encoder.num_directions
        O = self.encoder.output_size // D
        first_input = embedding_dim + O if self.input_feeding else embedding_dim
        self.decoder_cells = nn.ModuleList(
            [create(layer.cell_name, first_input if k == 0 else O, layer.hidden_size, **layer.cell_options)
             for k in range(num_layers)])

        # One linear map per state tensor (h; c for the LSTM) from every encoder layer and
        # direction at once, (L·D·S) -> (L·S), to every decoder layer's initial state.
        self.state_sizes = self.decoder_cells[0].state_sizes()
        self.bridge = nn.ModuleList([nn.Linear(num_layers * D * size, num_layers * size)
                                     for size in self.state_sizes])

        key_size = self.encoder.output_size
        if attention == "luong-dot" and key_size != O:
            raise ValueError(f"attention='luong-dot' scores q^T k, so the encoder's output size ({key_size}) "
                             f"must equal the decoder's ({O}): use an encoder with bidirectional=False, or "
                             f"attention='luong-general' or 'bahdanau'")
        if attention == "none":
            self.attention, self.combine = None, None
        else:
            self.attention = Attention(O, key_size, attention)
            self.combine = nn.Linear(key_size + O, O, bias=False)                 # W_c
        self.output = nn.Linear(O, target_vocab_size)                             # W_o, b_o
        if tie_target_embeddings:
            if O != embedding_dim:
                raise ValueError(f"tie_target_embeddings=True needs the decoder's output size O={O} "
                                 f"to equal embedding_dim={embedding_dim}")
            self.output.weight = self.target_embedding.weight

    # ----- the two parts decoding shares with forward -----------------------------------------
    def encode(self, source: Tensor, source_lengths: Tensor) -> tuple[EncodedSource, DecoderState]:
        """Read the source once: the keys to attend to and the decoder's initial state."""
        _check_source(source, source_lengths)
        B, S = source.shape
        embedded = self.dropout(self.source_embedding(source))                   # (B, S, E)
        outputs, _, final = self.encoder(embedded, source_lengths)                # (B, S, Hk)
        mask = length_mask(source_lengths.to(source.device), S)                  # (B, S)
        prepared = None if self.attention is None else self.attention.prepare(outputs)
        final = final if isinstance(final, tuple) else (final,)                  # each (L·D, B, S_k)
        layers = [[] for _ in self.decoder_cells]
        for k, (bridge, state) in enumerate(zip(self.bridge, final)):
            flat = state.transpose(0, 1).reshape(B, -1)                           # (B, L·D·S_k)
            mapped = bridge(flat).view(B, len(self.decoder_cells), -1)           # (B, L, S_k)
            if k == 0:                                                            # h: squashed as in Bahdanau
                mapped = torch.tanh(mapped)
            for layer in range(len(self.decoder_cells)):
                layers[layer].append(mapped[:, layer])                            # (B, S_k)
        fed = outputs.new_zeros(B, self.decoder_cells[-1].output_size) if self.input_feeding else None
        return (EncodedSource(outputs, prepared, mask),
                DecoderState(tuple(tuple(layer) for layer in layers), fed))

    def decode_step(self, previous_tokens: Tensor, state: DecoderState, memory: EncodedSource
                    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One target step: previous_tokens (B,) → logits (B, V), the new state, weights (B, S)."""
        x = self.dropout(self.target_embedding(previous_tokens))                 # (B, E)
        if self.input_feeding:
            x = torch.cat([x, state.attentional], dim=-1)                         # (B, E + O)
        new_layers = []
        for layer, (cell, layer_state) in enumerate(zip(self.decoder_cells, state.layers)):
            if layer > 0:
                x = self.dropout(x)
            x, layer_state = cell(x, layer_state)                                 # (B, O)
            new_layers.append(layer_state)
        h, weights = x, None
        if self.attention is None:
            attentional = h                                                       # (B, O)
        else:
            context, weights = self.attention(h, memory.keys, memory.mask, memory.prepared)  # (B, Hk)
            attentional = torch.tanh(self.combine(torch.cat([context, h], dim=-1)))          # (B, O)
        logits = self.output(self.dropout(attentional))                          # (B, V)
        fed = attentional if self.input_feeding else None
        return logits, DecoderState(tuple(new_layers), fed), weights

    # ----- training ------------------------------------------------------------------------------
    def forward(self, source: Tensor, source_lengths: Tensor, target_in: Tensor,
                teacher_forcing: float = 1.0, *, targets: Tensor | None = None):
        if target_in.dim() != 2 or target_in.shape[0] != source.shape[0]:
            raise ValueError(f"target_in must have shape (B={source.shape[0]}, T), got {tuple(target_in.shape)}")
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must be a probability in [0, 1], got {teacher_forcing!r}")
        memory, state = self.encode(source, source_lengths)
        B, T = target_in.shape
        step_logits, step_weights = [], []
        tokens = target_in[:, 0]                                                  # (B,)
        for t in range(T):
            if t > 0:
                tokens = target_in[:, t]
                if teacher_forcing < 1.0:
                    truth = torch.rand(B, device=tokens.device) < teacher_forcing
                    tokens = torch.where(truth, tokens, step_logits[-1].detach().argmax(-1))
            logits, state, weights = self.decode_step(tokens, state, memory)
            step_logits.append(logits)
            step_weights.append(weights)
        logits = torch.stack(step_logits, dim=1)                                  # (B, T, V)
        weights = None if self.attention is None else torch.stack(step_weights, dim=1)  # (B, T, S)
        if targets is None:
            return logits, weights
        return (logits, weights), self.loss(logits, targets)

    def loss(self, logits: Tensor, target_out: Tensor, label_smoothing: float = 0.0,
             reduction: str = "mean") -> Tensor:
        """Cross-entropy of logits (B, T, V) against target_out (B, T) = y_1 .. y_T, padding
        excluded: the mean over real target tokens (``reduction="sum"``: their sum, for perplexity).
        ``label_smoothing`` ε mixes the one-hot target with the uniform distribution (Szegedy et
        al. 2016): (1 − ε)·(−log p_y) + ε·mean_v(−log p_v)."""
        check_choice("reduction", reduction, ("mean", "sum"))
        if logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(target_out.shape):
            raise ValueError(f"logits must have shape (B, T, V) with (B, T) = target_out's "
                             f"{tuple(target_out.shape)}, got {tuple(logits.shape)}")
        total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target_out.reshape(-1),   # (B·T, V)
                                ignore_index=self.padding_idx, label_smoothing=label_smoothing,
                                reduction="sum")
        if reduction == "sum":
            return total
        return total / (target_out != self.padding_idx).sum().clamp(min=1)


def _check_source(source: Tensor, source_lengths: Tensor) -> None:
    if source.dim() != 2 or source.dtype != torch.long:
        raise ValueError(f"source must be a (B, S) tensor of token ids (long), got {source.dtype} "
                         f"{tuple(source.shape)}")
    B, S = source.shape
    if tuple(source_lengths.shape) != (B,):
        raise ValueError(f"source_lengths must have shape (B,)=({B},), got {tuple(source_lengths.shape)}")
    if B and (source_lengths.min() < 1 or source_lengths.max() > S):
        raise ValueError(f"source_lengths must lie in [1, S={S}], got {source_lengths.tolist()}")
