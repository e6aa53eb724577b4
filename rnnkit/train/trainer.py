"""``Trainer``: the loop that fits any model for any task, with checkpoints that a killed run resumes from.

The trainer knows no model and no data format: a task (``rnnkit.train.task``) turns a batch into a
loss and scores the model on the dev batches. One step is::

    with precision.autocast():                          # bf16-mixed, 16-mixed (rnnkit.train.precision)
        loss, counts = task.training_loss(model, batch) # mean over counts[task.loss_unit]
    loss.backward()                                     # (scaled to the global mean under DDP; by the
                                                        # gradient scaler under 16-mixed, unscaled after)
    norm = clipper(parameters)                          # ‖g‖ before clipping, logged every step
    optimizer.step(); schedule.step()

and around it: evaluation every ``eval_every`` steps (or each epoch), the best checkpoint, early
stopping, limits on epochs, steps and minutes, logs, a progress bar. ``resume=True`` continues the
last complete checkpoint in ``out_dir``: weights, optimiser, schedule, every RNG, the epoch and the
position in it. With ``deterministic=True`` on the CPU the resumed run ends with exactly the weights
of a run that was never interrupted. Exact resumption needs a batch order the trainer can recreate:
a sequence of batches (shuffled each epoch from ``seed`` and the epoch) or a callable
``epoch -> batches`` that returns the same batches for the same epoch. The model and every batch go
to ``device`` (``rnnkit.train.device``, one place: ``_on_device``); checkpoints hold CPU tensors, so
a run resumes, evaluates and predicts on another device.
"""
from __future__ import annotations

import itertools
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn

from ..learning.clipping import GradientClipper, weight_decay_groups
from .checkpoint import (checkpoint_path, latest_checkpoint, list_checkpoints, load_checkpoint, mark_best,
                         prune_checkpoints, save_checkpoint)
from .config import TrainConfig, check_keys
from .device import resolve_device
from .distributed import DistributedContext, unwrap
from .logging import RunLog, plot_curves
from .precision import Precision
from .rng import capture_rng_state, restore_rng_state, seed_everything
from .schedule import LearningRateSchedule
from .subnormals import subnormals_flushed
from .task import Task, check_task, is_better

CHECKPOINTS_DIR = "checkpoints"
Batches = Iterable[Any] | Callable[[int], Iterable[Any]]


@dataclass
class History:
    """What ``fit`` did.

    steps: optimiser steps taken in all (including those before a resume); epochs: epochs completed;
    stop_reason: ``"epochs"``, ``"max_steps"``, ``"max_minutes"`` or ``"early_stopping"``;
    losses, grad_norms: each step's mean loss and gradient norm before clipping, for the steps this
    call ran; evaluations: ``{"step", "epoch", metric: value, ...}`` for every evaluation of the run;
    best: the best evaluation; best_checkpoint: its directory (when ``out_dir`` is set).
    """

    steps: int = 0
    epochs: int = 0
    stop_reason: str = ""
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)
    best: dict | None = None
    best_checkpoint: str | None = None


