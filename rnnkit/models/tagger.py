r"""Synchronised sequence to sequence: one tag per word, optionally a CRF and a joint intent.

Huang, Xu & Yu, "Bidirectional LSTM-CRF Models for Sequence Tagging" (arXiv:1508.01991, 2015);
Lample et al., "Neural Architectures for Named Entity Recognition" (arXiv:1603.01360, 2016) for the
character features; Liu & Lane, "Attention-Based Recurrent Neural Network Models for Joint Intent
Detection and Slot Filling" (Interspeech 2016, arXiv:1609.01454) for the joint intent head.
"""
from __future__ import annotations

import warnings
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cells.base import check_positive_int
from .char_features import DEFAULT_ENCODER as DEFAULT_CHAR_ENCODER, CharacterWordEncoder
from .crf import LinearChainCRF
from .encoder import FLAT_SETTINGS, EncoderConfig, EncoderLike, build_encoder, encoder_from_flat, length_mask

DEFAULT_ENCODER = EncoderConfig("lstm", hidden_size=128, bidirectional=True)


class TaggerOutput(NamedTuple):
    """What ``SequenceTagger.forward`` returns."""
    emissions: Tensor                  # (B, T, K) score of each tag at each step (zero rows past the end)
    intent_logits: Tensor | None       # (B, N) score of each intent, or None without an intent head


