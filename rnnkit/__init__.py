"""rnnkit: the recurrent networks of the textbook chapter, each correct to its equations."""
import importlib

from . import cells
from .layers import GRU, LSTM, RNN, EchoStateNetwork, Recurrent

__version__ = "0.1.0"
__all__ = ["cells", "Recurrent", "RNN", "LSTM", "GRU", "EchoStateNetwork", "learning", "diagnose",
           "tasks", "__version__"]

_LAZY = ("learning", "diagnose", "tasks")   # imported on first use (diagnose brings matplotlib)


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")