class Trainer:
    """Fit ``model`` for ``task``.

    Args:
        model: any ``torch.nn.Module`` the task knows how to call.
        task: an object with ``training_loss``, ``evaluate``, ``metric``, ``higher_is_better`` and
            ``loss_unit`` (``rnnkit.train.task.Task``).
        config: a ``TrainConfig``; None for the defaults.
        extra: JSON saved with every checkpoint (``extra.json``): vocabularies, label lists, the model's
            own configuration — whatever is needed to rebuild the model.
        **options: ``TrainConfig`` fields that override ``config`` (``lr=3e-3, epochs=5``); unknown
            names raise ``ValueError``.

    ``fit(train_batches, dev_batches=None) -> History``. ``train_batches``: a sequence of batches
    (shuffled each epoch when ``shuffle``), another re-iterable, or a callable ``epoch -> batches``.
    ``dev_batches``: a re-iterable of batches; without it there is no evaluation, best checkpoint or
    early stopping. Under ``torchrun`` the model is wrapped in DistributedDataParallel and each
    process takes every N-th batch (``rnnkit.train.distributed``); the trainer alone wraps and
    unwraps: ``task.training_loss`` gets the wrapper (to call), ``task.evaluate`` and checkpoints the
    model itself.
    """

    def __init__(self, model: nn.Module, task: Task, config: TrainConfig | None = None, *,
                 extra: dict | None = None, **options) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        check_task(task)
        if config is not None and not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig or None, got {type(config).__name__}")
        check_keys(options)
        self.config = (config or TrainConfig()).replace(**options)
        self.task, self.extra = task, extra or {}
        self.context = DistributedContext.from_environment()
        local_rank = self.context.local_rank if self.context.is_distributed else None
        device = resolve_device(self.config.device, local_rank) or self.context.default_device()
        self.model = model.to(device) if device is not None else model
        self.device = next(self.model.parameters(), torch.empty(0)).device
        self.precision = Precision(self.config.precision, self.device)
        if self.precision.dtype is not None:
            self.model = self.model.to(self.precision.dtype)
        self.optimizer = _make_optimizer(self.model, self.config)
        self.clipper = GradientClipper(max_norm=self.config.clip_norm)
        self.out_dir = Path(self.config.out_dir) if self.config.out_dir is not None else None
        self.writes = self.out_dir is not None and self.context.is_main
        self.history = History()
        self.schedule: LearningRateSchedule | None = None
        self._epoch = 0                 # the epoch in progress
        self._batches_done = 0          # global batches of that epoch already trained on
        self._bad_evaluations = 0
        self._last_saved_step: int | None = None
        self.wrapped: nn.Module = self.model           # in DistributedDataParallel during fit, when distributed
        self.log: RunLog | None = None
        self.bar = None                 # the progress bar during fit
        self.started = time.monotonic()

    # ---- the loop ----------------------------------------------------------------------------

    def fit(self, train_batches: Batches, dev_batches: Iterable[Any] | None = None) -> History:
        """Train until a limit or early stopping; return the ``History``."""
        _check_reiterable("train_batches", train_batches, allow_callable=True)
        if dev_batches is not None:
            _check_reiterable("dev_batches", dev_batches, allow_callable=False)
        config = self.config
        if self.writes and not config.resume and list_checkpoints(self.out_dir / CHECKPOINTS_DIR):
            raise FileExistsError(f"{self.out_dir}: out_dir already holds the checkpoints of a run; pass "
                                  "resume=True to continue it, or choose another out_dir")
        previous_determinism = torch.are_deterministic_algorithms_enabled()
        seed_everything(config.seed)
        if config.deterministic:
            if torch.cuda.is_available():      # cuBLAS is deterministic only with a fixed workspace
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        self.schedule = LearningRateSchedule(
            self.optimizer, config.schedule, warmup_steps=config.warmup_steps,
            total_steps=self._total_steps(train_batches), step_size=config.lr_step_size, gamma=config.lr_gamma,
            plateau_patience=config.plateau_patience, min_lr=config.min_lr,
            higher_is_better=self.task.higher_is_better)
        resumed_step = self._resume() if config.resume else None
        self.wrapped = self.context.wrap(self.model)
        self.log = RunLog(self.out_dir, self.task.loss_unit, tensorboard=config.tensorboard,
                          resume_step=resumed_step) if self.writes else None
        self.bar = _progress_bar(config.progress and self.context.is_main, self._total_steps(train_batches),
                                 self.history.steps)
        self.started = time.monotonic()
        try:
            with subnormals_flushed(config.flush_subnormals):
                self._run(train_batches, dev_batches)
                if self.writes and self._last_saved_step != self.history.steps:
                    self._save()
        finally:
            self.bar.close()
            if self.log is not None:
                self.log.close()
            torch.use_deterministic_algorithms(previous_determinism)
        if self.writes:
            plot_curves(self.out_dir)
        return self.history

    def _run(self, train_batches: Batches, dev_batches: Iterable[Any] | None) -> None:
        config, window = self.config, _Window()
        if self._stop_reason():           # a resumed run that had already reached its limit
            return
        while self._epoch < config.epochs:
            for batch in self.context.shard(self._epoch_batches(train_batches)):
                loss, units, norm = self._train_step(batch)
                self.history.steps += 1
                self._batches_done += self.context.world_size
                window.add(loss, units, norm)
                self._after_step(window, loss, norm)
                evaluated = bool(config.eval_every) and self.history.steps % config.eval_every == 0
                if evaluated and dev_batches is not None:
                    self._evaluate(dev_batches)
                if self._checkpoint_due(evaluated):
                    self._save()
                if self._stop_reason():
                    return
            self._epoch, self._batches_done = self._epoch + 1, 0
            self.history.epochs = self._epoch
            if config.eval_every is None and dev_batches is not None:
                self._evaluate(dev_batches)
            if self._checkpoint_due(config.eval_every is None and dev_batches is not None):
                self._save()
            if self._stop_reason():
                return
        self.history.stop_reason = "epochs"

    def _train_step(self, batch: Any) -> tuple[float, float, float]:
        """One optimiser step; returns the mean loss and the units over all processes, and ‖g‖."""
        self.wrapped.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self.precision.autocast():
            loss, counts = self.task.training_loss(self.wrapped, self._on_device(batch))
        units = _units(counts, self.task.loss_unit)
        loss_sum, global_units = self.context.sum([float(loss.detach()) * units, units])
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"the training loss is {loss_sum / global_units} at step "
                                     f"{self.history.steps + 1}; lower lr or set clip_norm")
        if self.context.is_distributed:
            loss = loss * self.context.global_mean_weight(units, global_units)
        self.precision.backward(loss)
        self.precision.unscale(self.optimizer)
        norm = self.clipper(self.model.parameters())
        self.precision.step(self.optimizer)
        self.schedule.step()
        return loss_sum / global_units, global_units, norm

    def _after_step(self, window: "_Window", loss: float, norm: float) -> None:
        step, lr = self.history.steps, self.optimizer.param_groups[0]["lr"]
        self.history.losses.append(loss)
        self.history.grad_norms.append(norm)
        if self.log is not None:
            self.log.step(step, {"loss": loss, "lr": lr, "grad_norm": norm})
        if step % self.config.log_every == 0:
            seconds = time.monotonic() - self.started
            row = {"step": step, "epoch": self._epoch, "loss": window.mean_loss(), "lr": lr,
                   "grad_norm": window.max_norm, f"{self.task.loss_unit}_per_s": window.throughput(),
                   "seconds": seconds}
            if self.log is not None:
                self.log.train_row(row)
            self.bar.set_postfix(self._postfix(row), refresh=False)
            window.reset()
        self.bar.update(1)

    def _postfix(self, row: dict) -> dict:
        unit = self.task.loss_unit
        postfix = {"loss": f"{row['loss']:.4g}", f"{unit}/s": f"{row[f'{unit}_per_s']:.0f}"}
        if self.history.evaluations:
            postfix[self.task.metric] = f"{self.history.evaluations[-1][self.task.metric]:.4g}"
        return postfix

    # ---- evaluation, stopping, checkpoints ------------------------------------------------------

    def evaluate(self, batches: Iterable[Any]) -> dict[str, float]:
        """The task's metrics on ``batches``, with the model in eval mode and without gradients."""
        model = unwrap(self.model)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), self.precision.autocast():
                metrics = self.task.evaluate(model, (self._on_device(batch) for batch in batches))
        finally:
            model.train(was_training)
        if not isinstance(metrics, dict) or self.task.metric not in metrics:
            raise ValueError(f"task.evaluate must return a dict holding the task's metric {self.task.metric!r}, "
                             f"got {metrics!r}")
        return {name: float(value) for name, value in metrics.items()}

    def _evaluate(self, dev_batches: Iterable[Any]) -> None:
        # every process evaluates the same weights on the same batches, so all take the same decisions
        metrics = self.evaluate(dev_batches)
        record = {"step": self.history.steps, "epoch": self._epoch, **metrics}
        self.history.evaluations.append(record)
        value = metrics[self.task.metric]
        self.schedule.observe(value)
        best = self.history.best
        if is_better(self.task, value, None if best is None else best[self.task.metric]):
            self.history.best, self._bad_evaluations = record, 0
        else:
            self._bad_evaluations += 1
        if self.log is not None:
            self.log.evaluation(self.history.steps, self._epoch, metrics)

    def _checkpoint_due(self, evaluated: bool) -> bool:
        if not self.writes or self._last_saved_step == self.history.steps:
            return False
        step, every = self.history.steps, self.config.checkpoint_every
        improved = evaluated and self.history.best is not None and self.history.best["step"] == step
        return improved or (step % every == 0 if every else evaluated)

    def _stop_reason(self) -> str:
        config, history = self.config, self.history
        if config.patience is not None and self._bad_evaluations >= config.patience:
            history.stop_reason = "early_stopping"
        elif config.max_steps is not None and history.steps >= config.max_steps:
            history.stop_reason = "max_steps"
        elif config.max_minutes is not None and self._out_of_time():
            history.stop_reason = "max_minutes"
        return history.stop_reason

    def _out_of_time(self) -> bool:
        out = time.monotonic() - self.started >= 60 * self.config.max_minutes
        # the processes' clocks differ: all stop when one is out of time, or the others would wait forever
        return self.context.sum([float(out)])[0] > 0

    def _save(self) -> None:
        root = self.out_dir / CHECKPOINTS_DIR
        step = self.history.steps
        state = {"step": step, "epoch": self._epoch, "batches_done": self._batches_done,
                 "bad_evaluations": self._bad_evaluations, "evaluations": self.history.evaluations,
                 "best": self.history.best, "rng": capture_rng_state(),
                 "grad_scaler": self.precision.state_dict()}
        path = save_checkpoint(checkpoint_path(root, step), unwrap(self.model), self.optimizer, self.schedule,
                               trainer_state=state, config=self.config.to_dict(), extra=self.extra)
        self._last_saved_step = step
        best = self.history.best
        if best is not None and best["step"] == step:
            mark_best(root, path, self.task.metric, best[self.task.metric])
            self.history.best_checkpoint = str(path)
        prune_checkpoints(root, self.config.keep_last)

    def _resume(self) -> int | None:
        """Load the last complete checkpoint in out_dir, if any; return its step."""
        path = latest_checkpoint(self.out_dir / CHECKPOINTS_DIR)
        if path is None:
            return None
        checkpoint = load_checkpoint(path)
        checkpoint.restore(self.model, self.optimizer, self.schedule)
        state = checkpoint.trainer_state
        self.history.steps, self._epoch, self._batches_done = state["step"], state["epoch"], state["batches_done"]
        self.history.epochs = self._epoch
        self._bad_evaluations = state["bad_evaluations"]
        self.history.evaluations, self.history.best = list(state["evaluations"]), state["best"]
        restore_rng_state(state["rng"])
        self.precision.load_state_dict(state.get("grad_scaler", {}))
        self._last_saved_step = self.history.steps
        return self.history.steps

    # ---- data order ----------------------------------------------------------------------------

    def _on_device(self, batch: Any) -> Any:
        """The batch where the model is, its floats in the precision's dtype (float64 for ``"64"``)."""
        return to_device(batch, self.device, self.precision.dtype)

    def _epoch_batches(self, train_batches: Batches) -> Iterable[Any]:
        """This epoch's global batches, from the position a resumed run stopped at."""
        start = self._batches_done
        if callable(train_batches):
            return itertools.islice(train_batches(self._epoch), start, None)
        if isinstance(train_batches, Sequence) and self.config.shuffle:
            # a generator of its own, seeded by (seed, epoch): the order never depends on how many
            # random numbers the model drew, so a resumed run recreates it
            generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self._epoch)
            order = torch.randperm(len(train_batches), generator=generator)[start:].tolist()
            return (train_batches[i] for i in order)
        return itertools.islice(train_batches, start, None)

    def _total_steps(self, train_batches: Batches) -> int | None:
        per_epoch = len(train_batches) // self.context.world_size if hasattr(train_batches, "__len__") else None
        by_epochs = None if per_epoch is None else per_epoch * self.config.epochs
        limits = [n for n in (by_epochs, self.config.max_steps) if n is not None]
        return min(limits) if limits else None


