"""Time series: univariate series (CSV, one number per line), UCR and UEA classification sets, windows.

* Airline passengers (Box & Jenkins 1976, series G): CSV with a header, ``"1949-01",112``.
* Mackey-Glass τ=17 (Mackey & Glass 1977, Science 197; the file of Lukoševičius' minimal ESN examples):
  one number per line.
* UCR archive (Dau et al. 2019, "The UCR Time Series Archive", arXiv:1810.07758): one series per line,
  the class label first, values separated by whitespace or commas.
* UEA archive (Bagnall et al. 2018, "The UEA multivariate time series classification archive",
  arXiv:1811.00075): Weka ARFF with one relational attribute; each ``@data`` row is a quoted string of
  C channel rows joined by a literal ``\\n``, then a comma and the class label.

Series come back as float64 NumPy arrays (the files' precision); classification sets as float32
(N, T, C), the layout of a batch-first recurrent layer.
"""
from __future__ import annotations

import csv
import re
from typing import Iterator

import numpy as np

from .errors import DataFormatError
from .text import PathType, iter_nonblank_lines

VALUE_SEPARATOR = re.compile(r"[,\s]+")


def parse_float(text: str, path: PathType, line_number: int, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataFormatError(path, line_number, f"{what} {text!r} is not a number") from None


def iter_content_lines(path: PathType) -> Iterator[tuple[int, str]]:
    """The numbered lines of ``path`` that are not blank, stripped."""
    return ((line_number, line.strip()) for line_number, line in iter_nonblank_lines(path))


def read_series_csv(path: PathType, column: int | str = -1) -> np.ndarray:
    """One column of a CSV file with a header row, as a float64 array (n,).

    Args:
        column: the column's index (negative counts from the end) or its header name.
    """
    rows = iter_content_lines(path)
    header_line = next(rows, None)
    if header_line is None:
        raise DataFormatError(path, 1, "empty file (a header row, then one row per time step expected)")
    header = next(csv.reader([header_line[1]]))
    if isinstance(column, str):
        if column not in header:
            raise ValueError(f"column {column!r} is not in the header of {str(path)!r}: {header}")
        column = header.index(column)
    if not -len(header) <= column < len(header):
        raise ValueError(f"column {column} is out of range for the {len(header)} columns of {str(path)!r}")
    values = []
    for line_number, line in rows:
        fields = next(csv.reader([line]))
        if len(fields) != len(header):
            raise DataFormatError(path, line_number, f"{len(fields)} fields ({len(header)} expected, "
                                                     f"as in the header {header})")
        values.append(parse_float(fields[column], path, line_number, f"value of column {header[column]!r}"))
    return np.asarray(values, dtype=np.float64)


def read_series_txt(path: PathType) -> np.ndarray:
    """A series written one number per line (blank lines skipped), as a float64 array (n,)."""
    return np.asarray([parse_float(line, path, line_number, "line")
                       for line_number, line in iter_content_lines(path)], dtype=np.float64)


def class_label(text: str) -> str:
    """A label as written, except that integral numbers lose their exponent: ``2.0000000e+00`` → ``"2"``."""
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def read_ucr(path: PathType) -> tuple[np.ndarray, list[str]]:
    """A UCR ``*_TRAIN.txt`` / ``*_TEST.txt`` file: X float32 (N, T, 1) and the N class labels.

    Every series must have the length of the first (DataFormatError naming the line otherwise).
    """
    series, labels, length = [], [], None
    for line_number, line in iter_content_lines(path):
        fields = VALUE_SEPARATOR.split(line)
        if length is None:
            length = len(fields) - 1
        if len(fields) - 1 != length or length < 1:
            raise DataFormatError(path, line_number, f"{len(fields) - 1} values after the label "
                                                     f"({max(length, 1)} expected, as in the first series)")
        labels.append(class_label(fields[0]))
        series.append([parse_float(value, path, line_number, "value") for value in fields[1:]])
    if not series:
        raise DataFormatError(path, None, "no series (one line per series, the label first, expected)")
    return np.asarray(series, dtype=np.float32)[:, :, None], labels       # (N, T, 1)


def unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def parse_arff_row(line: str, path: PathType, line_number: int) -> tuple[list[list[float]], str]:
    """One UEA ``@data`` row, ``'c1,c1,...\\nc2,c2,...',label`` → (C channel lists, label)."""
    body, comma, label = line.rpartition(",")
    body = body.strip()
    if not comma or len(body) < 2 or body[0] not in "'\"" or body[-1] != body[0]:
        raise DataFormatError(path, line_number, "not a relational row ('channel\\nchannel...',label "
                                                 "expected: a quoted string, a comma, the label)")
    channels = [[float("nan") if value.strip() == "?" else parse_float(value, path, line_number, "value")
                 for value in channel.split(",")]
                for channel in body[1:-1].split("\\n")]
    return channels, unquote(label)


def read_uea_arff(path: PathType) -> tuple[np.ndarray, list[str]]:
    """A UEA multivariate ``.arff`` file: X float32 (N, T, C) and the N class labels.

    Missing values (``?``) become NaN. Every series must have the first one's C channels of T steps;
    a label outside the classes the header declares raises DataFormatError.
    """
    series, labels, classes, shape, in_data = [], [], None, None, False
    for line_number, line in iter_content_lines(path):
        if line.startswith("%"):
            continue
        if not in_data:
            lower = line.lower()
            if lower.startswith("@attribute") and line.endswith("}"):
                classes = [unquote(c) for c in line[line.index("{") + 1:-1].split(",")]
            in_data = lower.startswith("@data")
            continue
        channels, label = parse_arff_row(line, path, line_number)
        found = (len(channels), len(channels[0]))
        shape = shape or found
        if found != shape or any(len(channel) != shape[1] for channel in channels):
            raise DataFormatError(path, line_number, f"channel lengths {[len(c) for c in channels]} "
                                                     f"({shape[0]} channels of {shape[1]} values expected, "
                                                     "as in the first series)")
        if classes is not None and label not in classes:
            raise DataFormatError(path, line_number, f"label {label!r} is not among the declared classes {classes}")
        series.append(channels)
        labels.append(label)
    if not series:
        raise DataFormatError(path, None, "no @data rows (an ARFF header, @data, then one row per series)")
    return np.asarray(series, dtype=np.float32).transpose(0, 2, 1).copy(), labels   # (N, C, T) -> (N, T, C)


def sliding_windows(series: np.ndarray, window: int, horizon: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Every window of ``window`` consecutive values and the ``horizon`` values that follow it.

    Args:
        series: 1-D array (n,).

    Returns:
        inputs (N, window, 1) and targets (N, horizon), N = n − window − horizon + 1, in the series'
        dtype: ``inputs[i, :, 0] = series[i : i + window]``, ``targets[i] = series[i + window : i +
        window + horizon]``.
    """
    series = np.asarray(series)
    if series.ndim != 1:
        raise ValueError(f"series must be 1-D (n,), got shape {series.shape}")
    for name, value in (("window", window), ("horizon", horizon)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    count = len(series) - window - horizon + 1
    if count < 1:
        raise ValueError(f"series of length {len(series)} is too short for window {window} + horizon "
                         f"{horizon}")
    spans = np.lib.stride_tricks.sliding_window_view(series, window + horizon)[:count]  # (N, window + horizon)
    return spans[:, :window, None].copy(), spans[:, window:].copy()               # (N, window, 1), (N, horizon)
