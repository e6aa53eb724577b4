r"""The ``translate`` recipe: an attentional encoder-decoder from source sentences to target sentences.

Model: ``rnnkit.models.seq2seq.Seq2Seq`` (Sutskever et al. 2014, arXiv:1409.3215; Bahdanau et al.
2015, arXiv:1409.0473; Luong et al. 2015, arXiv:1508.04025), trained with teacher forcing on the
mean cross-entropy of the target tokens (EOS included, padding excluded)

.. math:: \mathcal{L} = -\frac{1}{N} \sum_{n} \sum_{t=1}^{|y_n| + 1} \ln p(y_{n,t} \mid y_{n,<t}, x_n),

decoded greedily or by beam search with Wu et al. (2016)'s length normalisation
(``rnnkit.models.decoding``).

Data options (``data_defaults``):

* ``format``: ``"tsv"`` (one ``source<TAB>target`` pair per line, Tatoeba's ``fra.txt``), ``"parallel"``
  (two line-aligned files, the path given as ``SOURCE_FILE,TARGET_FILE``, e.g.
  ``train.de.gz,train.en.gz``) or ``"auto"`` (the default: ``parallel`` when the path is two names
  joined by a comma, ``tsv`` otherwise).
* ``reverse``: swap the tsv columns (Tatoeba's English→French becomes French→English).
* ``lowercase``: lower-case both sides before tokenising (``rnnkit.data.parallel.simple_tokenize``).
* ``min_freq``: tokens seen fewer times in training become ``<unk>``.
* ``max_length``: training batches (those built with ``shuffle=True``, as ``rnnkit.recipes.run.train``
  builds them) leave out pairs with more tokens than this on either side; dev and test pairs are all
  kept and scored. None: keep every pair.

Model options (``model_defaults``, besides the common ones; ``bidirectional`` is the encoder's):
``attention`` (``bahdanau`` | ``luong-dot`` | ``luong-general`` | ``none``), ``input_feeding``, ``beam``
(the beam size of evaluation and prediction; 1 = greedy search, batched) and ``length_penalty``
(α of lp(Y) = ((5 + |Y|)/6)^α in beam search).

Metrics: ``bleu`` (the dev metric) and ``chrf`` by sacrebleu (``rnnkit.metrics``), ``perplexity`` and
``loss`` (teacher-forced, per target token). BLEU and chrF compare *detokenised* text: the tokens of
the hypothesis and of the reference (the reference as read: tokenised, lower-cased when asked) are
joined by ``detokenize``, single spaces with none before closing punctuation (``. , ! ? ; : % ) ] }``)
nor after opening brackets; sacrebleu then applies its own 13a tokenisation to both, as it does
for published scores. Decoding stops after 2·S + 10 steps, S the longest source of the batch.

``predict``: each raw source sentence → its detokenised translation (an empty line → an empty line).
``translate(model, state, lines, beam, max_length)`` returns, for each line, the translation, the
attention weights (T_out, S) (None without attention), the source tokens as the model read them
(tokenised, lower-cased with ``lowercase``, as the training sources were) and the output tokens (the
final ``<eos>`` included when produced, one per row of the weights), for
``rnnkit.diagnose.attention.plot_attention``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

from torch import Tensor, nn

from ..data.batching import bucket_batches, pad_batch
from ..data.parallel import SentencePair, read_pair_tsv, read_parallel, simple_tokenize
from ..data.vocab import BOS, EOS, PAD, UNK, Vocabulary
from ..metrics import bleu, chrf, perplexity
from ..models.decoding import Hypothesis, beam_search, greedy_decode
from ..models.seq2seq import Seq2Seq
from .base import RecipeState, encoder_config, register
from .common import cased, model_device, numbered_chunks

FORMATS = ("auto", "tsv", "parallel")
PREDICT_CHUNK = 32          # sentences decoded together by translate

_NO_SPACE_BEFORE = re.compile(r" ([.,!?;:%)\]}])")
_NO_SPACE_AFTER = re.compile(r"([(\[{]) ")


def detokenize(tokens: Iterable[str]) -> str:
    """Tokens as text: single spaces, none before closing punctuation nor after opening brackets
    (``["Hello", ",", "world", "!"]`` → ``"Hello, world!"``)."""
    return _NO_SPACE_AFTER.sub(r"\1", _NO_SPACE_BEFORE.sub(r"\1", " ".join(tokens)))


def decoding_limit(source_lengths: Tensor) -> list[int]:
    """Decoding steps allowed to each sentence: 2·S + 10, S its own source length (so that a
    translation, and BLEU, do not depend on the batch a sentence is decoded in)."""
    return [2 * int(n) + 10 for n in source_lengths.tolist()]


class TranslationBatch(NamedTuple):
    """A batch of pairs, padded: ``source`` (B, S) with ``source_lengths`` (B,), ``target_in`` (B, T)
    = BOS y_1 … y_{T−1}, ``target_out`` (B, T) = y_1 … y_T EOS; ``references``: the B detokenised targets."""
    source: Tensor
    source_lengths: Tensor
    target_in: Tensor
    target_out: Tensor
    references: tuple[str, ...]


class Translation(NamedTuple):
    """One translated sentence (see ``TranslateRecipe.translate``)."""
    text: str
    attention: Tensor | None          # (T_out, S) weights of each output step over the source tokens
    source_tokens: list[str]
    output_tokens: list[str]


class TranslationTask:
    """Teacher-forced cross-entropy per target token; evaluation decodes and scores BLEU and chrF."""

    metric = "bleu"
    higher_is_better = True
    loss_unit = "tokens"

    def __init__(self, target_vocabulary: Vocabulary, beam: int, length_penalty: float) -> None:
        self.target_vocabulary, self.beam, self.length_penalty = target_vocabulary, beam, length_penalty

    def training_loss(self, model: nn.Module, batch: TranslationBatch) -> tuple[Tensor, dict[str, int]]:
        _, loss = model(batch.source, batch.source_lengths, batch.target_in, targets=batch.target_out)
        tokens = int((batch.target_out != self.target_vocabulary.pad_index).sum())     # what the mean is over
        return loss, {"tokens": tokens, "examples": len(batch.references)}

    def evaluate(self, model: nn.Module, batches: Iterable[TranslationBatch]) -> dict[str, float]:
        total, count, hypotheses, references = 0.0, 0, [], []
        for batch in batches:
            logits, _ = model(batch.source, batch.source_lengths, batch.target_in)   # (B, T, V)
            total += float(model.loss(logits, batch.target_out, reduction="sum"))
            count += int((batch.target_out != self.target_vocabulary.pad_index).sum())
            decoded = decode(model, batch.source, batch.source_lengths, self.beam, self.length_penalty)
            hypotheses += [detokenize(self.target_vocabulary.decode(h.tokens)) for h in decoded]
            references += batch.references
        if count == 0:
            raise ValueError("the translate task got no batches to evaluate")
        return {"bleu": bleu(hypotheses, references), "chrf": chrf(hypotheses, references),
                "perplexity": perplexity(total, count), "loss": total / count}


def decode(model: Seq2Seq, source: Tensor, source_lengths: Tensor, beam: int, length_penalty: float,
           max_length: int | None = None) -> list[Hypothesis]:
    """Greedy search (beam 1, the whole batch at once) or beam search; ``max_length`` None: 2·S + 10."""
    limit = decoding_limit(source_lengths) if max_length is None else max_length
    if beam == 1:
        return greedy_decode(model, source, source_lengths, limit)
    return beam_search(model, source, source_lengths, beam, limit, length_penalty)


class TranslateRecipe:
    """Translation of sentences with an attentional encoder-decoder (see the module docstring)."""

    name = "translate"
    summary = "translation with an attentional encoder-decoder (BLEU, chrF, perplexity)"
    model_defaults: dict[str, Any] = {"attention": "bahdanau", "input_feeding": True, "beam": 1,
                                      "length_penalty": 0.6}
    data_defaults: dict[str, Any] = {"format": "auto", "reverse": False, "lowercase": False, "min_freq": 1,
                                     "max_length": 50}

    def read(self, path: str, data_options: dict[str, Any]) -> list[SentencePair]:
        """The sentence pairs of ``path`` (see ``format`` in the module docstring)."""
        fmt = data_options["format"]
        if fmt not in FORMATS:
            raise ValueError(f"translate data option 'format' must be one of {', '.join(FORMATS)}, got {fmt!r}")
        if fmt == "auto":
            fmt = "parallel" if "," in str(path) and not Path(path).is_file() else "tsv"
        lowercase = data_options["lowercase"]
        if fmt == "tsv":
            pairs = read_pair_tsv(path, lowercase=lowercase, reverse=data_options["reverse"])
        else:
            names = str(path).split(",")
            if len(names) != 2 or not all(names):
                raise ValueError(f"{path}: the parallel format takes two line-aligned files as "
                                 "SOURCE_FILE,TARGET_FILE (e.g. train.de.gz,train.en.gz)")
            pairs = read_parallel(names[0], names[1], lowercase=lowercase)
        return pairs

    def prepare(self, records: list[SentencePair], model_options: dict[str, Any],
                data_options: dict[str, Any]) -> RecipeState:
        """The ``source`` and ``target`` vocabularies of the training pairs; the data options as they are."""
        min_freq = data_options["min_freq"]
        vocabularies = {"source": Vocabulary.build((pair.source for pair in records), min_freq=min_freq),
                        "target": Vocabulary.build((pair.target for pair in records), min_freq=min_freq,
                                                   specials=(PAD, UNK, BOS, EOS))}
        return RecipeState(self.name, model_options, data_options, vocabularies)

    def build_model(self, state: RecipeState) -> nn.Module:
        model_options = state.model_options
        source, target = state.vocabularies["source"], state.vocabularies["target"]
        return Seq2Seq(len(source), len(target), model_options["embedding"], encoder=encoder_config(model_options),
                       attention=model_options["attention"], input_feeding=model_options["input_feeding"],
                       dropout=model_options["dropout"], bos_index=target.index[BOS],
                       eos_index=target.index[EOS], padding_idx=target.pad_index)

    def batches(self, records: list[SentencePair], state: RecipeState, batch_size: int, *,
                shuffle: bool, seed: int) -> list[TranslationBatch]:
        """Batches of pairs of similar source length; ``shuffle`` (training) also leaves out the pairs
        longer than the data option ``max_length`` on either side."""
        max_length = state.data_options["max_length"]
        if shuffle and max_length is not None:
            records = [pair for pair in records
                       if len(pair.source) <= max_length and len(pair.target) <= max_length]
            if not records:
                raise ValueError(f"no training pair has at most max_length={max_length} tokens on both sides")
        groups = bucket_batches([len(pair.source) for pair in records], batch_size, shuffle=shuffle, seed=seed)
        return [self._batch([records[i] for i in group], state.vocabularies) for group in groups]

    def task(self, state: RecipeState) -> TranslationTask:
        options = state.model_options
        return TranslationTask(state.vocabularies["target"], options["beam"], options["length_penalty"])

    def predict(self, model: nn.Module, state: RecipeState, lines: Iterable[str]) -> Iterator[str]:
        """Each raw source sentence → its detokenised translation."""
        for chunk in numbered_chunks(lines):
            yield from (t.text for t in self.translate(model, state, [line for _, line in chunk]))

    def translate(self, model: nn.Module, state: RecipeState, lines: Iterable[str], beam: int | None = None,
                  max_length: int | None = None) -> list[Translation]:
        """Translate raw sentences, tokenised (and lower-cased with the data option ``lowercase``) as
        the training sources were; ``beam`` None: the model option's; ``max_length`` None: 2·S + 10
        decoding steps. An empty sentence gets an empty translation (and no attention)."""
        model_options = state.model_options
        source_vocabulary, target_vocabulary = state.vocabularies["source"], state.vocabularies["target"]
        beam = model_options["beam"] if beam is None else beam
        tokenised = [simple_tokenize(cased(line, state.data_options)) for line in lines]
        results = [Translation("", None, [], []) for _ in tokenised]
        filled = [k for k, tokens in enumerate(tokenised) if tokens]
        for start in range(0, len(filled), PREDICT_CHUNK):
            rows = filled[start:start + PREDICT_CHUNK]
            source, source_lengths = pad_batch([source_vocabulary.encode(tokenised[k]) for k in rows],
                                               source_vocabulary.pad_index)              # (B, S), (B,)
            device = model_device(model)
            hypotheses = decode(model, source.to(device), source_lengths.to(device), beam,
                                model_options["length_penalty"], max_length)
            for k, hypothesis in zip(rows, hypotheses):
                words = target_vocabulary.decode(hypothesis.tokens)
                attention = None if hypothesis.attention is None else hypothesis.attention.cpu()
                results[k] = Translation(detokenize(words), attention, tokenised[k],
                                         words + ([EOS] if hypothesis.finished else []))
        return results

    @staticmethod
    def _batch(pairs: list[SentencePair], vocabularies: dict[str, Vocabulary]) -> TranslationBatch:
        source_vocabulary, target_vocabulary = vocabularies["source"], vocabularies["target"]
        pad, bos, eos = target_vocabulary.pad_index, target_vocabulary.index[BOS], target_vocabulary.index[EOS]
        source, source_lengths = pad_batch([source_vocabulary.encode(p.source) for p in pairs], pad)  # (B, S)
        targets = [target_vocabulary.encode(p.target) for p in pairs]
        target_in, _ = pad_batch([[bos] + ids for ids in targets], pad)                             # (B, T)
        target_out, _ = pad_batch([ids + [eos] for ids in targets], pad)                            # (B, T)
        return TranslationBatch(source, source_lengths, target_in, target_out,
                                tuple(detokenize(p.target) for p in pairs))


register(TranslateRecipe())
