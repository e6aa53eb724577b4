"""Built-in synthetic tasks, so that everything runs with no download."""
from .adding import BASELINE_MSE as ADDING_BASELINE_MSE, adding_problem
from .copy_memory import copy_memory, memoryless_cross_entropy
from .mackey_glass import mackey_glass

__all__ = ["adding_problem", "ADDING_BASELINE_MSE", "copy_memory", "memoryless_cross_entropy",
           "mackey_glass"]
