"""A run's logs: CSV tables, TensorBoard event files, and the training curves as a PNG.

``out_dir/train.csv``   one row every ``log_every`` steps: step, epoch, the window's mean loss, the
                        learning rate, the largest gradient norm of the window (before clipping),
                        throughput in the task's unit per second, seconds since the start
``out_dir/eval.csv``    one row per evaluation: step, epoch, every metric the task reports
                        ("epoch" in both tables: the epochs completed at that step)
``out_dir/tensorboard`` the loss, learning rate and gradient norm at *every* step, and the metrics
``out_dir/curves.png``  training loss and the dev metrics against the step (``plot_curves``)

Rows are flushed as they are written, so a killed run keeps its log; a resumed run first drops the
rows after the step it resumes from, so that the tables read as one uninterrupted run.
"""
from __future__ import annotations

import csv
import math
from os import PathLike
from pathlib import Path

TRAIN_CSV, EVAL_CSV, CURVES_PNG, TENSORBOARD_DIR = "train.csv", "eval.csv", "curves.png", "tensorboard"


def train_columns(unit: str) -> list[str]:
    """The header of ``train.csv`` for a task whose loss is a mean over ``unit`` (e.g. ``tokens``)."""
    return ["step", "epoch", "loss", "lr", "grad_norm", f"{unit}_per_s", "seconds"]


class RunLog:
    """Writes ``train.csv``, ``eval.csv`` and TensorBoard events under ``out_dir``.

    Args:
        out_dir: the run's directory (created if absent).
        unit: the task's loss unit, naming the throughput column.
        tensorboard: also write TensorBoard event files.
        resume_step: continue an earlier run's logs from this step (later rows are dropped);
            None starts new logs.
    """

    def __init__(self, out_dir: str | PathLike, unit: str, *, tensorboard: bool = True,
                 resume_step: int | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._train = _CsvTable(self.out_dir / TRAIN_CSV, train_columns(unit), resume_step)
        self._eval = _CsvTable(self.out_dir / EVAL_CSV, None, resume_step)
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter   # slow to import: only when asked
            purge = None if resume_step is None else resume_step + 1
            self._writer = SummaryWriter(log_dir=str(self.out_dir / TENSORBOARD_DIR), purge_step=purge)

    def step(self, step: int, scalars: dict[str, float]) -> None:
        """Every step's values (loss, lr, grad_norm) to TensorBoard, as ``train/NAME``."""
        if self._writer is not None:
            for name, value in scalars.items():
                self._writer.add_scalar(f"train/{name}", value, step)

    def train_row(self, row: dict[str, float]) -> None:
        """One row of ``train.csv`` (keys: ``train_columns``)."""
        self._train.write(row)

    def evaluation(self, step: int, epoch: int, metrics: dict[str, float]) -> None:
        """One row of ``eval.csv``, and the metrics to TensorBoard as ``dev/NAME``."""
        self._eval.write({"step": step, "epoch": epoch, **metrics})
        if self._writer is not None:
            for name, value in metrics.items():
                self._writer.add_scalar(f"dev/{name}", value, step)
            self._writer.flush()

    def close(self) -> None:
        self._train.close()
        self._eval.close()
        if self._writer is not None:
            self._writer.close()


class _CsvTable:
    """An append-only CSV file whose header is fixed by its first row (or given)."""

    def __init__(self, path: Path, columns: list[str] | None, resume_step: int | None) -> None:
        self.path, self.columns, self._file, self._writer = path, columns, None, None
        kept: list[dict] = []
        if resume_step is not None and path.is_file():
            with open(path, newline="") as file:
                reader = csv.DictReader(file)
                self.columns = self.columns or reader.fieldnames
                kept = [row for row in reader if row.get("step", "").isdigit() and int(row["step"]) <= resume_step]
        if self.columns is not None:
            self._open(kept)

    def _open(self, rows: list[dict]) -> None:
        self._file = open(self.path, "w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")
        self._writer.writeheader()
        self._writer.writerows(rows)
        self._file.flush()

    def write(self, row: dict) -> None:
        if self._writer is None:
            self.columns = list(row)
            self._open([])
        self._writer.writerow({key: _format(value) for key, value in row.items()})
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _format(value) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def read_csv(path: str | PathLike) -> dict[str, list[float]]:
    """A CSV log as columns of floats (empty cells become nan)."""
    columns: dict[str, list[float]] = {}
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            for key, value in row.items():
                columns.setdefault(key, []).append(float(value) if value not in ("", None) else math.nan)
    return columns


def plot_curves(out_dir: str | PathLike, path: str | PathLike | None = None) -> Path:
    """Draw ``train.csv``'s loss and each metric of ``eval.csv`` against the step; write a PNG
    (``out_dir/curves.png`` by default) and return its path. Uses matplotlib's Agg canvas directly,
    so no display and no global pyplot state is touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    path = Path(path) if path is not None else out_dir / CURVES_PNG
    train = read_csv(out_dir / TRAIN_CSV) if (out_dir / TRAIN_CSV).is_file() else {}
    evaluation = read_csv(out_dir / EVAL_CSV) if (out_dir / EVAL_CSV).is_file() else {}
    metrics = [name for name in evaluation if name not in ("step", "epoch")]
    figure = Figure(figsize=(5 * (1 + len(metrics)), 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 1 + len(metrics), squeeze=False)[0]
    axes[0].plot(train.get("step", []), train.get("loss", []), color="tab:blue")
    axes[0].set(title="training loss", xlabel="step", ylabel="loss")
    for axis, name in zip(axes[1:], metrics):
        axis.plot(evaluation["step"], evaluation[name], marker="o", color="tab:orange")
        axis.set(title=f"dev {name}", xlabel="step", ylabel=name)
    for axis in axes:
        axis.grid(alpha=0.3)
    figure.savefig(path, dpi=100)
    return path
