r"""A recurrent language model: predict each next token, character or word, from the ones before.

Y. Bengio, R. Ducharme, P. Vincent, C. Jauvin, "A Neural Probabilistic Language Model", JMLR 2003.
T. Mikolov, M. Karafiát, L. Burget, J. Černocký, S. Khudanpur, "Recurrent neural network based
language model", Interspeech 2010.
W. Zaremba, I. Sutskever, O. Vinyals, "Recurrent Neural Network Regularization", arXiv:1409.2329,
2014 (the stacked LSTM with dropout on the non-recurrent connections).
O. Press, L. Wolf, "Using the Output Embedding to Improve Language Models", EACL 2017,
arXiv:1608.05859; H. Inan, K. Khosravi, R. Socher, "Tying Word Vectors and Word Classifiers",
ICLR 2017, arXiv:1611.01462 (tied input and output embeddings).
"""
from __future__ import annotations

from typing import NamedTuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..cells.base import check_positive_int
from .encoder import (FLAT_SETTINGS, EncoderConfig, EncoderLike, build_encoder, encoder_from_flat, length_mask,
                      run_batch_first)

State = Union[Tensor, tuple[Tensor, ...]]
DEFAULT_ENCODER = EncoderConfig("lstm", hidden_size=256, num_layers=2)


def detach_state(state: State | None) -> State | None:
    """The same state cut from the graph that produced it, for truncated BPTT.

    Carry the state from one window to the next so that the network keeps reading the text, but
    detach it between windows so that gradients flow back only through the current window (and the
    graph of the earlier windows is freed)::

        state = None
        for inputs, targets in windows:
            result = model.loss(inputs, targets, state)
            result.mean.backward()
            state = detach_state(result.state)
    """
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    return tuple(s.detach() for s in state)


class LanguageModelLoss(NamedTuple):
    """The negative log-likelihood of a batch of targets, in nats.

    ``total``: summed over the counted tokens; ``mean`` = total / tokens; ``tokens``: how many were
    counted (those inside ``lengths``); ``state``: the final state, to carry into the next window.
    Perplexity is ``exp(mean)``; bits per character (for a character model) ``mean / ln 2``.
    """

    total: Tensor
    mean: Tensor
    tokens: int
    state: State


