"""rnnkit: the recurrent networks of the textbook chapter, each correct to its equations."""
from . import cells
from .layers import GRU, LSTM, RNN, EchoStateNetwork, Recurrent

__version__ = "0.1.0"
__all__ = ["cells", "Recurrent", "RNN", "LSTM", "GRU", "EchoStateNetwork", "__version__"]
