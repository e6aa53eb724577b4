r"""The ``lm`` recipe: a recurrent language model over characters or words, trained by truncated BPTT.

Model: ``rnnkit.models.language_model.LanguageModel`` (embedding → stacked recurrent layers → softmax,
Mikolov et al. 2010, Zaremba et al. 2014, arXiv:1409.2329; tied embeddings, Press & Wolf 2017,
arXiv:1608.05859). For the text x_1 … x_N it minimises the mean negative log-likelihood

.. math::
    \mathcal{L} = -\frac{1}{N} \sum_{t} \ln p(x_{t+1} \mid x_{\le t}), \qquad
    \mathrm{PPL} = e^{\mathcal{L}}, \qquad \mathrm{BPC} = \mathcal{L} / \ln 2 .

Data options (``data_defaults``):

* ``level``: how a line of text becomes tokens (default ``"char"``):

  - ``"char"``: every character of the line, then ``"\n"`` (tinyshakespeare; the stream is the file);
  - ``"word"``: the whitespace-separated words, then ``"<eos>"`` (PTB word level, Mikolov's convention);
  - ``"ptb-char"``: the space-separated symbols of the ``ptb.char.*`` files (``_`` marks a word
    boundary), then ``"<eos>"`` (as AWD-LSTM reads them); blank lines are skipped.
* ``seq_len``: T, the truncated-BPTT window (default 64).
* ``lowercase``: lower-case the text (default False), the training text and the lines to score or
  the prompt to continue alike.
* ``min_freq``: tokens seen fewer times in the training text become ``<unk>`` (default 1).

The vocabulary is ``"tokens"`` (``<unk>`` first, then the training text's tokens by frequency).

Batches: the records are joined into one id stream and cut by ``rnnkit.data.batching.stream_batches``
into B contiguous rows and windows of T steps (each an ``LMWindow``). Training batches start the
stream at a seeded offset in [0, T) and are shuffled, so that window boundaries move from epoch to
epoch. **Each training window starts from a zero state**: the state is not carried between training
windows, because the trainer may shuffle, shard (several processes take every N-th window) and resume
the batches mid-epoch, and a carried state would make a resumed or distributed run differ from an
uninterrupted one. Evaluation reads the windows in order and carries the (detached) state from one
window to the next, so every token is scored with all the text of its row before it as context
(Zaremba et al.'s evaluation); only the B − 1 row boundaries and the last ``len mod B`` tokens of the
stream go unscored.

Metrics: ``perplexity`` (the dev metric, lower is better), ``loss`` (mean nats per token) and, for the
character levels, ``bits_per_character``.

``predict``: each input line (in the training text's format: raw text for ``char``, words for ``word``,
``ptb.char`` symbols for ``ptb-char``) → the per-token perplexity of that line under the model,
exp(mean over its tokens, the line end included, of −ln p), reading the line as the start of a new
line (its first token is predicted from the line separator alone, no earlier text).

``generate(model, state, prompt, length, temperature, top_k, seed)``: the prompt followed by
``length`` sampled tokens (``rnnkit.models.sampling.generate``), as text.
"""
from __future__ import annotations

import random
from typing import Any, Iterable, Iterator, NamedTuple

import torch
from torch import Tensor, nn

from ..data.batching import pad_batch, stream_batches
from ..data.text import iter_char_tokens, iter_lines
from ..data.vocab import EOS, UNK, Vocabulary
from ..metrics import bits_per_character, perplexity
from ..models.encoder import length_mask
from ..models.language_model import LanguageModel, detach_state
from ..models.sampling import generate as sample_tokens
from .base import RecipeState, encoder_config, register
from .common import cased, model_device, numbered_chunks

LEVELS = ("char", "word", "ptb-char")
CHARACTER_LEVELS = ("char", "ptb-char")
VOCABULARY = "tokens"       # the name of the one vocabulary


class LMWindow(NamedTuple):
    """One truncated-BPTT window: ``inputs`` and ``targets`` (B, T) long, ``targets`` the inputs one
    step later; ``position``: the window's index along the rows (window k follows window k − 1)."""
    inputs: Tensor
    targets: Tensor
    position: int


