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
values of a series separated by commas or spaces), its label out. A vocabulary without capitals
(``lowercase=True``, or lower-cased data such as SST) lower-cases the words to predict, since a word
with capitals could only be unknown to it.

The helpers ``encode_words``, ``label_ids``, ``lowercases_input`` and ``numbered_chunks`` serve the
``tag`` recipe as well.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.atis import iter_atis
from ..data.batching import bucket_batches, pad_batch
from ..data.errors import DataFormatError
from ..data.labelled import LabelledText, iter_labelled_tsv, iter_sst_sentences
from ..data.text import existing_file, iter_nonblank_lines
from ..data.timeseries import VALUE_SEPARATOR, parse_float, read_ucr
from ..data.vocab import Vocabulary
from ..models.classifier import SequenceClassifier
from .base import cell_options, register

FORMATS = ("auto", "tsv", "sst", "atis", "ucr")
UNSEEN_LABEL = -1          # the id of a dev/test label the training file never had
SERIES_FEATURES = 1        # UCR series are univariate: one value per step
PREDICT_BATCH = 64         # lines predicted together


class LabelledSeries(NamedTuple):
    """One time series and its class."""
    values: np.ndarray     # (T, 1) float32
    label: str


class ClassificationBatch(NamedTuple):
    inputs: Tensor         # (B, T) word ids, or (B, T, 1) values
    lengths: Tensor        # (B,)
    labels: Tensor         # (B,) class ids; UNSEEN_LABEL for a class not seen in training


# ---------------------------------------------------------------------------- shared with `tag`

def encode_words(sentences: Sequence[Sequence[str]], words: Vocabulary) -> tuple[Tensor, Tensor]:
    """Word ids (B, T), padded with ``words.pad_index``, and the lengths (B,)."""
    return pad_batch([words.encode(sentence) for sentence in sentences], words.pad_index)


def label_ids(labels: Iterable[str], vocabulary: Vocabulary) -> Tensor:
    """(N,) ids of ``labels``; UNSEEN_LABEL for one the vocabulary lacks (it never equals a prediction)."""
    return torch.tensor([vocabulary.index.get(label, UNSEEN_LABEL) for label in labels], dtype=torch.long)


def lowercases_input(words: Vocabulary) -> bool:
    """Whether no word of ``words`` has capitals: then an input word with capitals could only be
    unknown, and predicting lower-cases it (what ``lowercase=True`` did to the training data)."""
    return all(symbol == symbol.lower() for symbol in words.symbols)


