r"""Recipe ``regress``: forecast the next values of a time series from a window of its past.

The model is ``rnnkit.models.regressor.SequenceRegressor`` (many-to-one): it reads ``window``
normalised values and predicts the ``horizon`` values that follow (Gers, Eck & Schmidhuber,
"Applying LSTM to Time Series Predictable through Time-Window Approaches", ICANN 2001):

.. math::
    z_t = (x_t - \mu) / \sigma, \qquad
    (\hat z_{n+1}, \dots, \hat z_{n+K}) = \mathrm{model}(z_{n-W+1}, \dots, z_n), \qquad
    \hat x = \mu + \sigma \hat z

with W = ``window``, K = ``horizon``, and μ, σ the mean and standard deviation of the training file
(or the data options ``mean`` / ``std`` when given). Training minimises the mean squared error in
normalised units.

Data options: ``format`` ``csv`` (a header row, then the column ``column``: an index, -1 the last,
or a header name) | ``txt`` (one value per line) | ``auto`` (default: ``.csv`` / ``.csv.gz`` names
are CSV); ``window`` (20), ``horizon`` (1), ``mean``, ``std`` (None: the training file's).
Every window of the file is one example (``rnnkit.data.timeseries.sliding_windows``).

Evaluation, in the series' own units: ``mse``, ``rmse`` (the model), ``last_value_mse``,
``last_value_rmse`` (the baseline that repeats the window's last value over the horizon), and
``loss``, the normalised mean squared error that training minimises. The dev metric is ``mse``.
Prediction: one line of values (the recent history, separated by commas or spaces; the last
``window`` of them are read, fewer are read as they are) → the ``horizon`` forecast values,
separated by spaces.

The normalisation is kept with the data options: ``prepare`` completes ``mean`` and ``std`` with
the training series' (when not given), so that evaluation and prediction normalise as training did.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from ..data.batching import bucket_batches
from ..data.errors import DataFormatError
from ..data.timeseries import read_series_csv, read_series_txt, sliding_windows
from ..models.regressor import SequenceRegressor
from .base import RecipeState, encoder_config, register
from .common import model_device, numbered_chunks, pad_series, parse_values

FORMATS = ("auto", "csv", "txt")


class Window(NamedTuple):
    """One example: ``window`` values and the ``horizon`` values that follow, in the file's units."""
    history: np.ndarray    # (W,) float64
    future: np.ndarray     # (K,) float64


class ForecastBatch(NamedTuple):
    inputs: Tensor         # (B, W, 1) normalised history
    targets: Tensor        # (B, K) normalised future


def normalised(values: np.ndarray, data_options: dict[str, Any]) -> np.ndarray:
    """(x − μ) / σ with μ, σ the data options ``mean`` and ``std`` (completed by ``prepare``)."""
    return (values - data_options["mean"]) / data_options["std"]


