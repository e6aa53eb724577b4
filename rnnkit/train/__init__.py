"""Training any model for any task: the ``Trainer``, its configuration, checkpoints, logs and
several processes. Tasks plug in through ``rnnkit.train.task.Task``; the trainer knows no model."""
from .checkpoint import (Checkpoint, CheckpointError, best_checkpoint, latest_checkpoint, load_checkpoint,
                         save_checkpoint)
from .config import TrainConfig
from .distributed import DistributedContext
from .logging import plot_curves
from .schedule import LearningRateSchedule
from .task import RegressionTask, Task
from .trainer import History, Trainer

__all__ = ["Trainer", "TrainConfig", "History", "Task", "RegressionTask", "save_checkpoint", "load_checkpoint",
           "Checkpoint", "CheckpointError", "latest_checkpoint", "best_checkpoint", "LearningRateSchedule",
           "DistributedContext", "plot_curves"]
