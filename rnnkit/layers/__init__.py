from .dropin import GRU, LSTM, RNN
from .esn import EchoStateNetwork
from .recurrent import Recurrent

__all__ = ["Recurrent", "RNN", "LSTM", "GRU", "EchoStateNetwork"]
