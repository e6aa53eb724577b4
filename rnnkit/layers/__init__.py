from .dropin import GRU, LSTM, RNN
from .recurrent import Recurrent

__all__ = ["Recurrent", "RNN", "LSTM", "GRU"]