def line_tokens(text: str, level: str) -> list[str]:
    """The tokens of one line of text at ``level`` (the line end included, see the module docstring)."""
    if level == "char":
        return list(text) + ["\n"]
    return text.split() + [EOS]


def separator(level: str) -> str:
    """The token that ends a line, read before the first token of a line (predict, generate)."""
    return "\n" if level == "char" else EOS


class LanguageModelTask:
    """Mean next-token cross-entropy over a window's B·T tokens; evaluation carries the state."""

    metric = "perplexity"
    higher_is_better = False
    loss_unit = "tokens"

    def __init__(self, level: str) -> None:
        self.level = level

    def training_loss(self, model: nn.Module, batch: LMWindow) -> tuple[Tensor, dict[str, int]]:
        _, loss = model(batch.inputs, targets=batch.targets)                     # zero state, mean over B·T
        B, T = batch.inputs.shape
        return loss, {"tokens": B * T, "examples": B}

    def evaluate(self, model: nn.Module, batches: Iterable[LMWindow]) -> dict[str, float]:
        total, count, state, previous = 0.0, 0, None, None
        for batch in batches:
            follows = previous is not None and batch.position == previous.position + 1 \
                and batch.inputs.shape[0] == previous.inputs.shape[0]
            result = model.loss(batch.inputs, batch.targets, state if follows else None)
            total, count = total + float(result.total), count + result.tokens
            state, previous = detach_state(result.state), batch
        if count == 0:
            raise ValueError("the lm task got no windows to evaluate")
        metrics = {"perplexity": perplexity(total, count), "loss": total / count}
        if self.level in CHARACTER_LEVELS:
            metrics["bits_per_character"] = bits_per_character(total, count)
        return metrics


