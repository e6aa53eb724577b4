"""Helpers that several recipes share: reading predict lines, casing, ids, padding, the model's device.

Each has one home here; a recipe module imports what it uses (``classify``, ``tag``, ``regress``,
``lm``, ``translate``, ``tree``).
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..data.batching import pad_batch
from ..data.errors import DataFormatError
from ..data.timeseries import VALUE_SEPARATOR, parse_float
from ..data.vocab import Vocabulary

PREDICT_BATCH = 64         # lines predicted together
UNSEEN_LABEL = -1          # the id of a dev/test label (class, tag, intent) the training file never had


def cased(text: str, data_options: dict[str, Any]) -> str:
    """``text`` lower-cased when the data option ``lowercase`` is set: the one transformation a
    recipe applies to the words it reads, at training, evaluation and prediction time alike."""
    return text.lower() if data_options["lowercase"] else text


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


def split_words(line: str, line_number: int, data_options: dict[str, Any]) -> list[str]:
    """The whitespace-separated words of one input line (``cased``); DataFormatError ``<input>:N``
    when it has none."""
    words = cased(line, data_options).split()
    if not words:
        raise DataFormatError(None, line_number, "empty line (one sentence per line expected)")
    return words


def parse_values(line: str, line_number: int) -> np.ndarray:
    """The values of one input line, separated by commas or whitespace, as float32 (T, 1)."""
    fields = [field for field in VALUE_SEPARATOR.split(line.strip()) if field]
    if not fields:
        raise DataFormatError(None, line_number, "empty line (values separated by commas or spaces expected)")
    return np.asarray([parse_float(f, None, line_number, "value") for f in fields], dtype=np.float32)[:, None]


def encode_words(sentences: Sequence[Sequence[str]], words: Vocabulary) -> tuple[Tensor, Tensor]:
    """Word ids (B, T), padded with ``words.pad_index``, and the lengths (B,)."""
    return pad_batch([words.encode(sentence) for sentence in sentences], words.pad_index)


def label_ids(labels: Iterable[str], vocabulary: Vocabulary) -> Tensor:
    """(N,) ids of ``labels``; UNSEEN_LABEL for one the vocabulary lacks (it never equals a prediction)."""
    return torch.tensor([vocabulary.index.get(label, UNSEEN_LABEL) for label in labels], dtype=torch.long)


def pad_series(series: Sequence[np.ndarray]) -> tuple[Tensor, Tensor]:
    """Series of (T_b, I) values → values (B, T, I) padded with zeros, and the lengths (B,)."""
    lengths = torch.tensor([len(values) for values in series], dtype=torch.long)         # (B,)
    padded = torch.zeros(len(series), int(lengths.max()), series[0].shape[1])           # (B, T, I)
    for row, values in enumerate(series):
        padded[row, :len(values)] = torch.from_numpy(np.asarray(values, dtype=np.float32))
    return padded, lengths


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's parameters (where its inputs must go)."""
    return next(model.parameters()).device
