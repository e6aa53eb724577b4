"""The small interface through which a task plugs into the ``Trainer``.

The trainer knows no model and no data format. A task knows both: how a batch becomes a loss, and
how a model is scored on the dev batches. Any object with these members is a task (a
``typing.Protocol``, no base class to inherit):

* ``training_loss(model, batch) -> (loss, counts)``: ``loss`` a scalar tensor, the **mean** over the
  batch's ``counts[loss_unit]`` units (examples, tokens, ...); ``counts`` a dict of ints
  (``{"examples": 32, "tokens": 700}``) that the trainer turns into throughput (tokens/s) and, under
  several processes, into the weights that make the loss a mean over the global batch. Under
  several processes ``model`` is the model inside DistributedDataParallel: call it (rnnkit's models
  return ``(output, loss)`` when given their targets, ``model(..., targets=...)``) and take nothing
  else from it — no method, no attribute, no unwrapping — so that the call goes through the
  wrapper's forward and the gradients are synchronised; what the loss needs besides the batch
  (a padding id, a vocabulary) is the task's own state.
* ``evaluate(model, batches) -> {metric name: value}`` (``accuracy``, ``f1``, ``perplexity``, ...); the
  trainer calls it with the model itself (never wrapped), in ``eval()`` mode and without gradients.
* ``metric``: the name of the metric that selects the best checkpoint and stops early;
  ``higher_is_better``: its direction; ``loss_unit``: the key of ``counts`` the loss is a mean over.

``RegressionTask`` is the smallest example: batches ``(inputs, targets)``, mean squared error.
"""
from __future__ import annotations

from typing import Any, Iterable, Protocol, runtime_checkable

import torch
from torch import Tensor, nn


@runtime_checkable
class Task(Protocol):
    """What the trainer asks of a task (see the module's docstring)."""

    metric: str
    higher_is_better: bool
    loss_unit: str

    def training_loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, dict[str, int]]:
        ...

    def evaluate(self, model: nn.Module, batches: Iterable[Any]) -> dict[str, float]:
        ...


def check_task(task: Any) -> None:
    """Raise ``TypeError`` naming the first member ``task`` lacks."""
    for name in ("training_loss", "evaluate"):
        if not callable(getattr(task, name, None)):
            raise TypeError(f"task must have a method {name}(...) (see rnnkit.train.task), "
                            f"{type(task).__name__} has none")
    for name, kind in (("metric", str), ("higher_is_better", bool), ("loss_unit", str)):
        if not isinstance(getattr(task, name, None), kind):
            raise TypeError(f"task.{name} must be a {kind.__name__} (see rnnkit.train.task), "
                            f"got {getattr(task, name, None)!r} on {type(task).__name__}")


def is_better(task: Task, value: float, best: float | None) -> bool:
    """Whether ``value`` of ``task.metric`` improves on ``best`` (None: nothing yet)."""
    if best is None:
        return True
    return value > best if task.higher_is_better else value < best


class RegressionTask:
    r"""Mean squared error of ``model(inputs)`` against ``targets``; batches are ``(inputs, targets)``.

    .. math:: \mathrm{MSE} = \frac{1}{N} \sum_{n=1}^{N} \lVert \hat y_n - y_n \rVert^2 / K

    with N examples (the first dimension of ``targets``, (N, K)) and K outputs each. The dev metric
    ``mse`` is the mean over every dev example (not a mean of batch means), lower is better.
    Fits the adding problem (``rnnkit.tasks.adding``) and forecasting.
    """

    metric = "mse"
    higher_is_better = False
    loss_unit = "examples"

    def training_loss(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, int]]:
        inputs, targets = _unpack(batch)
        predictions = model(inputs)                                      # (N, K)
        _check_same_shape(predictions, targets)
        return torch.nn.functional.mse_loss(predictions, targets), {"examples": targets.shape[0]}

    def evaluate(self, model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]) -> dict[str, float]:
        squared_error, count = 0.0, 0
        for batch in batches:
            inputs, targets = _unpack(batch)
            predictions = model(inputs)                                  # (N, K)
            _check_same_shape(predictions, targets)
            N = targets.shape[0]
            squared_error += float(((predictions - targets) ** 2).reshape(N, -1).mean(1).sum())
            count += N
        if count == 0:
            raise ValueError("RegressionTask.evaluate got no batches to score")
        return {"mse": squared_error / count}


def _unpack(batch) -> tuple[Tensor, Tensor]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise TypeError(f"a RegressionTask batch must be a pair (inputs, targets), got {type(batch).__name__}"
                        + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""))
    return batch[0], batch[1]


def _check_same_shape(predictions: Tensor, targets: Tensor) -> None:
    if predictions.shape != targets.shape:
        raise ValueError(f"the model's predictions must have the targets' shape {tuple(targets.shape)}, "
                         f"got {tuple(predictions.shape)}")