class _Window:
    """Sums over the steps since the last log row."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss, self.steps, self.units, self.max_norm = 0.0, 0, 0.0, 0.0
        self.started = time.monotonic()

    def add(self, loss: float, units: float, norm: float) -> None:
        self.loss, self.steps, self.units = self.loss + loss, self.steps + 1, self.units + units
        self.max_norm = max(self.max_norm, norm)

    def mean_loss(self) -> float:
        return self.loss / max(1, self.steps)

    def throughput(self) -> float:
        return self.units / max(1e-9, time.monotonic() - self.started)


def to_device(batch: Any, device: torch.device, dtype: torch.dtype | None = None) -> Any:
    """Move the tensors in a batch (nested tuples, lists and dicts) to ``device``, and its floating-point
    tensors to ``dtype`` when given (integer tensors, token ids and lengths, keep theirs); other values
    stay."""
    if isinstance(batch, Tensor):
        return batch.to(device, dtype) if dtype is not None and batch.is_floating_point() else batch.to(device)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):        # a namedtuple
        return type(batch)(*(to_device(item, device, dtype) for item in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(item, device, dtype) for item in batch)
    if isinstance(batch, dict):
        return {key: to_device(item, device, dtype) for key, item in batch.items()}
    return batch


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = weight_decay_groups(model, config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)       # each group carries its own weight_decay
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)


def _units(counts: Any, unit: str) -> float:
    if not isinstance(counts, dict) or unit not in counts:
        raise ValueError(f"task.training_loss must return (loss, counts) with counts[{unit!r}] "
                         f"(the task's loss_unit); got counts {counts!r}")
    return float(counts[unit])


def _check_reiterable(name: str, batches: Any, *, allow_callable: bool) -> None:
    if allow_callable and callable(batches):
        return
    if not hasattr(batches, "__iter__"):
        raise TypeError(f"{name} must be a re-iterable of batches (a list, a DataLoader)"
                        + (" or a callable epoch -> batches" if allow_callable else "")
                        + f", got {type(batches).__name__}")
    if iter(batches) is batches:
        raise TypeError(f"{name} is a one-shot iterator ({type(batches).__name__}), which the trainer cannot "
                        "read again each epoch; pass a list"
                        + (" or a callable epoch -> batches" if allow_callable else ""))


def _progress_bar(enabled: bool, total: int | None, initial: int):
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                disable=not (enabled and sys.stderr.isatty()))
