"""rnnkit: the recurrent networks of the textbook chapter, each correct to its equations."""
import importlib

from . import cells
from .layers import GRU, LSTM, RNN, EchoStateNetwork, GRUCell, LSTMCell, Recurrent, RNNCell
from . import serialization  # registers rnnkit's modules as torch.load(weights_only=True) safe globals

__version__ = "0.1.0"
__all__ = ["cells", "Recurrent", "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "EchoStateNetwork",
           "learning", "diagnose", "tasks", "models", "data", "metrics", "train", "recipes", "Trainer", "TrainConfig",
           "__version__"]

# imported on first use (diagnose brings matplotlib, train tensorboard)
_LAZY = ("learning", "diagnose", "tasks", "models", "data", "metrics", "train", "recipes")
_LAZY_NAMES = {"Trainer": "train", "TrainConfig": "train"}


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f".{_LAZY_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")