class LanguageModelRecipe:
    """Character- or word-level language modelling (see the module docstring)."""

    name = "lm"
    summary = "language model over characters or words (perplexity, bits per character)"
    model_defaults: dict[str, Any] = {"tie_embeddings": True}
    data_defaults: dict[str, Any] = {"level": "char", "seq_len": 64, "lowercase": False, "min_freq": 1}

    def read(self, path: str, data_options: dict[str, Any]) -> list[list[str]]:
        """One token list per line of ``path`` (gzip-transparent), cut at ``data_options["level"]``."""
        level = _check_level(data_options["level"])
        seq_len = data_options["seq_len"]
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"lm data option 'seq_len' must be a positive int, got {seq_len!r}")
        if level == "ptb-char":
            return [[cased(symbol, data_options) for symbol in symbols]
                    for symbols in iter_char_tokens(path, eos=True)]
        return [line_tokens(cased(text, data_options), level) for text in iter_lines(path)]

    def prepare(self, records: list[list[str]], model_options: dict[str, Any],
                data_options: dict[str, Any]) -> RecipeState:
        """The ``"tokens"`` vocabulary of the training text; the data options as they are."""
        vocabulary = Vocabulary.build(records, min_freq=data_options["min_freq"], specials=(UNK,))
        return RecipeState(self.name, model_options, data_options, {VOCABULARY: vocabulary})

    def build_model(self, state: RecipeState) -> nn.Module:
        model_options = state.model_options
        return LanguageModel(len(state.vocabularies[VOCABULARY]), embedding_dim=model_options["embedding"],
                             encoder=encoder_config(model_options, bidirectional=False),
                             dropout=model_options["dropout"], tie_embeddings=model_options["tie_embeddings"])

    def batches(self, records: list[list[str]], state: RecipeState, batch_size: int, *,
                shuffle: bool, seed: int) -> list[LMWindow]:
        """The stream's windows of the data option ``seq_len`` steps; ``shuffle``: start at a seeded
        offset in [0, seq_len) and shuffle the windows (training). Rows are fewer than ``batch_size``
        when the text is short."""
        vocabulary, seq_len = state.vocabularies[VOCABULARY], state.data_options["seq_len"]
        ids = torch.tensor([i for record in records for i in vocabulary.encode(record)], dtype=torch.long)
        rng = random.Random(seed)
        if shuffle and ids.numel() > 2 * seq_len:
            ids = ids[rng.randrange(seq_len):]
        if ids.numel() < 2:
            raise ValueError(f"the text holds {ids.numel()} token(s): a language model needs at least 2")
        rows = min(batch_size, ids.numel() // 2)
        windows = [LMWindow(inputs, targets, k)
                   for k, (inputs, targets) in enumerate(stream_batches(ids, rows, seq_len))]
        if shuffle:
            rng.shuffle(windows)
        return windows

    def task(self, state: RecipeState) -> LanguageModelTask:
        return LanguageModelTask(state.data_options["level"])

    def predict(self, model: nn.Module, state: RecipeState, lines: Iterable[str]) -> Iterator[str]:
        """Each line's per-token perplexity (see the module docstring), as a number per line."""
        level, vocabulary = state.data_options["level"], state.vocabularies[VOCABULARY]
        start = vocabulary.id(separator(level))
        for chunk in numbered_chunks(lines):
            ids = [vocabulary.encode(line_tokens(cased(line, state.data_options), level)) for _, line in chunk]
            yield from (f"{value:.6g}" for value in line_perplexities(model, ids, start))

    def generate(self, model: nn.Module, state: RecipeState, prompt: str = "", length: int = 200,
                 temperature: float = 1.0, top_k: int | None = None, seed: int = 0) -> str:
        """``prompt`` followed by ``length`` tokens sampled from the model, as text.

        Args:
            model: the ``LanguageModel`` (``TrainedRun.model``).
            state: its recipe state (``TrainedRun.state``): the vocabulary, the level, ``lowercase``.
            prompt: the text to continue (plain text at every level: for ``ptb-char`` its spaces
                become ``_``; lower-cased for the model with ``lowercase``, returned as given);
                empty: start a new line.
            length, temperature, top_k: as ``rnnkit.models.sampling.generate`` (temperature 0: greedy).
            seed: seeds the draw (the same seed, the same text).

        Tokens are joined as the level writes them: characters as they are; words with spaces,
        ``<eos>`` as a line break; ``ptb-char`` symbols with ``_`` as a space and ``<eos>`` as a line break.
        """
        level, vocabulary = state.data_options["level"], state.vocabularies[VOCABULARY]
        text = cased(prompt, state.data_options)
        if level == "char":
            prompt_tokens = list(text)
        elif level == "word":
            prompt_tokens = text.split()
        else:
            prompt_tokens = list("_".join(text.split()))
        prompt_ids = [vocabulary.id(separator(level))] + vocabulary.encode(prompt_tokens)
        generator = torch.Generator(device=model_device(model)).manual_seed(seed)
        new_ids = sample_tokens(model, prompt_ids, length, temperature=temperature, top_k=top_k,
                                generator=generator)
        return prompt + join_tokens(vocabulary.decode(new_ids), level, after_text=bool(prompt))


def join_tokens(tokens: list[str], level: str, after_text: bool = False) -> str:
    """Generated tokens as text (see ``generate``); ``after_text``: they continue a non-empty prompt."""
    if level == "char":
        return "".join(tokens)
    if level == "ptb-char":
        return "".join("\n" if token == EOS else " " if token == "_" else token for token in tokens)
    text = ""
    for token in tokens:
        if token == EOS:
            text += "\n"
        else:
            text += (" " if (text or after_text) and not text.endswith("\n") else "") + token
    return text


@torch.no_grad()
def line_perplexities(model: nn.Module, lines: list[list[int]], start: int) -> list[float]:
    """exp(mean −ln p(token | the line's earlier tokens, ``start`` before the first)) of each line of
    ids, the lines read as one padded batch with their lengths."""
    inputs, lengths = pad_batch([[start] + ids[:-1] for ids in lines], start)   # (B, T), (B,)
    targets, _ = pad_batch(lines, start)                                        # (B, T)
    inputs, lengths, targets = (t.to(model_device(model)) for t in (inputs, lengths, targets))
    logits, _ = model(inputs, lengths=lengths)                                  # (B, T, V)
    nll = -logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T)
    nll = nll * length_mask(lengths, targets.shape[1])                          # (B, T), 0 past the end
    return (nll.sum(1) / lengths).exp().tolist()


def _check_level(level: Any) -> str:
    if level not in LEVELS:
        raise ValueError(f"lm data option 'level' must be one of {', '.join(LEVELS)}, got {level!r}")
    return level


register(LanguageModelRecipe())
