"""What studies 3-7 share: the data folder, tiny excerpts for ``--smoke``, and one train-then-test run
of a task recipe (``rnnkit.recipes.run``) under a share of the study's budget.

A study is a loop over configurations, each ``train_and_test(...)``: ``rnnkit.recipes.run.train`` on
the training file with the dev file choosing the best checkpoint (the trainer's ``best.json``), then
``rnnkit.recipes.run.evaluate`` of that checkpoint on the test file. Nothing here knows a model: the
recipes build them from their options, as ``rnnkit train`` does.

``--data DIR`` (default ``/work/shared/data``, laid out as its README describes) is where the
scripts look for their files; a file that is absent is reported in the study's section and its
runs are skipped (``missing``). With ``--smoke`` the scripts copy the first few records of each file
into a temporary folder (``excerpts``) and train for a couple of steps.
"""
from __future__ import annotations

import argparse
import gzip
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from rnnkit.recipes import run
from rnnkit.train import TrainConfig

DEFAULT_DATA = Path("/work/shared/data")
SMOKE_RECORDS = 24              # records (lines, sentences) of each file kept by --smoke
SMOKE_TRAINING = dict(max_steps=2, epochs=1)
SMOKE_BATCH = 4


def add_data_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR",
                        help=f"the shared data folder, laid out as its README.md says (default {DEFAULT_DATA})")


def training_options(args: argparse.Namespace, training: dict[str, Any]) -> dict[str, Any]:
    """A study's ``TrainConfig`` fields; with ``--smoke``, two steps without evaluation on the way."""
    return {**training, **SMOKE_TRAINING, "eval_every": None} if args.smoke else training


def batch_size(args: argparse.Namespace, full: int) -> int:
    return SMOKE_BATCH if args.smoke else full


def missing(paths: Iterable[Path]) -> list[Path]:
    """The files among ``paths`` that do not exist."""
    return [path for path in paths if not Path(path).is_file()]


def absent_note(what: str, absent: Sequence[Path]) -> str:
    names = ", ".join(str(path) for path in absent)
    return f"{what} was skipped: {names} {'is' if len(absent) == 1 else 'are'} absent (pass --data DIR)."


# ------------------------------------------------------------------------------------ excerpts
def excerpts(data: Path, relative_paths: Iterable[str], into: Path, records: int = SMOKE_RECORDS) -> Path:
    """Copy the first ``records`` records of each ``data/relative_path`` (that exists) to
    ``into/relative_path`` and return ``into``: lines for text files, blank-line-separated
    sentences for ``.conllu``; a ``.gz`` file stays gzipped."""
    for relative in relative_paths:
        source, target = data / relative, into / relative
        if not source.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with _open(source, "r") as reader, _open(target, "w") as writer:
            writer.write("".join(_first_records(reader, records, source.suffix == ".conllu")))
    return into


def _open(path: Path, mode: str):
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8", newline="")
    return open(path, mode, encoding="utf-8", newline="")


def _first_records(lines: Iterable[str], count: int, by_blank_line: bool) -> list[str]:
    kept: list[str] = []
    for line in lines:
        kept.append(line)
        done = (line.strip() == "") if by_blank_line else True
        count -= int(done)
        if count == 0:
            break
    return kept


# ---------------------------------------------------------------------------------- one run
@dataclass
class Outcome:
    """One trained and tested configuration.

    test: the recipe's metrics of the best checkpoint on the test file (``run.evaluate``);
    best_dev: the trainer's best dev evaluation (step, epoch and metrics), None without one;
    steps, epochs: optimiser steps and completed epochs; minutes: wall-clock training minutes;
    stop_reason: why training stopped (``epochs``, ``max_minutes``, ``early_stopping``, ``max_steps``);
    parameters: trainable parameters; trained: the reloaded run (model, vocabularies, options).
    """
    test: dict[str, float]
    best_dev: dict[str, Any] | None
    steps: int
    epochs: int
    minutes: float
    stop_reason: str
    parameters: int
    trained: run.TrainedRun


