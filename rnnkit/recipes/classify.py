"""Recipe ``classify``: a sequence in, one class out (sentiment, intent, time-series class).

The model is ``rnnkit.models.classifier.SequenceClassifier`` (a recurrent encoder, a pooling over
time, a linear layer); the loss is the cross-entropy of each example's class, the dev metric accuracy.

Data option ``format``:

* ``tsv``: ``text<TAB>label`` lines, the text split on whitespace;
* ``sst``: ``<label> <sentence>`` lines (SST-2 / SST-5 sentence files, ``stsa.binary.*``);
* ``atis``: an ATIS split folder (``seq.in`` words, ``label`` the intent; ``seq.out`` is not used);
* ``ucr``: UCR time-series text, one series per line, the class first, then the values (float
  features, no vocabulary);
* ``auto`` (default): a folder is ATIS; otherwise the first non-blank line decides: a tab → tsv,
  only numbers → ucr, an integer then words → sst.

Other data options: ``lowercase`` (False; text formats), ``min_freq`` (1: training words seen fewer
times read as ``<unk>``). Model option: ``pooling`` (``last``, ``mean``, ``max``, ``attention``),
besides the common ones (``rnnkit.recipes.base.COMMON_MODEL_DEFAULTS``).

Vocabularies: ``labels`` (the training classes) and, for text, ``words``. A dev or test label never
seen in training counts as an error, never as a crash. Evaluation: ``accuracy`` and ``loss`` (mean
cross-entropy over the examples whose label is known). Prediction: one line in (raw text, or the
values of a series separated by commas or spaces), its label out; with ``lowercase`` its words are
lower-cased as the training text was.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.atis import iter_atis
from ..data.batching import bucket_batches
from ..data.errors import DataFormatError
from ..data.labelled import LabelledText, iter_labelled_tsv, iter_sst_sentences
from ..data.text import existing_file, iter_nonblank_lines
from ..data.timeseries import VALUE_SEPARATOR, read_ucr
from ..data.vocab import Vocabulary
from ..models.classifier import SequenceClassifier
from .base import RecipeState, encoder_config, register
from .common import (UNSEEN_LABEL, cased, encode_words, label_ids, model_device, numbered_chunks, pad_series,
                     parse_values, split_words)

FORMATS = ("auto", "tsv", "sst", "atis", "ucr")
SERIES_FEATURES = 1        # UCR series are univariate: one value per step


class LabelledSeries(NamedTuple):
    """One time series and its class."""
    values: np.ndarray     # (T, 1) float32
    label: str


class ClassificationBatch(NamedTuple):
    inputs: Tensor         # (B, T) word ids, or (B, T, 1) values
    lengths: Tensor        # (B,)
    labels: Tensor         # (B,) class ids; UNSEEN_LABEL for a class not seen in training


# ---------------------------------------------------------------------------------- the recipe

class ClassifyRecipe:
    """Sequence classification (see the module's docstring for formats, options and outputs)."""

    name = "classify"
    summary = "sequence -> class: sentiment (tsv, SST), ATIS intents, UCR time series"
    model_defaults: dict[str, Any] = {"pooling": "last"}
    data_defaults: dict[str, Any] = {"format": "auto", "lowercase": False, "min_freq": 1}

    def read(self, path: str, data_options: dict[str, Any]) -> list[LabelledText | LabelledSeries]:
        """The examples of ``path`` in the format ``data_options["format"]`` (``auto``: detected)."""
        data_format = detect_format(path) if data_options["format"] == "auto" else data_options["format"]
        if data_format not in FORMATS[1:]:
            raise ValueError(f"classify data option format must be one of {', '.join(FORMATS)}, "
                             f"got {data_format!r}")
        if data_format == "ucr":
            values, labels = read_ucr(path)                                  # (N, T, 1), N labels
            return [LabelledSeries(series, label) for series, label in zip(values, labels)]
        if data_format == "tsv":
            return list(iter_labelled_tsv(path, lowercase=data_options["lowercase"]))
        if data_format == "sst":
            examples = iter_sst_sentences(path)
        else:
            examples = (LabelledText(u.words, u.intent) for u in iter_atis(path))
        return [LabelledText([cased(word, data_options) for word in e.tokens], e.label) for e in examples]

    def prepare(self, records: list[Any], model_options: dict[str, Any], data_options: dict[str, Any]) -> RecipeState:
        """The ``labels`` of the training records and, for text, their ``words``."""
        vocabularies = {"labels": Vocabulary.build(([r.label] for r in records), specials=(), unknown=None)}
        if isinstance(records[0], LabelledText):
            vocabularies["words"] = Vocabulary.build((r.tokens for r in records),
                                                     min_freq=data_options["min_freq"])
        return RecipeState(self.name, model_options, data_options, vocabularies)

    def build_model(self, state: RecipeState) -> SequenceClassifier:
        model_options, vocabularies = state.model_options, state.vocabularies
        options = dict(num_classes=len(vocabularies["labels"]), encoder=encoder_config(model_options),
                       pooling=model_options["pooling"], dropout=model_options["dropout"])
        words = vocabularies.get("words")
        if words is None:
            return SequenceClassifier(input_size=SERIES_FEATURES, **options)
        return SequenceClassifier(len(words), embedding_dim=model_options["embedding"],
                                  padding_idx=words.pad_index, **options)

    def batches(self, records: list[Any], state: RecipeState, batch_size: int, *,
                shuffle: bool, seed: int) -> list[ClassificationBatch]:
        """Batches of similar lengths (``bucket_batches``), each with its true lengths."""
        _check_records_fit(records, state.vocabularies)
        order = bucket_batches([len(r[0]) for r in records], batch_size, shuffle=shuffle, seed=seed)
        return [self._batch([records[i] for i in indices], state.vocabularies) for indices in order]

    def _batch(self, records: list[Any], vocabularies: dict[str, Vocabulary]) -> ClassificationBatch:
        labels = label_ids((r.label for r in records), vocabularies["labels"])           # (B,)
        if "words" in vocabularies:
            return ClassificationBatch(*encode_words([r.tokens for r in records], vocabularies["words"]), labels)
        return ClassificationBatch(*pad_series([r.values for r in records]), labels)

    def task(self, state: RecipeState) -> "ClassificationTask":
        return ClassificationTask()

    def predict(self, model: nn.Module, state: RecipeState, lines: Iterable[str]) -> Iterator[str]:
        """The label of each line: raw text (words split on whitespace, lower-cased with the data
        option ``lowercase``) or, for a model of time series, values separated by commas or spaces.
        A line without words or values raises DataFormatError naming it (``<input>:N``)."""
        labels, words = state.vocabularies["labels"], state.vocabularies.get("words")
        device = model_device(model)
        for chunk in numbered_chunks(lines):
            if words is not None:
                sentences = [split_words(line, n, state.data_options) for n, line in chunk]
                inputs, lengths = encode_words(sentences, words)                           # (B, T), (B,)
            else:
                inputs, lengths = pad_series([parse_values(line, n) for n, line in chunk])  # (B, T, 1), (B,)
            logits = model(inputs.to(device), lengths.to(device))                          # (B, C)
            yield from labels.decode(logits.argmax(dim=1).tolist())


class ClassificationTask:
    """Cross-entropy of each example's class (mean over the batch's examples); dev metric accuracy."""

    metric = "accuracy"
    higher_is_better = True
    loss_unit = "examples"

    def training_loss(self, model: nn.Module, batch: ClassificationBatch) -> tuple[Tensor, dict[str, int]]:
        if bool((batch.labels == UNSEEN_LABEL).any()):
            raise ValueError("a training batch holds a label the label vocabulary lacks; "
                             "resume a run only with the training file it started from")
        _, loss = model(batch.inputs, batch.lengths, labels=batch.labels)                  # mean over B
        return loss, {"examples": len(batch.labels), "tokens": int(batch.lengths.sum())}

    def evaluate(self, model: nn.Module, batches: Iterable[ClassificationBatch]) -> dict[str, float]:
        correct = examples = known = 0
        loss_sum = 0.0
        for batch in batches:
            logits = model(batch.inputs, batch.lengths)                                    # (B, C)
            correct += int((logits.argmax(dim=1) == batch.labels).sum())
            examples += len(batch.labels)
            seen = batch.labels != UNSEEN_LABEL                                            # (B,)
            loss_sum += float(F.cross_entropy(logits[seen], batch.labels[seen], reduction="sum"))
            known += int(seen.sum())
        if examples == 0:
            raise ValueError("ClassificationTask.evaluate got no batches to score")
        metrics = {"accuracy": correct / examples}
        if known:
            metrics["loss"] = loss_sum / known
        return metrics


# ---------------------------------------------------------------------------------- data helpers

def detect_format(path: str) -> str:
    """``atis`` for a folder; else from the first non-blank line: a tab → ``tsv``, only numbers →
    ``ucr``, an integer then a word → ``sst``. FileNotFoundError / DataFormatError otherwise."""
    if Path(path).is_dir():
        return "atis"
    existing_file(path)
    first = next(iter_nonblank_lines(path), None)
    if first is None:
        raise DataFormatError(path, None, "empty file (one example per line expected)")
    line_number, line = first
    if "\t" in line:
        return "tsv"
    fields = [field for field in VALUE_SEPARATOR.split(line.strip()) if field]
    if len(fields) >= 2 and all(_is_number(field) for field in fields):
        return "ucr"
    if fields[0].isdigit():
        return "sst"
    raise DataFormatError(path, line_number, "cannot tell the format: expected text<TAB>label (tsv), "
                                             "'<label> <sentence>' (sst) or a UCR series (label, values); "
                                             "or give the data option format")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_records_fit(records: list[Any], vocabularies: dict[str, Vocabulary]) -> None:
    reads_words = "words" in vocabularies
    if records and isinstance(records[0], LabelledText) != reads_words:
        found = "sentences" if isinstance(records[0], LabelledText) else "time series"
        wanted = "sentences" if reads_words else "time series"
        raise ValueError(f"the model was trained on {wanted}, but this file holds {found}; "
                         "give the data option format of the training file")


register(ClassifyRecipe())