class RegressRecipe:
    """Time-series forecasting (see the module's docstring for formats, options and outputs)."""

    name = "regress"
    summary = "time series -> its next values: forecasting from a window (csv column or one value per line)"
    model_defaults: dict[str, Any] = {"bidirectional": False}      # the common default is True
    data_defaults: dict[str, Any] = {"format": "auto", "column": -1, "window": 20, "horizon": 1,
                                     "mean": None, "std": None}

    def read(self, path: str, data_options: dict[str, Any]) -> list[Window]:
        """Every window of the series in ``path`` with the values that follow it."""
        series = read_series(path, data_options["format"], data_options["column"])
        window, horizon = data_options["window"], data_options["horizon"]
        if len(series) < window + horizon:
            raise DataFormatError(path, None, f"{len(series)} values, too few for one window of {window} "
                                              f"and a horizon of {horizon} (data options window, horizon)")
        histories, futures = sliding_windows(series, window, horizon)            # (N, W, 1), (N, K)
        return [Window(history[:, 0], future) for history, future in zip(histories, futures)]

    def prepare(self, records: list[Window], model_options: dict[str, Any],
                data_options: dict[str, Any]) -> RecipeState:
        """No vocabulary; the data options completed with ``mean`` and ``std``, μ and σ of the
        training series (those given are kept)."""
        series = np.concatenate([[r.history[0] for r in records], records[-1].history[1:], records[-1].future])
        mean = float(series.mean()) if data_options["mean"] is None else float(data_options["mean"])
        std = float(series.std()) if data_options["std"] is None else float(data_options["std"])
        if not std > 0:
            raise ValueError(f"the standard deviation used to normalise must be positive, got {std} "
                             "(a constant training series, or the data option std)")
        return RecipeState(self.name, model_options, {**data_options, "mean": mean, "std": std})

    def build_model(self, state: RecipeState) -> SequenceRegressor:
        model_options = state.model_options
        return SequenceRegressor(1, state.data_options["horizon"], encoder=encoder_config(model_options),
                                 dropout=model_options["dropout"])

    def batches(self, records: list[Window], state: RecipeState, batch_size: int, *,
                shuffle: bool, seed: int) -> list[ForecastBatch]:
        """Batches of normalised windows and the normalised values that follow them."""
        options = state.data_options
        histories = np.stack([r.history for r in records])                     # (N, W)
        futures = np.stack([r.future for r in records])                        # (N, K)
        if futures.shape[1] != options["horizon"]:
            raise ValueError(f"these windows have a horizon of {futures.shape[1]} values, the model forecasts "
                             f"{options['horizon']}")
        inputs = torch.from_numpy(normalised(histories, options)).float().unsqueeze(2)   # (N, W, 1)
        targets = torch.from_numpy(normalised(futures, options)).float()                  # (N, K)
        # windows have one length: bucketing only shuffles and cuts
        order = bucket_batches([len(r.history) for r in records], batch_size, shuffle=shuffle, seed=seed)
        return [ForecastBatch(inputs[indices], targets[indices]) for indices in order]

    def task(self, state: RecipeState) -> "ForecastTask":
        return ForecastTask(state.data_options["std"])

    def predict(self, model: nn.Module, state: RecipeState, lines: Iterable[str]) -> Iterator[str]:
        """The forecast after each line of values; a line without values, or with a word, raises
        DataFormatError naming it (``<input>:N``)."""
        options = state.data_options
        device = model_device(model)
        for chunk in numbered_chunks(lines):
            histories = [normalised(parse_values(line, n)[-options["window"]:], options) for n, line in chunk]
            inputs, lengths = pad_series(histories)                                         # (B, T, 1), (B,)
            forecasts = model(inputs.to(device), lengths.to(device)) * options["std"] + options["mean"]  # (B, K)
            for forecast in forecasts.tolist():
                yield " ".join(f"{value:.6g}" for value in forecast)


class ForecastTask:
    """Mean squared error in normalised units to train; the metrics in the series' units.

    With σ the training series' standard deviation, an error of e normalised units is σ·e in the
    series' units, so ``mse`` = σ² · (normalised MSE)."""

    metric = "mse"
    higher_is_better = False
    loss_unit = "examples"

    def __init__(self, std: float) -> None:
        self.std = std

    def training_loss(self, model: nn.Module, batch: ForecastBatch) -> tuple[Tensor, dict[str, int]]:
        _, loss = model(batch.inputs, targets=batch.targets)                           # mean over B·K
        return loss, {"examples": len(batch.targets)}

    def evaluate(self, model: nn.Module, batches: Iterable[ForecastBatch]) -> dict[str, float]:
        model_error = last_value_error = 0.0
        count = 0
        for inputs, targets in batches:
            predictions = model(inputs)                                                    # (B, K)
            last_value = inputs[:, -1, :]                                                  # (B, 1), repeated over K
            model_error += float(((predictions - targets) ** 2).mean(dim=1).sum())
            last_value_error += float(((last_value - targets) ** 2).mean(dim=1).sum())
            count += len(targets)
        if count == 0:
            raise ValueError("ForecastTask.evaluate got no batches to score")
        scale = self.std ** 2
        mse, last_value_mse = scale * model_error / count, scale * last_value_error / count
        return {"mse": mse, "rmse": math.sqrt(mse), "last_value_mse": last_value_mse,
                "last_value_rmse": math.sqrt(last_value_mse), "loss": model_error / count}


def read_series(path: str, data_format: str, column: int | str) -> np.ndarray:
    """The series of ``path``: a CSV column, or one value per line (``auto``: by the file's name)."""
    if data_format not in FORMATS:
        raise ValueError(f"regress data option format must be one of {', '.join(FORMATS)}, got {data_format!r}")
    if data_format == "auto":
        suffixes = Path(path).suffixes
        data_format = "csv" if suffixes[-1:] == [".csv"] or suffixes[-2:] == [".csv", ".gz"] else "txt"
    return read_series_csv(path, column) if data_format == "csv" else read_series_txt(path)


register(RegressRecipe())