def numbered_chunks(lines: Iterable[str], size: int = PREDICT_BATCH) -> Iterator[list[tuple[int, str]]]:
    """``(line number from 1, line without its ending)`` pairs, ``size`` at a time."""
    chunk: list[tuple[int, str]] = []
    for line_number, line in enumerate(lines, start=1):
        chunk.append((line_number, line.rstrip("\r\n")))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def split_words(line: str, line_number: int, lowercase: bool) -> list[str]:
    """The whitespace-separated words of one input line; DataFormatError ``<input>:N`` when it has none."""
    words = (line.lower() if lowercase else line).split()
    if not words:
        raise DataFormatError(None, line_number, "empty line (one sentence per line expected)")
    return words


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


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
        lowercase = data_options["lowercase"]
        if data_format == "ucr":
            values, labels = read_ucr(path)                                  # (N, T, 1), N labels
            return [LabelledSeries(series, label) for series, label in zip(values, labels)]
        if data_format == "tsv":
            return list(iter_labelled_tsv(path, lowercase=lowercase))
        if data_format == "sst":
            examples = iter_sst_sentences(path)
        else:
            examples = (LabelledText(u.words, u.intent) for u in iter_atis(path))
        return [LabelledText([w.lower() for w in e.tokens] if lowercase else e.tokens, e.label)
                for e in examples]

    def build_vocabularies(self, records: list[Any], data_options: dict[str, Any]) -> dict[str, Vocabulary]:
        vocabularies = {"labels": Vocabulary.build(([r.label] for r in records), specials=(), unknown=None)}
        if isinstance(records[0], LabelledText):
            vocabularies["words"] = Vocabulary.build((r.tokens for r in records),
                                                     min_freq=data_options["min_freq"])
        return vocabularies

    def build_model(self, model_options: dict[str, Any], vocabularies: dict[str, Vocabulary]) -> SequenceClassifier:
        options = dict(num_classes=len(vocabularies["labels"]), hidden_size=model_options["hidden"],
                       num_layers=model_options["layers"], bidirectional=model_options["bidirectional"],
                       pooling=model_options["pooling"], dropout=model_options["dropout"],
                       **cell_options(model_options))
        words = vocabularies.get("words")
        if words is None:
            return SequenceClassifier(input_size=SERIES_FEATURES, **options)
        return SequenceClassifier(len(words), embedding_dim=model_options["embedding"],
                                  padding_idx=words.pad_index, **options)

    def batches(self, records: list[Any], vocabularies: dict[str, Vocabulary], batch_size: int, *,
                shuffle: bool, seed: int) -> list[ClassificationBatch]:
        """Batches of similar lengths (``bucket_batches``), each with its true lengths."""
        _check_records_fit(records, vocabularies)
        order = bucket_batches([len(r[0]) for r in records], batch_size, shuffle=shuffle, seed=seed)
        return [self._batch([records[i] for i in indices], vocabularies) for indices in order]

    def _batch(self, records: list[Any], vocabularies: dict[str, Vocabulary]) -> ClassificationBatch:
        labels = label_ids((r.label for r in records), vocabularies["labels"])           # (B,)
        if "words" in vocabularies:
            return ClassificationBatch(*encode_words([r.tokens for r in records], vocabularies["words"]), labels)
        return ClassificationBatch(*pad_series([r.values for r in records]), labels)

    def task(self, vocabularies: dict[str, Vocabulary], model_options: dict[str, Any]) -> "ClassificationTask":
        return ClassificationTask()

    def predict(self, model: nn.Module, vocabularies: dict[str, Vocabulary], model_options: dict[str, Any],
                lines: Iterable[str]) -> Iterator[str]:
        """The label of each line: raw text (words split on whitespace) or, for a model of time
        series, values separated by commas or spaces. A line without words or values raises
        DataFormatError naming it (``<input>:N``)."""
        labels, words = vocabularies["labels"], vocabularies.get("words")
        lowercase = words is not None and lowercases_input(words)
        for chunk in numbered_chunks(lines):
            if words is not None:
                inputs, lengths = encode_words([split_words(line, n, lowercase) for n, line in chunk], words)
            else:
                inputs, lengths = pad_series([parse_values(line, n) for n, line in chunk])
            device = model_device(model)
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
        logits = model(batch.inputs, batch.lengths)                                        # (B, C)
        counts = {"examples": len(batch.labels), "tokens": int(batch.lengths.sum())}
        return F.cross_entropy(logits, batch.labels), counts

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


def parse_values(line: str, line_number: int) -> np.ndarray:
    """The values of one input line, separated by commas or whitespace, as float32 (T, 1)."""
    fields = [field for field in VALUE_SEPARATOR.split(line.strip()) if field]
    if not fields:
        raise DataFormatError(None, line_number, "empty line (values separated by commas or spaces expected)")
    return np.asarray([parse_float(f, None, line_number, "value") for f in fields], dtype=np.float32)[:, None]


def pad_series(series: Sequence[np.ndarray]) -> tuple[Tensor, Tensor]:
    """Series of (T_b, I) values → values (B, T, I) padded with zeros, and the lengths (B,)."""
    lengths = torch.tensor([len(values) for values in series], dtype=torch.long)         # (B,)
    padded = torch.zeros(len(series), int(lengths.max()), series[0].shape[1])           # (B, T, I)
    for row, values in enumerate(series):
        padded[row, :len(values)] = torch.from_numpy(np.asarray(values, dtype=np.float32))
    return padded, lengths


def _check_records_fit(records: list[Any], vocabularies: dict[str, Vocabulary]) -> None:
    reads_words = "words" in vocabularies
    if records and isinstance(records[0], LabelledText) != reads_words:
        found = "sentences" if isinstance(records[0], LabelledText) else "time series"
        wanted = "sentences" if reads_words else "time series"
        raise ValueError(f"the model was trained on {wanted}, but this file holds {found}; "
                         "give the data option format of the training file")


register(ClassifyRecipe())