class SequenceTagger(nn.Module):
    r"""A recurrent tagger: a tag for every word, a CRF over the tags if asked, an intent if asked.

    For the words :math:`w_1 \dots w_n` of a sentence:

    .. math::
        x_t &= [\,E\, w_t \,;\, \mathrm{char}(w_t)\,]                 && \text{embedding ‖ character features} \\
        h_1 \dots h_n &= \mathrm{RNN}(x_1 \dots x_n)                   && \text{any cell, } h_t \in \mathbb{R}^{D O} \\
        s_t &= W_s h_t + b_s \in \mathbb{R}^K                          && \text{emissions: tag scores} \\
        u &= W_u [\overrightarrow{h}_n ; \overleftarrow{h}_1] + b_u     && \text{intent scores (joint model)}

    Without a CRF each tag is :math:`\arg\max_k s_{t,k}` and the loss is the cross-entropy of every
    word's tag; with ``crf=True`` a ``LinearChainCRF`` scores whole tag paths (so that ``I-city`` after
    ``O`` can be learnt to be unlikely), the loss is its negative log-likelihood and prediction is
    Viterbi. Both tag losses are divided by the number of words in the batch, so that one learning
    rate suits both; the intent's cross-entropy (mean over sentences) is added to it (Liu & Lane
    2016 train slots and intent jointly by the sum of the two losses).

    Args:
        vocab_size: V, word ids (including padding and unknown).
        num_tags: K, tags.
        embedding_dim: size of each word's embedding.
        encoder: the recurrent encoder over the words (``rnnkit.models.encoder``): an
            ``EncoderConfig``, built here for the word features (the embedding, plus the character
            vector with ``char_vocab_size``), or a built ``rnnkit.Recurrent`` / ``RecurrentEncoder``
            reading that many. Default: one bidirectional LSTM layer, H = 128 (the tag of a word
            depends on the words after it).
        dropout: dropout on the word features entering the encoder and on its outputs (Lample et al.
            2016 drop the BiLSTM's input); between stacked layers: ``EncoderConfig.dropout``.
        crf: put a linear-chain CRF on the emissions.
        char_vocab_size: character ids; when given, each word's vector is concatenated with a
            character encoder's (``CharacterWordEncoder``), and ``forward`` needs ``chars``.
        char_embedding_dim: size of each character's embedding.
        char_encoder: the character encoder, as ``encoder`` (reading ``char_embedding_dim``).
            Default: one bidirectional LSTM layer, H = 25 (its vector has twice this size).
        num_intents: N; when given, a joint intent head on the sentence summary.
        padding_idx: the padding id of words and of characters; its embeddings stay zero.
        *flat_settings, **flat_options: deprecated: ``hidden_size``, ``cell``, ``num_layers``,
            ``bidirectional`` (after ``embedding_dim``, or by keyword) and the cell's options, as
            earlier releases took them (``dropout`` then also acts between layers), and
            ``char_hidden_size``; a DeprecationWarning shows the ``encoder=`` / ``char_encoder=`` that
            replaces them.

    Shapes: B sentences, T words (padded), W characters per word (padded), K tags, N intents.
    """

    def __init__(self, vocab_size: int, num_tags: int, embedding_dim: int = 100, *flat_settings,
                 encoder: EncoderLike = DEFAULT_ENCODER, dropout: float = 0.0, crf: bool = False,
                 char_vocab_size: int | None = None, char_embedding_dim: int = 25,
                 char_encoder: EncoderLike = DEFAULT_CHAR_ENCODER, num_intents: int | None = None,
                 padding_idx: int = 0, **flat_options) -> None:
        super().__init__()
        char_flat = {name: flat_options.pop(name) for name in ("char_hidden_size",) if name in flat_options}
        char_encoder = encoder_from_flat("SequenceTagger", char_encoder, DEFAULT_CHAR_ENCODER, options=char_flat,
                                         renamed={"char_hidden_size": "hidden_size"}, keyword="char_encoder")
        encoder = encoder_from_flat("SequenceTagger", encoder, DEFAULT_ENCODER, dropout=dropout,
                                    args=flat_settings, names=FLAT_SETTINGS, options=flat_options)
        check_positive_int("vocab_size", vocab_size)
        check_positive_int("num_tags", num_tags)
        check_positive_int("embedding_dim", embedding_dim)
        self.num_tags, self.padding_idx = num_tags, padding_idx
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        self.char_encoder = None
        word_features, reads = embedding_dim, f"word vectors of embedding_dim={embedding_dim}"
        if char_vocab_size is not None:
            self.char_encoder = CharacterWordEncoder(char_vocab_size, char_embedding_dim, encoder=char_encoder,
                                                     padding_idx=padding_idx)
            word_features += self.char_encoder.output_size
            reads += f" and character vectors of {self.char_encoder.output_size}"
        self.dropout = nn.Dropout(dropout)
        self.encoder = build_encoder("SequenceTagger", encoder, word_features, reads)
        self.tag_scores = nn.Linear(self.encoder.output_size, num_tags)
        self.crf = LinearChainCRF(num_tags) if crf else None
        self.intent_scores = None
        if num_intents is not None:
            check_positive_int("num_intents", num_intents)
            self.intent_scores = nn.Linear(self.encoder.output_size, num_intents)

    def forward(self, words: Tensor, lengths: Tensor, chars: Tensor | None = None,
                char_lengths: Tensor | None = None, *, tags: Tensor | None = None,
                intents: Tensor | None = None):
        """Tag scores of every word and intent scores of every sentence; with ``tags``, the loss too.

        Args:
            words: (B, T) word ids, padded.
            lengths: (B,) words in each sentence (1 ≤ n ≤ T).
            chars: (B, T, W) character ids of each word; required exactly when the tagger was built
                with ``char_vocab_size``.
            char_lengths: (B, T) characters in each word (0 for padding words); None counts the
                characters that are not ``padding_idx``.
            tags: (B, T) tag ids; entries past each sentence's end are ignored (may hold anything).
            intents: (B,) intent ids (with ``tags``), or None to train the tags alone.

        Returns:
            a ``TaggerOutput``; with ``tags``: ``(output, loss)``, the loss as ``loss`` computes it.
        """
        if words.dim() != 2 or words.is_floating_point():
            raise ValueError(f"words must be an integer tensor (B, T) (sentences, word ids), got "
                             f"{tuple(words.shape)} {words.dtype}")
        if intents is not None and tags is None:
            raise ValueError("intents were given without tags: the loss needs the tags (pass tags=...)")
        B, T = words.shape
        features = self.embedding(words)                                              # (B, T, E)
        if self.char_encoder is not None:
            if chars is None:
                raise ValueError("chars (B, T, W) is required: the tagger was built with char_vocab_size")
            if chars.shape[:2] != words.shape:
                raise ValueError(f"chars must have shape ({B}, {T}, W) (the characters of words "
                                 f"{tuple(words.shape)}), got {tuple(chars.shape)}")
            if char_lengths is None:
                char_lengths = (chars != self.padding_idx).sum(2)                     # (B, T)
            char_vectors = self.char_encoder(chars, char_lengths)                     # (B, T, C)
            features = torch.cat([features, char_vectors], dim=2)                     # (B, T, E + C)
        elif chars is not None:
            raise ValueError("chars were given, but the tagger was built without char_vocab_size")
        outputs, summary, _ = self.encoder(self.dropout(features), lengths)           # (B, T, D·O), (B, D·O)
        emissions = self.tag_scores(self.dropout(outputs))                            # (B, T, K)
        mask = length_mask(lengths.to(emissions.device), T)                           # (B, T)
        emissions = emissions.masked_fill(~mask.unsqueeze(2), 0.0)                    # (B, T, K)
        intent_logits = None
        if self.intent_scores is not None:
            intent_logits = self.intent_scores(self.dropout(summary))                 # (B, N)
        output = TaggerOutput(emissions, intent_logits)
        if tags is None:
            return output
        return output, self._loss(output, lengths, tags, intents)

    def loss(self, words: Tensor, lengths: Tensor, tags: Tensor, intents: Tensor | None = None, *,
             chars: Tensor | None = None, char_lengths: Tensor | None = None) -> Tensor:
        """The training loss (a scalar): tag loss per word, plus the intent cross-entropy.

        Args:
            words, lengths, chars, char_lengths: as ``forward``.
            tags: (B, T) tag ids; entries past each sentence's end are ignored (may hold anything).
            intents: (B,) intent ids, or None to train the tags alone.

        The same as ``forward(..., tags=tags, intents=intents)[1]``: under DistributedDataParallel
        call the wrapper that way, so that the call goes through its forward.
        """
        return self(words, lengths, chars, char_lengths, tags=tags, intents=intents)[1]

    def loss_from_output(self, output: TaggerOutput, lengths: Tensor, tags: Tensor,
                         intents: Tensor | None = None) -> Tensor:
        """Deprecated: ``forward(..., tags=tags, intents=intents)`` returns ``(output, loss)``."""
        warnings.warn("SequenceTagger.loss_from_output is deprecated: call the tagger with "
                      "tags=... (and intents=...), which returns (output, loss)", DeprecationWarning, stacklevel=2)
        return self._loss(output, lengths, tags, intents)

    def _loss(self, output: TaggerOutput, lengths: Tensor, tags: Tensor, intents: Tensor | None) -> Tensor:
        """The tag loss of ``output`` per word (plus the intent cross-entropy, the mean over sentences)."""
        B, T, K = output.emissions.shape
        if tuple(tags.shape) != (B, T) or tags.is_floating_point():
            raise ValueError(f"tags must be an integer tensor of shape ({B}, {T}) like words, got "
                             f"{tuple(tags.shape)} {tags.dtype}")
        lengths = lengths.to(output.emissions.device)
        tags = tags.to(output.emissions.device)
        words_in_batch = lengths.sum()
        if self.crf is not None:
            tag_loss = -self.crf.log_likelihood(output.emissions, tags, lengths).sum() / words_in_batch
        else:
            mask = length_mask(lengths, T)                                            # (B, T)
            tag_loss = F.cross_entropy(output.emissions[mask], tags[mask])            # mean over the n words
        if intents is None:
            return tag_loss
        if output.intent_logits is None:
            raise ValueError("intents were given, but the tagger was built without num_intents")
        if tuple(intents.shape) != (B,):
            raise ValueError(f"intents must have shape ({B},) (one intent per sentence), got "
                             f"{tuple(intents.shape)}")
        return tag_loss + F.cross_entropy(output.intent_logits, intents.to(output.intent_logits.device))

    @torch.no_grad()
    def predict(self, words: Tensor, lengths: Tensor, chars: Tensor | None = None,
                char_lengths: Tensor | None = None) -> tuple[list[list[int]], list[int] | None]:
        """The tag ids of each sentence (cut to its length) and the intent ids (None without an
        intent head). Viterbi with a CRF, the best tag of each word without. Call ``eval()`` first
        when the tagger has dropout."""
        output = self(words, lengths, chars, char_lengths)
        if self.crf is not None:
            paths = self.crf.decode(output.emissions, lengths)
        else:
            best = output.emissions.argmax(dim=2).tolist()                            # (B, T)
            paths = [row[:n] for row, n in zip(best, lengths.tolist())]
        intents = output.intent_logits.argmax(dim=1).tolist() if output.intent_logits is not None else None
        return paths, intents