class LanguageModel(nn.Module):
    r"""Embedding → stacked recurrent layers → (projection) → softmax over the vocabulary.

    With x_t the token at step t, E the embedding matrix and the recurrent stack any cell of
    ``rnnkit.cells``:

    .. math::
        e_t &= E[x_t]                                   \\
        h_t^{(1..L)}, s_t &= \mathrm{RNN}(e_t, s_{t-1})  \\
        z_t &= W_o\, P\, h_t^{(L)} + b_o                \\
        p(x_{t+1} \mid x_{\le t}) &= \mathrm{softmax}(z_t)

    P is a projection (no bias) present only when embeddings are tied and the last layer's output
    size O differs from the embedding size; tied embeddings set W_o = E (Press & Wolf 2017,
    Inan et al. 2017), one Parameter for both. Dropout, when set, acts on e_t, between layers and
    on h_t^{(L)} (Zaremba et al. 2014), never on the recurrent connections.

    Args:
        vocab_size: V, the number of token ids (characters or words: the caller's vocabulary decides).
        embedding_dim: E, size of each token's vector; None (default) uses the encoder's hidden size
            (a built layer's ``input_size``).
        encoder: the recurrent stack (``rnnkit.models.encoder``): an ``EncoderConfig``, built here for
            E, or a built ``rnnkit.Recurrent`` / ``RecurrentEncoder`` reading E features; one-way only
            (a backward direction would read the answer). Default: two LSTM layers, H = 256. Its
            ``options`` take the cell's (``variant="cifg"``, ``proj_size=...``) and ``rnnkit.Recurrent``'s
            (``zoneout``, ``input_dropout``, ...).
        dropout: dropout rate on the embeddings and on the last layer's outputs, in [0, 1)
            (between layers: ``EncoderConfig.dropout``).
        tie_embeddings: share the output layer's weight with the input embedding.
        *flat_settings, **flat_options: deprecated: ``hidden_size``, ``cell``, ``num_layers`` (after
            ``embedding_dim``, or by keyword) and the cell's and Recurrent's options, as earlier
            releases took them (``dropout`` then also acts between layers); a DeprecationWarning shows
            the ``encoder=`` that replaces them.

    Shapes: B batch, T steps, V vocabulary. ``state`` is what ``rnnkit.Recurrent`` returns: a
    tensor (L, B, S), or a tuple of them for the LSTM ((h, c)).

    Example::

        model = LanguageModel(vocab_size=65, encoder=EncoderConfig("lstm", hidden_size=128), tie_embeddings=True)
        logits, state = model(tokens)                   # tokens (B, T) long -> logits (B, T, 65)
        (logits, state), loss = model(tokens[:, :-1], targets=tokens[:, 1:])   # mean NLL per token
    """

    def __init__(self, vocab_size: int, embedding_dim: int | None = None, *flat_settings,
                 encoder: EncoderLike = DEFAULT_ENCODER, dropout: float = 0.0, tie_embeddings: bool = False,
                 **flat_options) -> None:
        super().__init__()
        if flat_options.get("bidirectional"):
            raise ValueError("bidirectional must be False: a language model predicts each token from "
                             "the ones before it, and a backward direction would read the answer")
        flat_options.pop("bidirectional", None)
        encoder = encoder_from_flat("LanguageModel", encoder, DEFAULT_ENCODER, dropout=dropout, args=flat_settings,
                                    names=FLAT_SETTINGS[:3], options=flat_options)
        check_positive_int("vocab_size", vocab_size)
        if embedding_dim is None:
            embedding_dim = encoder.hidden_size if isinstance(encoder, EncoderConfig) else encoder.input_size
        check_positive_int("embedding_dim", embedding_dim)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        self.vocab_size, self.embedding_dim = vocab_size, embedding_dim
        self.tie_embeddings = bool(tie_embeddings)

        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.rnn = build_encoder("LanguageModel", encoder, embedding_dim,
                                 f"token vectors of embedding_dim={embedding_dim}").rnn
        if self.rnn.bidirectional:
            raise ValueError("the encoder must be one-way (bidirectional=False): a language model predicts "
                             "each token from the ones before it, and a backward direction would read the answer")
        self.hidden_size = self.rnn.hidden_size
        self.dropout = nn.Dropout(dropout)
        output_size = self.rnn.output_size                         # O of the last layer
        if self.tie_embeddings:
            self.projection = nn.Linear(output_size, embedding_dim, bias=False) \
                if output_size != embedding_dim else nn.Identity()
            self.decoder = nn.Linear(embedding_dim, vocab_size)
            self.decoder.weight = self.embedding.weight            # one Parameter, (V, E)
        else:
            self.projection = nn.Identity()
            self.decoder = nn.Linear(output_size, vocab_size)
        self._init_embeddings()

    def _init_embeddings(self) -> None:
        # U(-0.1, 0.1) as Zaremba et al. 2014: nn.Embedding's N(0, 1) would make tied logits huge.
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if not self.tie_embeddings:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, tokens: Tensor, state: State | None = None, lengths: Tensor | None = None, *,
                targets: Tensor | None = None):
        """Next-token logits for every step; with ``targets``, their mean negative log-likelihood too.

        Args:
            tokens: (B, T) long token ids in [0, V).
            state: the state a previous call returned (None: zeros), so that a long text can be
                read window by window (truncated BPTT; see ``detach_state``) or generated step by step.
            lengths: (B,) true lengths of a padded batch (None: all T). Each sequence's returned
                state is the one at its own end; logits past the end are meaningless.
            targets: (B, T) long, the token that follows each input (usually ``tokens`` shifted by one).

        Returns:
            ``(logits, state)``: logits (B, T, V), unnormalised log-probabilities of the token after
            each step, and the final state as ``rnnkit.Recurrent`` returns it. With ``targets``:
            ``((logits, state), loss)``, the loss the mean over the counted tokens (those inside
            ``lengths``), in nats: ``loss(...).mean``.
        """
        self._check_tokens("tokens", tokens)
        embedded = self.dropout(self.embedding(tokens))                      # (B, T, E)
        outputs, state = run_batch_first(self.rnn, embedded, state, lengths)  # (B, T, O)
        features = self.projection(self.dropout(outputs))                    # (B, T, E) or (B, T, O)
        logits = self.decoder(features)                                      # (B, T, V)
        if targets is None:
            return logits, state
        total, count = self._nll(logits, tokens, targets, lengths)
        return (logits, state), total / max(count, 1)

    def loss(self, tokens: Tensor, targets: Tensor, state: State | None = None,
             lengths: Tensor | None = None) -> LanguageModelLoss:
        """Negative log-likelihood of ``targets`` (usually ``tokens`` shifted by one), in nats.

        Args:
            tokens: (B, T) long inputs.
            targets: (B, T) long, the token that follows each input.
            state, lengths: as in ``forward``; steps past a sequence's length are not counted.

        Returns:
            ``LanguageModelLoss(total, mean, tokens, state)``.
        """
        logits, state = self(tokens, state, lengths)                         # (B, T, V)
        total, count = self._nll(logits, tokens, targets, lengths)
        return LanguageModelLoss(total, total / max(count, 1), count, state)

    def _nll(self, logits: Tensor, tokens: Tensor, targets: Tensor, lengths: Tensor | None) -> tuple[Tensor, int]:
        """The summed negative log-likelihood of ``targets`` and the number of tokens it counts."""
        self._check_tokens("targets", targets)
        if targets.shape != tokens.shape:
            raise ValueError(f"targets must have the shape of tokens {tuple(tokens.shape)}, "
                             f"got {tuple(targets.shape)}")
        B, T, V = logits.shape
        nll = F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T).to(logits.device),
                              reduction="none").view(B, T)                   # (B, T)
        if lengths is None:
            return nll.sum(), B * T
        nll = nll * length_mask(lengths.to(nll.device), T)                   # (B, T), 0 past the end
        return nll.sum(), int(lengths.sum())

    def _check_tokens(self, name: str, ids: Tensor) -> None:
        if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.dtype != torch.long:
            got = f"shape {tuple(ids.shape)} dtype {ids.dtype}" if isinstance(ids, Tensor) else type(ids).__name__
            raise ValueError(f"{name} must be a (batch, time) long tensor of token ids, got {got}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(f"{name} must hold ids in [0, vocab_size={self.vocab_size}), got values in "
                             f"[{int(ids.min())}, {int(ids.max())}]")
