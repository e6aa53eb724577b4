r"""Word vectors read from each word's characters by a small recurrent network.

Lample et al., "Neural Architectures for Named Entity Recognition" (arXiv:1603.01360, 2016), §4.1:
a bidirectional LSTM (here any encoder) reads the characters :math:`c_1 \dots c_m` of a word; the
word's vector is the forward direction's last output concatenated with the backward direction's
output at the first character,

.. math::
    w = [\overrightarrow{h}_m \,;\, \overleftarrow{h}_1],

which sees prefixes and suffixes (``-ing``, ``-ly``, capitals, digits) that a word embedding of a rare
or unseen word cannot.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..cells.base import check_positive_int
from .encoder import EncoderConfig, EncoderLike, build_encoder, encoder_from_flat

DEFAULT_ENCODER = EncoderConfig("lstm", hidden_size=25, bidirectional=True)


class CharacterWordEncoder(nn.Module):
    r"""Encode every word of a padded batch of sentences from its characters, all words at once.

    Args:
        char_vocab_size: C, number of character ids (including padding).
        embedding_dim: E, size of each character's embedding.
        encoder: the recurrent encoder over each word's characters (``rnnkit.models.encoder``): an
            ``EncoderConfig``, built here for E, or a built ``rnnkit.Recurrent`` / ``RecurrentEncoder``
            reading E features. Default: one bidirectional LSTM layer, H = 25, as Lample et al.
        padding_idx: the character id used for padding; its embedding stays zero.
        *flat_settings, **flat_options: deprecated: ``hidden_size``, ``cell``, ``bidirectional``
            (after ``embedding_dim``, or by keyword) and the cell's options, as earlier releases took
            them; a DeprecationWarning shows the ``encoder=`` that replaces them.

    Call: ``vectors = encoder(chars, char_lengths)``

    * chars: (B, T, W) character ids: W characters of each of the T words of B sentences.
    * char_lengths: (B, T) characters in each word; 0 marks a padding word (past a sentence's end).
    * vectors: (B, T, ``output_size``) with ``output_size`` = D·H; zero for padding words.
    """

    def __init__(self, char_vocab_size: int, embedding_dim: int = 25, *flat_settings,
                 encoder: EncoderLike = DEFAULT_ENCODER, padding_idx: int = 0, **flat_options) -> None:
        super().__init__()
        encoder = encoder_from_flat("CharacterWordEncoder", encoder, DEFAULT_ENCODER, args=flat_settings,
                                    names=("hidden_size", "cell", "bidirectional"), options=flat_options)
        check_positive_int("char_vocab_size", char_vocab_size)
        check_positive_int("embedding_dim", embedding_dim)
        self.embedding = nn.Embedding(char_vocab_size, embedding_dim, padding_idx=padding_idx)
        self.encoder = build_encoder("CharacterWordEncoder", encoder, embedding_dim,
                                     f"character vectors of embedding_dim={embedding_dim}")
        self.output_size = self.encoder.output_size

    def forward(self, chars: Tensor, char_lengths: Tensor) -> Tensor:
        if chars.dim() != 3 or chars.is_floating_point():
            raise ValueError(f"chars must be an integer tensor (B, T, W) (sentences, words, characters), "
                             f"got {tuple(chars.shape)} {chars.dtype}")
        B, T, W = chars.shape
        if tuple(char_lengths.shape) != (B, T):
            raise ValueError(f"char_lengths must have shape ({B}, {T}) (characters of each word of chars "
                             f"{tuple(chars.shape)}), got {tuple(char_lengths.shape)}")
        if char_lengths.numel() and (int(char_lengths.min()) < 0 or int(char_lengths.max()) > W):
            raise ValueError(f"char_lengths must lie in [0, {W}] (0 for a padding word), got values from "
                             f"{int(char_lengths.min())} to {int(char_lengths.max())}")
        flat_lengths = char_lengths.reshape(B * T)                                    # (B·T,)
        real = (flat_lengths > 0).nonzero().squeeze(1)                                # (N,) real words
        vectors = chars.new_zeros(B * T, self.output_size, dtype=self.embedding.weight.dtype)
        if real.numel():
            word_lengths = flat_lengths[real]                                         # (N,)
            longest = int(word_lengths.max())
            characters = self.embedding(chars.reshape(B * T, W)[real, :longest])      # (N, W', E)
            _, summary, _ = self.encoder(characters, word_lengths)                    # (N, D·H)
            vectors = vectors.index_copy(0, real, summary)                            # (B·T, D·H)
        return vectors.view(B, T, self.output_size)                                   # (B, T, D·H)
