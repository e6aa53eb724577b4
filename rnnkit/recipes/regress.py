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

Where the normalisation is kept: ``build_model``, ``batches``, ``task`` and ``predict`` receive the
vocabularies, not the data options, so window, horizon, μ and σ travel as the ``"series"`` entry of
the vocabularies (``SeriesSettings``: ``key=value`` symbols, exact through JSON).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from ..data.batching import bucket_batches
from ..data.errors import DataFormatError
from ..data.timeseries import read_series_csv, read_series_txt, sliding_windows
from ..data.vocab import Vocabulary
from ..models.regressor import SequenceRegressor
from ..train.task import RegressionTask
from .base import cell_options, register
from .classify import model_device, numbered_chunks, pad_series, parse_values

FORMATS = ("auto", "csv", "txt")


class Window(NamedTuple):
    """One example: ``window`` values and the ``horizon`` values that follow, in the file's units."""
    history: np.ndarray    # (W,) float64
    future: np.ndarray     # (K,) float64


class ForecastBatch(NamedTuple):
    inputs: Tensor         # (B, W, 1) normalised history
    targets: Tensor        # (B, K) normalised future


@dataclass(frozen=True)
class SeriesSettings:
    """What reading, the model and the metrics need to know of the training series."""

    window: int
    horizon: int
    mean: float
    std: float

    def to_vocabulary(self) -> Vocabulary:
        """``window=20``, ``horizon=1``, ``mean=…``, ``std=…`` as symbols (floats by ``repr``: exact)."""
        return Vocabulary([f"{key}={value!r}" for key, value in dataclasses.asdict(self).items()], unknown=None)

    @classmethod
    def from_vocabularies(cls, vocabularies: dict[str, Vocabulary]) -> "SeriesSettings":
        if "series" not in vocabularies:
            raise ValueError("the regress recipe needs the 'series' entry of its vocabularies "
                             "(window, horizon, mean, std); was the model trained by the regress recipe?")
        values = dict(symbol.partition("=")[::2] for symbol in vocabularies["series"].symbols)
        try:
            return cls(int(values["window"]), int(values["horizon"]), float(values["mean"]), float(values["std"]))
        except (KeyError, ValueError) as error:
            raise ValueError(f"the 'series' vocabulary {vocabularies['series'].symbols} must hold window=, "
                             f"horizon=, mean= and std= ({error})") from None

    def normalise(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std


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

    def build_vocabularies(self, records: list[Window], data_options: dict[str, Any]) -> dict[str, Vocabulary]:
        """The ``"series"`` settings: window, horizon, and μ, σ of the training series."""
        series = np.concatenate([[r.history[0] for r in records], records[-1].history[1:], records[-1].future])
        mean = float(series.mean()) if data_options["mean"] is None else float(data_options["mean"])
        std = float(series.std()) if data_options["std"] is None else float(data_options["std"])
        if not std > 0:
            raise ValueError(f"the standard deviation used to normalise must be positive, got {std} "
                             "(a constant training series, or the data option std)")
        return {"series": SeriesSettings(data_options["window"], data_options["horizon"], mean, std).to_vocabulary()}

    def build_model(self, model_options: dict[str, Any], vocabularies: dict[str, Vocabulary]) -> SequenceRegressor:
        settings = SeriesSettings.from_vocabularies(vocabularies)
        return SequenceRegressor(1, settings.horizon, hidden_size=model_options["hidden"],
                                 num_layers=model_options["layers"], bidirectional=model_options["bidirectional"],
                                 dropout=model_options["dropout"], **cell_options(model_options))

    def batches(self, records: list[Window], vocabularies: dict[str, Vocabulary], batch_size: int, *,
                shuffle: bool, seed: int) -> list[ForecastBatch]:
        settings = SeriesSettings.from_vocabularies(vocabularies)
        histories = np.stack([r.history for r in records])                     # (N, W)
        futures = np.stack([r.future for r in records])                        # (N, K)
        if futures.shape[1] != settings.horizon:
            raise ValueError(f"these windows have a horizon of {futures.shape[1]} values, the model forecasts "
                             f"{settings.horizon}")
        inputs = torch.from_numpy(settings.normalise(histories)).float().unsqueeze(2)   # (N, W, 1)
        targets = torch.from_numpy(settings.normalise(futures)).float()                  # (N, K)
        # windows have one length: bucketing only shuffles and cuts
        order = bucket_batches([len(r.history) for r in records], batch_size, shuffle=shuffle, seed=seed)
        return [ForecastBatch(inputs[indices], targets[indices]) for indices in order]

    def task(self, vocabularies: dict[str, Vocabulary], model_options: dict[str, Any]) -> "ForecastTask":
        return ForecastTask(SeriesSettings.from_vocabularies(vocabularies).std)

    def predict(self, model: nn.Module, vocabularies: dict[str, Vocabulary], model_options: dict[str, Any],
                lines: Iterable[str]) -> Iterator[str]:
        """The forecast after each line of values; a line without values, or with a word, raises
        DataFormatError naming it (``<input>:N``)."""
        settings = SeriesSettings.from_vocabularies(vocabularies)
        device = model_device(model)
        for chunk in numbered_chunks(lines):
            histories = [settings.normalise(parse_values(line, n)[-settings.window:]) for n, line in chunk]
            inputs, lengths = pad_series(histories)                                         # (B, T, 1), (B,)
            forecasts = model(inputs.to(device), lengths.to(device)) * settings.std + settings.mean   # (B, K)
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
        self.normalised = RegressionTask()

    def training_loss(self, model: nn.Module, batch: ForecastBatch) -> tuple[Tensor, dict[str, int]]:
        return self.normalised.training_loss(model, batch)

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