def train_and_test(task: str, train_path: str, dev_path: str | None, test_path: str, *, seconds: float,
                   out_dir: Path, training: dict[str, Any] | Sequence[dict[str, Any]],
                   model_options: dict[str, Any], data_options: dict[str, Any] | None = None,
                   batch_size: int = 32) -> Outcome:
    """Train ``task`` for at most ``seconds`` (and the limits in ``training``, ``TrainConfig`` fields),
    keeping the checkpoint with the best dev metric, then evaluate it on ``test_path``.

    ``training`` may be a list of phases, each a dict of ``TrainConfig`` fields: the second and later
    phases resume the run where the one before stopped (``resume=True``: same weights, optimiser
    state and step count, with the phase's own limits and schedule), as long as time is left and no
    phase stopped early."""
    phases = [training] if isinstance(training, dict) else list(training)
    start = time.perf_counter()
    for number, phase in enumerate(phases):
        left = seconds - (time.perf_counter() - start)
        config = TrainConfig(**{**phase, "max_minutes": max(left, 1.0) / 60, "out_dir": str(out_dir),
                                "progress": False, "tensorboard": False, "keep_last": 1, "resume": number > 0})
        trained, history = run.train(task, train_path, dev_path, config, model_options=model_options,
                                     data_options=data_options, batch_size=batch_size, echo=_quiet)
        if history.stop_reason in ("max_minutes", "early_stopping"):
            break
    minutes = (time.perf_counter() - start) / 60
    test = run.evaluate(trained, test_path, batch_size=max(batch_size, 64))
    return Outcome(test, history.best, history.steps, history.epochs, minutes, history.stop_reason,
                   sum(p.numel() for p in trained.model.parameters() if p.requires_grad), trained)


def _quiet(message: str) -> None:
    print("  " + message, flush=True)


def fixed_seconds(clock, weight: float, total_weight: float) -> float:
    """A run's training seconds when the runs compare at a fixed CPU time each: its ``weight`` out
    of ``total_weight`` of the whole budget of ``clock`` (``common.Clock``), whatever the runs before
    it used; test evaluations come on top."""
    if not 0 < weight <= total_weight:
        raise ValueError(f"weight must be in (0, total_weight], got {weight} of {total_weight}")
    return clock.seconds * weight / total_weight


def seconds_for(clock, weight: float, weights_left: float) -> float:
    """The next run's seconds: its ``weight`` out of the ``weights_left`` (it included) of the runs
    still to come, of what is left of the study's ``clock`` (``common.Clock``); a run that ends early
    leaves its time to the ones after it."""
    if not (weights_left > 0 and 0 < weight <= weights_left + 1e-9):
        raise ValueError(f"weight must be in (0, weights_left], got {weight} of {weights_left}")
    return clock.left() * weight / weights_left


def percent(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def goal_note(what: str, value: float, goal: float, outcome: Outcome | None = None) -> str:
    """``"WHAT 95.3% — goal ≥ 95.0% met."`` (fractions in, percents out); a goal not met says,
    from the run's ``outcome``, whether the budget or the dev metric ended training."""
    met = value >= goal
    note = f"{what} {percent(value)}% — goal ≥ {percent(goal)}% {'met' if met else 'not met'}."
    return note if met or outcome is None else f"{note} {shortfall_reason(outcome)}"


def shortfall_reason(outcome: Outcome) -> str:
    """Why a run that missed its goal stopped, and what that says about closing the gap."""
    if outcome.stop_reason == "max_minutes":
        return (f"Training was cut by its share of the budget after {outcome.epochs} complete epoch(s) "
                f"({outcome.minutes:.1f} min): a larger `--budget` trains longer.")
    if outcome.stop_reason == "early_stopping":
        return (f"Training stopped on the dev metric (no gain for `patience` evaluations) after "
                f"{outcome.minutes:.1f} of its minutes, so more time alone would not close the gap: the "
                "model and its settings would have to change.")
    return f"Training ran to its {outcome.stop_reason.replace('_', ' ')} limit ({outcome.minutes:.1f} min)."


def run_summary(outcome: Outcome) -> str:
    """Steps, epochs, minutes and why training stopped, for a table cell."""
    return (f"{outcome.steps:,} steps, {outcome.epochs} ep., {outcome.minutes:.1f} min "
            f"({outcome.stop_reason.replace('_', ' ')})")
