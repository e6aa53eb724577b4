"""Models for the four ways to use a recurrent network, and recursive networks over trees.

Every model is a ``torch.nn.Module`` that takes tensors (token ids, features, lengths) and plugs in
any cell of ``rnnkit.cells``; readers and vocabularies live in ``rnnkit.data``.
"""
from .encoder import RecurrentEncoder, length_mask

__all__ = ["RecurrentEncoder", "length_mask"]
