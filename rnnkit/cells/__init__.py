"""Recurrent cells, one file per family, registered by name; a cell of one's own joins them
(docs/custom-cells.md) by ``@register("name")``, as ``"package.module:ClassName"``, or through the
``rnnkit.cells`` entry-point group of an installed package.

>>> from rnnkit import cells
>>> cells.available()
['elman', 'esn', 'gru', 'indrnn', 'jordan', 'lstm', 'mingru', 'minlstm', 'residual']
>>> cell = cells.create("lstm", 8, 16, variant="cifg")
"""
from .base import RecurrentCell
from .contract import CellContractError
from .registry import available, cell_class, cell_options, create, register, resolve
from .elman import ElmanCell
from .jordan import JordanCell
from .residual import ResidualCell
from .lstm import VARIANTS as LSTM_VARIANTS, LSTMCell
from .gru import GRUCell
from .indrnn import IndRNNCell
from .minimal import MinGRUCell, MinLSTMCell
from .esn import EchoStateCell, fit_ridge

__all__ = [
    "RecurrentCell", "CellContractError", "available", "cell_class", "cell_options", "create", "register",
    "resolve",
    "ElmanCell", "JordanCell", "ResidualCell", "LSTMCell", "LSTM_VARIANTS", "GRUCell",
    "IndRNNCell", "MinGRUCell", "MinLSTMCell", "EchoStateCell", "fit_ridge",
]
