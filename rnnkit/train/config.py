"""``TrainConfig``: every setting of a training run, typed, with defaults, saved with each checkpoint.

A run prints and saves its configuration beside the weights (as nanoGPT's ``GPTConfig``), so that a
checkpoint says how it was made. ``from_dict`` refuses keys it does not know, naming them and the
nearest known key, so that a misspelled option fails instead of silently taking its default.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, fields
from typing import Any

from .device import check_device_name
from .precision import PRECISIONS
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step", "plateau")


@dataclass
class TrainConfig:
    """The settings of ``Trainer``.

    Optimisation:
        optimizer: ``"adam"``, ``"adamw"`` (decoupled weight decay) or ``"sgd"`` (with ``momentum``).
        lr: the peak learning rate η.
        weight_decay: λ; not applied to biases and normalisation gains
            (``rnnkit.learning.weight_decay_groups``).
        momentum: SGD's momentum (ignored by Adam/AdamW).
        clip_norm: clip the total gradient norm to this value; None: measure the norm, don't clip.
    Learning-rate schedule (``rnnkit.train.schedule``):
        schedule: ``"constant"``, ``"cosine"`` (to ``min_lr`` at the last step), ``"step"`` (× ``lr_gamma``
            every ``lr_step_size`` steps) or ``"plateau"`` (× ``lr_gamma`` after ``plateau_patience``
            evaluations without a better dev metric).
        warmup_steps: linear warm-up from η/warmup_steps to η over the first steps.
        min_lr: the floor of the cosine and plateau schedules.
    Length of the run (whichever limit comes first):
        epochs, max_steps (optimiser steps), max_minutes (wall-clock minutes of this process).
    Evaluation and stopping:
        eval_every: evaluate on the dev batches every this many steps; None: at the end of each epoch.
        patience: stop after this many evaluations without a better dev metric; None: never stop early.
    Reproducibility:
        seed: seeds torch, ``random`` and numpy at the start of ``fit``, and the batch order.
        deterministic: ``torch.use_deterministic_algorithms(True)`` during ``fit``.
        shuffle: reorder a sequence of batches each epoch (seeded by ``seed`` and the epoch).
    Speed:
        flush_subnormals: flush subnormal floats to zero on the training thread during ``fit``
            (``rnnkit.train.subnormals``): a vanishing gradient passes through them, and the CPU
            computes them many times slower.
    Output (all but ``progress`` need ``out_dir``):
        out_dir: the run's directory: ``checkpoints/``, ``train.csv``, ``eval.csv``, ``tensorboard/``,
            ``curves.png``. None: nothing is written.
        checkpoint_every: save every this many steps; None: after each evaluation. A checkpoint is
            also saved when the run ends.
        keep_last: checkpoints kept besides the best one.
        resume: continue from the last complete checkpoint in ``out_dir`` (if there is one).
        progress: a tqdm bar (only on a terminal, only on rank 0).
        log_every: one row of ``train.csv`` (the window's mean loss, largest gradient norm) every this
            many steps; TensorBoard gets every step.
        tensorboard: write TensorBoard event files.
    Hardware (``rnnkit.train.device``, ``rnnkit.train.precision``):
        device: where to train: ``"cpu"``, ``"cuda"`` (under ``torchrun``: ``cuda:LOCAL_RANK``),
            ``"cuda:N"`` or ``"auto"`` (CUDA where available, else the CPU); None: the model's device
            (the CPU for ``rnnkit train``), or under ``torchrun`` with GPUs, ``cuda:LOCAL_RANK``.
        precision: ``"32"`` (float32), ``"64"`` (float64), ``"bf16-mixed"`` (bfloat16 autocast around the
            forward pass and the loss, float32 weights; CPU and CUDA) or ``"16-mixed"`` (float16 autocast
            with a gradient scaler; CUDA only). Lightning's names.
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0
    clip_norm: float | None = None
    schedule: str = "constant"
    warmup_steps: int = 0
    lr_step_size: int = 1000
    lr_gamma: float = 0.1
    plateau_patience: int = 2
    min_lr: float = 0.0
    epochs: int = 1
    max_steps: int | None = None
    max_minutes: float | None = None
    eval_every: int | None = None
    patience: int | None = None
    seed: int = 0
    deterministic: bool = False
    shuffle: bool = True
    flush_subnormals: bool = True
    out_dir: str | None = None
    checkpoint_every: int | None = None
    keep_last: int = 2
    resume: bool = False
    progress: bool = True
    log_every: int = 10
    tensorboard: bool = True
    device: str | None = None
    precision: str = "32"

    def __post_init__(self) -> None:
        if type(self.precision) is int and self.precision in (32, 64):     # Lightning's int spelling
            self.precision = str(self.precision)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        for name in ("lr", "lr_gamma"):
            _check_number(name, getattr(self, name), positive=True)
        for name in ("weight_decay", "momentum", "min_lr"):
            _check_number(name, getattr(self, name), positive=False)
        for name in ("clip_norm", "max_minutes"):
            if getattr(self, name) is not None:
                _check_number(name, getattr(self, name), positive=True)
        for name in ("lr_step_size", "plateau_patience", "epochs", "log_every", "keep_last"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("warmup_steps", self.warmup_steps, minimum=0)
        _check_int("seed", self.seed, minimum=0)
        for name in ("max_steps", "eval_every", "patience", "checkpoint_every"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        for name in ("deterministic", "shuffle", "flush_subnormals", "resume", "progress", "tensorboard"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"TrainConfig.{name} must be True or False, got {getattr(self, name)!r}")
        for name in ("out_dir", "device"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"TrainConfig.{name} must be a string or None, got {value!r}")
        check_device_name(self.device, "TrainConfig.device")
        if self.resume and self.out_dir is None:
            raise ValueError("TrainConfig.resume=True needs out_dir, the directory of the run to continue")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a dict (a JSON or TOML table); unknown keys raise ``ValueError`` naming them."""
        check_keys(values)
        return cls(**values)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed (unknown names refused as in ``from_dict``)."""
        check_keys(changes)
        return dataclasses.replace(self, **changes)


def check_keys(values: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming every key of ``values`` that is not a ``TrainConfig`` field."""
    if not isinstance(values, dict):
        raise TypeError(f"a TrainConfig must come from a dict, got {type(values).__name__}")
    known = [f.name for f in fields(TrainConfig)]
    unknown = [key for key in values if key not in known]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), known, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"unknown TrainConfig key(s): {', '.join(hints)}; known keys: {', '.join(known)}")


def _check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"TrainConfig.{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _check_number(name: str, value, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (positive and value == 0):
        expected = "a finite number > 0" if positive else "a finite number >= 0"
        raise ValueError(f"TrainConfig.{name} must be {expected}, got {value!r}")


def _check_int(name: str, value, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"TrainConfig.{name} must be an int >= {minimum}, got {value!r}")
