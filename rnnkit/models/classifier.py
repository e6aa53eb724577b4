r"""Sequence → class: a recurrent encoder, a pooling over time and a linear layer.

The many-to-one use of a recurrent network (Goodfellow, Bengio & Courville, *Deep Learning*, 2016,
§10.2, a single output after reading the whole sequence), for sentence sentiment (SST-2/SST-5,
Socher et al. 2013), intent detection (ATIS) or time-series classes (UCR/UEA):

.. math::
    x_t &= E[w_t] \quad\text{(token ids)} \qquad\text{or}\qquad x_t \in \mathbb{R}^{I}
           \quad\text{(features)}                                                   \\
    h_t &= \mathrm{cell}(x_t, h_{t-1}) \quad\text{(both directions when bidirectional)}  \\
    p   &= \mathrm{pool}(h_1, \dots, h_n) \quad\text{(last, mean, max or attention; see pooling.py)} \\
    \text{logits} &= W_o\, \mathrm{dropout}(p) + b_o, \qquad
    P(y \mid w_{1..n}) = \mathrm{softmax}(\text{logits})

Optionally E starts from pretrained vectors (e.g. GloVe, as in Kim, "Convolutional Neural Networks
for Sentence Classification", EMNLP 2014, arXiv:1408.5882) and is frozen.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cells.base import check_positive_int
from .encoder import FLAT_SETTINGS, EncoderConfig, EncoderLike, build_encoder, encoder_from_flat
from .pooling import Pooling

DEFAULT_ENCODER = EncoderConfig("lstm", hidden_size=128, bidirectional=True)


class SequenceClassifier(nn.Module):
    r"""Classify each sequence of a padded batch: tokens or feature vectors in, class logits out.

    Args:
        vocab_size: V, for token input; leave None and give ``input_size`` for float features
            (or give ``embedding_weights``, whose rows fix V).
        num_classes: C.
        embedding_dim: E, the size of each token vector (ignored with ``embedding_weights``).
        encoder: the recurrent encoder (``rnnkit.models.encoder``): an ``EncoderConfig``, built here
            for E (or I), or a built ``rnnkit.Recurrent`` / ``RecurrentEncoder`` reading E (or I)
            features. Default: one bidirectional LSTM layer, H = 128.
        pooling: ``"last"`` (the encoder's summary), ``"mean"``, ``"max"`` or ``"attention"``.
        dropout: dropout on the embeddings (or input features) and on the pooled vector before the
            output layer (between stacked layers: ``EncoderConfig.dropout``).
        padding_idx: the token id of padding; its embedding is zero and gets no gradient.
        input_size: I, features per step for float input (time series); excludes ``vocab_size``.
        embedding_weights: (V, E) pretrained vectors to start the embedding from.
        freeze_embeddings: keep the embedding fixed during training.
        attention_size: A, the additive score's hidden size for ``pooling="attention"``.
        *flat_settings, **flat_options: deprecated: ``hidden_size``, ``cell``, ``num_layers``,
            ``bidirectional`` (after ``embedding_dim``, or by keyword) and the cell's options, as
            earlier releases took them (``dropout`` then also acts between layers); a
            DeprecationWarning shows the ``encoder=`` that replaces them.

    Call: ``logits = model(inputs, lengths)``; ``logits, loss = model(inputs, lengths, labels=labels)``

    * inputs: (B, T) token ids (long), or (B, T, I) floats when built with ``input_size``.
    * lengths: (B,) true lengths, 1 ≤ n ≤ T (None: all T); padding never changes a sequence's logits.
    * labels: (B,) class ids; the loss is then the cross-entropy, the mean over the B examples.
    * logits: (B, C). After a call, ``model.attention_weights`` holds the pooling's (B, T) weights
      (``"attention"`` and ``"mean"``; None otherwise), for plotting.
    """

    def __init__(self, vocab_size: int | None = None, num_classes: int | None = None,
                 embedding_dim: int = 100, *flat_settings, encoder: EncoderLike = DEFAULT_ENCODER,
                 pooling: str = "last", dropout: float = 0.0, padding_idx: int | None = 0,
                 input_size: int | None = None, embedding_weights: Tensor | None = None,
                 freeze_embeddings: bool = False, attention_size: int | None = None, **flat_options) -> None:
        super().__init__()
        encoder = encoder_from_flat("SequenceClassifier", encoder, DEFAULT_ENCODER, dropout=dropout,
                                    args=flat_settings, names=FLAT_SETTINGS, options=flat_options)
        check_positive_int("num_classes", num_classes)
        self.embedding = _token_embedding(vocab_size, embedding_dim, padding_idx, input_size,
                                          embedding_weights, freeze_embeddings)
        self.input_size = input_size
        self.input_dropout = nn.Dropout(dropout)
        if self.embedding is not None:
            reads = f"token vectors of embedding_dim={self.embedding.embedding_dim}"
            self.encoder = build_encoder("SequenceClassifier", encoder, self.embedding.embedding_dim, reads)
        else:
            self.encoder = build_encoder("SequenceClassifier", encoder, input_size, f"input_size={input_size}")
        self.pooling = Pooling(pooling, self.encoder.output_size, attention_size)
        self.output_dropout = nn.Dropout(dropout)
        self.output = nn.Linear(self.encoder.output_size, num_classes)
        self.attention_weights: Tensor | None = None

    def forward(self, inputs: Tensor, lengths: Tensor | None = None, *, labels: Tensor | None = None):
        x = self.input_dropout(self._embed(inputs))                        # (B, T, E or I)
        B, T, _ = x.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long)
        outputs, summary, _ = self.encoder(x, lengths)                     # (B, T, D·H), (B, D·H)
        pooled, self.attention_weights = self.pooling(outputs, lengths, summary)   # (B, D·H), (B, T)
        logits = self.output(self.output_dropout(pooled))                  # (B, C)
        if labels is None:
            return logits
        if tuple(labels.shape) != (B,) or labels.is_floating_point():
            raise ValueError(f"labels must be class ids of shape ({B},) (one per sequence), got "
                             f"{labels.dtype} of shape {tuple(labels.shape)}")
        return logits, F.cross_entropy(logits, labels.to(logits.device))  # mean over the B examples

    def _embed(self, inputs: Tensor) -> Tensor:
        if self.embedding is not None:
            if inputs.dim() != 2 or inputs.is_floating_point():
                raise ValueError(f"inputs must be token ids of shape (B, T) (integers), got "
                                 f"{inputs.dtype} of shape {tuple(inputs.shape)}")
            return self.embedding(inputs)                                  # (B, T, E)
        if inputs.dim() != 3 or inputs.shape[-1] != self.input_size or not inputs.is_floating_point():
            raise ValueError(f"inputs must be float features of shape (B, T, input_size={self.input_size}), "
                             f"got {inputs.dtype} of shape {tuple(inputs.shape)}")
        return inputs


def _token_embedding(vocab_size: int | None, embedding_dim: int, padding_idx: int | None,
                     input_size: int | None, weights: Tensor | None, freeze: bool) -> nn.Embedding | None:
    """The token embedding the arguments ask for, or None for float features (``input_size``)."""
    if input_size is not None:
        if vocab_size is not None or weights is not None:
            raise ValueError(f"give either input_size (float features) or vocab_size / embedding_weights "
                             f"(tokens), not both; got input_size={input_size}, vocab_size={vocab_size}, "
                             f"embedding_weights {'given' if weights is not None else 'None'}")
        check_positive_int("input_size", input_size)
        return None
    if weights is not None:
        if weights.dim() != 2 or (vocab_size is not None and weights.shape[0] != vocab_size):
            raise ValueError(f"embedding_weights must have shape (vocab_size={vocab_size}, E), "
                             f"got {tuple(weights.shape)}")
        return nn.Embedding.from_pretrained(weights.detach().clone(), freeze=freeze,
                                            padding_idx=padding_idx)
    if vocab_size is None:
        raise ValueError("give vocab_size (token ids), embedding_weights, or input_size (float features); "
                         "got none of them")
    check_positive_int("vocab_size", vocab_size)
    check_positive_int("embedding_dim", embedding_dim)
    embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
    embedding.weight.requires_grad_(not freeze)
    return embedding
