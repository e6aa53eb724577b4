"""Recipe ``tag``: one tag per word (part of speech, BIO slots), with a joint intent for ATIS.

The model is ``rnnkit.models.tagger.SequenceTagger`` (Huang, Xu & Yu 2015, arXiv:1508.01991; Liu &
Lane 2016, arXiv:1609.01454, for the joint intent): a word embedding (‖ a character BiLSTM with
``char_features``), a recurrent encoder, tag scores per word, a linear-chain CRF with ``crf``.

Data option ``format``:

* ``conllu``: a CoNLL-U file, the tags of the column ``column`` (``upos`` by default, or ``xpos``,
  or any other CoNLL-U column);
* ``atis``: an ATIS split folder (``seq.in`` words, ``seq.out`` BIO slot tags, ``label`` intents);
  an intent head is then added to the tagger automatically and trained jointly;
* ``auto`` (default): a folder is ATIS, a file CoNLL-U.

Other data options: ``lowercase`` (False: lower-case the words read, those of training, evaluation
and prediction alike), ``min_freq`` (1). Model options: ``crf`` (False), ``char_features`` (False),
besides the common ones.

Vocabularies: ``words``, ``chars`` (the characters of the training words, used when
``char_features``), ``tags``, and ``intents`` for ATIS. Evaluation: ``accuracy`` over words; for a
BIO tag set (every tag ``O`` or ``B-``/``I-``/``E-``/``S-`` + type) the conlleval span
``precision``, ``recall`` and ``f1``; ``intent_accuracy`` with an intent head. The dev metric is
``f1`` for BIO tag sets, else ``accuracy``. Tags and intents never seen in training count as
errors. Prediction: a whitespace-tokenised sentence in, its tags out, separated by spaces, followed
by a tab and the intent when there is an intent head.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from ..data.atis import AtisUtterance, iter_atis
from ..data.batching import bucket_batches, pad_batch
from ..data.conll import TaggedSentence, iter_conllu
from ..data.vocab import Vocabulary
from ..metrics import accuracy, span_f1
from ..models.tagger import SequenceTagger
from .base import RecipeState, encoder_config, register
from .common import cased, encode_words, label_ids, model_device, numbered_chunks, split_words

FORMATS = ("auto", "conllu", "atis")
BIO_TAG = re.compile(r"[BIES]-.+")


class TagBatch(NamedTuple):
    words: Tensor                      # (B, T) word ids
    lengths: Tensor                    # (B,)
    chars: Tensor                      # (B, T, W) character ids of each word
    char_lengths: Tensor               # (B, T) characters of each word, 0 past the sentence's end
    tags: Tensor                       # (B, T) tag ids; -1 for a tag not seen in training
    intents: Tensor | None             # (B,) intent ids (-1: not seen in training), or None
    gold_tags: list[list[str]]         # the tags as written, for the metrics
    gold_intents: list[str] | None


class TagRecipe:
    """Sequence tagging (see the module's docstring for formats, options and outputs)."""

    name = "tag"
    summary = "word -> tag: POS tagging (CoNLL-U), ATIS slot filling with a joint intent"
    model_defaults: dict[str, Any] = {"crf": False, "char_features": False}
    data_defaults: dict[str, Any] = {"format": "auto", "column": "upos", "lowercase": False, "min_freq": 1}

    def read(self, path: str, data_options: dict[str, Any]) -> list[TaggedSentence | AtisUtterance]:
        """The tagged sentences of ``path`` (see ``format`` in the module's docstring), their words
        lower-cased with ``lowercase``."""
        data_format = data_options["format"]
        if data_format not in FORMATS:
            raise ValueError(f"tag data option format must be one of {', '.join(FORMATS)}, got {data_format!r}")
        if data_format == "atis" or (data_format == "auto" and Path(path).is_dir()):
            records = list(iter_atis(path))
        else:
            records = list(iter_conllu(path, column=data_options["column"]))
        if not data_options["lowercase"]:
            return records
        return [r._replace(words=[cased(word, data_options) for word in r.words]) for r in records]

    def prepare(self, records: list[Any], model_options: dict[str, Any], data_options: dict[str, Any]) -> RecipeState:
        """The ``words``, ``chars``, ``tags`` (and, for ATIS, ``intents``) of the training records."""
        words = Vocabulary.build((r.words for r in records), min_freq=data_options["min_freq"])
        vocabularies = {
            "words": words,
            "chars": Vocabulary.build(list(word) for r in records for word in r.words),
            "tags": Vocabulary.build((r.tags for r in records), specials=(), unknown=None),
        }
        if isinstance(records[0], AtisUtterance):
            vocabularies["intents"] = Vocabulary.build(([r.intent] for r in records), specials=(), unknown=None)
        return RecipeState(self.name, model_options, data_options, vocabularies)

    def build_model(self, state: RecipeState) -> SequenceTagger:
        model_options, vocabularies = state.model_options, state.vocabularies
        words, chars, intents = vocabularies["words"], vocabularies["chars"], vocabularies.get("intents")
        if chars.pad_index != words.pad_index:
            raise ValueError(f"the word and character vocabularies must pad with the same id (the tagger "
                             f"has one padding_idx), got {words.pad_index} and {chars.pad_index}")
        return SequenceTagger(len(words), len(vocabularies["tags"]), embedding_dim=model_options["embedding"],
                              encoder=encoder_config(model_options), dropout=model_options["dropout"],
                              crf=model_options["crf"],
                              char_vocab_size=len(chars) if model_options["char_features"] else None,
                              num_intents=len(intents) if intents is not None else None,
                              padding_idx=words.pad_index)

    def batches(self, records: list[Any], state: RecipeState, batch_size: int, *,
                shuffle: bool, seed: int) -> list[TagBatch]:
        """Batches of sentences of similar lengths (``bucket_batches``), with their true lengths."""
        vocabularies = state.vocabularies
        if records and isinstance(records[0], AtisUtterance) != ("intents" in vocabularies):
            raise ValueError("the model was trained " + ("with" if "intents" in vocabularies else "without")
                             + " intents (ATIS), but this data " + ("has none" if "intents" in vocabularies
                                                                    else "is an ATIS folder"))
        order = bucket_batches([len(r.words) for r in records], batch_size, shuffle=shuffle, seed=seed)
        return [tag_batch([records[i] for i in indices], vocabularies) for indices in order]

    def task(self, state: RecipeState) -> "TaggingTask":
        return TaggingTask(state.vocabularies["tags"], state.vocabularies.get("intents"),
                           char_features=state.model_options["char_features"])

    def predict(self, model: nn.Module, state: RecipeState, lines: Iterable[str]) -> Iterator[str]:
        """The tags of each whitespace-tokenised line (``\\t`` and the intent with an intent head),
        its words lower-cased with ``lowercase``; a line without words raises DataFormatError naming
        it (``<input>:N``)."""
        vocabularies = state.vocabularies
        words, tags, intents = vocabularies["words"], vocabularies["tags"], vocabularies.get("intents")
        device = model_device(model)
        for chunk in numbered_chunks(lines):
            sentences = [split_words(line, line_number, state.data_options) for line_number, line in chunk]
            word_ids, lengths = encode_words(sentences, words)                            # (B, T), (B,)
            chars, char_lengths = char_ids(sentences, vocabularies["chars"])              # (B, T, W), (B, T)
            paths, intent_ids = tag_sentences(model, *(tensor.to(device) for tensor in
                                                       (word_ids, lengths, chars, char_lengths)))
            for b, path in enumerate(paths):
                line = " ".join(tags.decode(path))
                yield line if intent_ids is None else f"{line}\t{intents.symbols[intent_ids[b]]}"


def tag_batch(records: Sequence[Any], vocabularies: dict[str, Vocabulary]) -> TagBatch:
    sentences = [r.words for r in records]
    words, lengths = encode_words(sentences, vocabularies["words"])                      # (B, T), (B,)
    chars, char_lengths = char_ids(sentences, vocabularies["chars"])                     # (B, T, W), (B, T)
    tag_vocabulary = vocabularies["tags"]
    tags, _ = pad_batch([label_ids(r.tags, tag_vocabulary).tolist() for r in records], 0)  # (B, T)
    gold_intents = [r.intent for r in records] if "intents" in vocabularies else None
    intents = label_ids(gold_intents, vocabularies["intents"]) if gold_intents is not None else None
    return TagBatch(words, lengths, chars, char_lengths, tags, intents, [list(r.tags) for r in records],
                    gold_intents)


def char_ids(sentences: Sequence[Sequence[str]], chars: Vocabulary) -> tuple[Tensor, Tensor]:
    """The character ids (B, T, W) of every word of every sentence, padded, and the characters of
    each word (B, T), 0 past a sentence's end."""
    all_words = [word for sentence in sentences for word in sentence]
    word_chars, word_lengths = pad_batch([chars.encode(word) for word in all_words], chars.pad_index)  # (N, W), (N,)
    B, T = len(sentences), max(len(sentence) for sentence in sentences)
    ids = torch.full((B, T, word_chars.shape[1]), chars.pad_index, dtype=torch.long)     # (B, T, W)
    lengths = torch.zeros(B, T, dtype=torch.long)                                        # (B, T)
    first = 0
    for b, sentence in enumerate(sentences):
        ids[b, :len(sentence)] = word_chars[first:first + len(sentence)]
        lengths[b, :len(sentence)] = word_lengths[first:first + len(sentence)]
        first += len(sentence)
    return ids, lengths


def tag_sentences(tagger: SequenceTagger, words: Tensor, lengths: Tensor, chars: Tensor, char_lengths: Tensor
                  ) -> tuple[list[list[int]], list[int] | None]:
    """The tagger's tag ids per sentence and intent ids (None without an intent head); the
    characters are passed on only when the tagger reads them. ``tagger``: the model itself, as
    evaluation and prediction have it (``predict`` is not a call of its forward)."""
    if tagger.char_encoder is None:
        return tagger.predict(words, lengths)
    return tagger.predict(words, lengths, chars, char_lengths)


def is_bio(tags: Vocabulary) -> bool:
    """Whether a tag set is BIO-like: only ``O`` and ``B-``/``I-``/``E-``/``S-`` + type, at least one such."""
    return (all(tag == "O" or BIO_TAG.fullmatch(tag) for tag in tags.symbols)
            and any(tag != "O" for tag in tags.symbols))


class TaggingTask:
    """The tagger's loss, per word (plus the mean intent cross-entropy), and the tagging metrics.

    The loss is what ``model(..., tags=..., intents=...)`` returns: a call of the model itself, so
    that under DistributedDataParallel it goes through the wrapper's forward and the gradients are
    synchronised.

    Args:
        tags: the tag vocabulary (decodes predictions; decides whether span F1 is the dev metric).
        intents: the intent vocabulary, or None for a tagger without an intent head.
        char_features: the tagger reads each word's characters (the model option ``char_features``).
    """

    higher_is_better = True
    loss_unit = "tokens"

    def __init__(self, tags: Vocabulary, intents: Vocabulary | None, *, char_features: bool = False) -> None:
        self.tags, self.intents, self.bio = tags, intents, is_bio(tags)
        self.char_features = char_features
        self.metric = "f1" if self.bio else "accuracy"

    def training_loss(self, model: nn.Module, batch: TagBatch) -> tuple[Tensor, dict[str, int]]:
        if bool((batch.tags < 0).any()) or (batch.intents is not None and bool((batch.intents < 0).any())):
            raise ValueError("a training batch holds a tag or intent the vocabularies lack; "
                             "resume a run only with the training file it started from")
        characters = (batch.chars, batch.char_lengths) if self.char_features else ()
        _, loss = model(batch.words, batch.lengths, *characters, tags=batch.tags, intents=batch.intents)
        return loss, {"tokens": int(batch.lengths.sum()), "examples": len(batch.gold_tags)}

    def evaluate(self, model: nn.Module, batches: Iterable[TagBatch]) -> dict[str, float]:
        predicted, gold, predicted_intents, gold_intents = [], [], [], []
        for batch in batches:
            paths, intent_ids = tag_sentences(model, batch.words, batch.lengths, batch.chars, batch.char_lengths)
            predicted += [self.tags.decode(path) for path in paths]
            gold += batch.gold_tags
            if intent_ids is not None:
                predicted_intents += self.intents.decode(intent_ids)
                gold_intents += batch.gold_intents
        if not gold:
            raise ValueError("TaggingTask.evaluate got no batches to score")
        metrics = {"accuracy": accuracy([t for s in predicted for t in s], [t for s in gold for t in s])}
        if self.bio:
            spans = span_f1(predicted, gold)
            metrics.update(precision=spans["precision"], recall=spans["recall"], f1=spans["f1"])
        if gold_intents:
            metrics["intent_accuracy"] = accuracy(predicted_intents, gold_intents)
        return metrics


register(TagRecipe())
