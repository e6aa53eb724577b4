"""What the recipe tests share: a quiet training configuration and a file written from lines."""
from __future__ import annotations

from pathlib import Path

from rnnkit.train import TrainConfig


def quiet_config(out_dir, /, **options) -> TrainConfig:
    """A TrainConfig writing to ``out_dir`` with no progress bar and no TensorBoard; ``options`` win
    (an ``out_dir`` among them too)."""
    return TrainConfig(**{"out_dir": str(out_dir), "progress": False, "tensorboard": False, **options})


def write_lines(path: Path, lines) -> str:
    """``lines`` written to ``path``, one per line (UTF-8); returns the path as a string."""
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)
