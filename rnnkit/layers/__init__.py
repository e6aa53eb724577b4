from .dropin import GRU, LSTM, RNN
from .dropin_cells import GRUCell, LSTMCell, RNNCell
from .esn import EchoStateNetwork
from .recurrent import Recurrent

__all__ = ["Recurrent", "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "EchoStateNetwork"]
