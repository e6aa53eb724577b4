r"""Synchronised sequence to sequence: one tag per word, optionally a CRF and a joint intent.

Huang, Xu & Yu, "Bidirectional LSTM-CRF Models for Sequence Tagging" (arXiv:1508.01991, 2015);
Lample et al., "Neural Architectures for Named Entity Recognition" (arXiv:1603.01360, 2016) for the
character features; Liu & Lane, "Attention-Based Recurrent Neural Network Models for Joint Intent
Detection and Slot Filling" (Interspeech 2016, arXiv:1609.01454) for the joint intent head.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cells.base import check_positive_int
from .char_features import CharacterWordEncoder
from .crf import LinearChainCRF
from .encoder import RecurrentEncoder, length_mask


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
        hidden_size: H, the recurrent cell's hidden size.
        cell: any registered cell (``rnnkit.cells.available()``).
        num_layers: stacked recurrent layers.
        bidirectional: D = 2 when True (the tag of a word depends on the words after it).
        dropout: dropout on the word features entering the network, between stacked layers and on
            its outputs (Lample et al. 2016 drop the BiLSTM's input).
        crf: put a linear-chain CRF on the emissions.
        char_vocab_size: character ids; when given, each word's vector is concatenated with a
            character BiLSTM's (``CharacterWordEncoder``), and ``forward`` needs ``chars``.
        char_embedding_dim: size of each character's embedding.
        char_hidden_size: hidden size of the character BiLSTM (its vector has twice this size).
        num_intents: N; when given, a joint intent head on the sentence summary.
        padding_idx: the padding id of words and of characters; its embeddings stay zero.
        **cell_options: the cell's own options (``variant="cifg"``, ...).

    Shapes: B sentences, T words (padded), W characters per word (padded), K tags, N intents.
    """

    def __init__(self, vocab_size: int, num_tags: int, embedding_dim: int = 100, hidden_size: int = 128,
                 cell: str = "lstm", num_layers: int = 1, bidirectional: bool = True, dropout: float = 0.0,
                 crf: bool = False, char_vocab_size: int | None = None, char_embedding_dim: int = 25,
                 char_hidden_size: int = 25, num_intents: int | None = None, padding_idx: int = 0,
                 **cell_options) -> None:
        super().__init__()
        check_positive_int("vocab_size", vocab_size)
        check_positive_int("num_tags", num_tags)
        check_positive_int("embedding_dim", embedding_dim)
        self.num_tags, self.padding_idx = num_tags, padding_idx
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        self.char_encoder = None
        word_features = embedding_dim
        if char_vocab_size is not None:
            self.char_encoder = CharacterWordEncoder(char_vocab_size, char_embedding_dim, char_hidden_size,
                                                     padding_idx=padding_idx)
            word_features += self.char_encoder.output_size
        self.dropout = nn.Dropout(dropout)
        # RecurrentEncoder's dropout acts between stacked layers only (it warns for one layer)
        self.encoder = RecurrentEncoder(word_features, hidden_size, cell, num_layers=num_layers,
                                        bidirectional=bidirectional,
                                        dropout=dropout if num_layers > 1 else 0.0, **cell_options)
        self.tag_scores = nn.Linear(self.encoder.output_size, num_tags)
        self.crf = LinearChainCRF(num_tags) if crf else None
        self.intent_scores = None
        if num_intents is not None:
            check_positive_int("num_intents", num_intents)
            self.intent_scores = nn.Linear(self.encoder.output_size, num_intents)

    def forward(self, words: Tensor, lengths: Tensor, chars: Tensor | None = None,
                char_lengths: Tensor | None = None) -> TaggerOutput:
        """Tag scores of every word and intent scores of every sentence.

        Args:
            words: (B, T) word ids, padded.
            lengths: (B,) words in each sentence (1 ≤ n ≤ T).
            chars: (B, T, W) character ids of each word; required exactly when the tagger was built
                with ``char_vocab_size``.
            char_lengths: (B, T) characters in each word (0 for padding words); None counts the
                characters that are not ``padding_idx``.
        """
        if words.dim() != 2 or words.is_floating_point():
            raise ValueError(f"words must be an integer tensor (B, T) (sentences, word ids), got "
                             f"{tuple(words.shape)} {words.dtype}")
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
        return TaggerOutput(emissions, intent_logits)

    def loss(self, words: Tensor, lengths: Tensor, tags: Tensor, intents: Tensor | None = None, *,
             chars: Tensor | None = None, char_lengths: Tensor | None = None) -> Tensor:
        """The training loss (a scalar): tag loss per word, plus the intent cross-entropy.

        Args:
            words, lengths, chars, char_lengths: as ``forward``.
            tags, intents: as ``loss_from_output``.
        """
        return self.loss_from_output(self(words, lengths, chars, char_lengths), lengths, tags, intents)

    def loss_from_output(self, output: TaggerOutput, lengths: Tensor, tags: Tensor,
                         intents: Tensor | None = None) -> Tensor:
        """The training loss of ``forward``'s ``output`` (what ``loss`` computes after calling ``forward``).

        A trainer that wraps the tagger (DistributedDataParallel) calls the wrapper's ``forward`` and
        then this, so that the gradients are synchronised.

        Args:
            output: ``forward``'s output for the batch.
            lengths: (B,) words in each sentence, as given to ``forward``.
            tags: (B, T) tag ids; entries past each sentence's end are ignored (may hold anything).
            intents: (B,) intent ids, or None to train the tags alone.
        """
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
