"""Recursive networks over binary trees: the recursive neural network and the binary Tree-LSTM.

R. Socher, C. C.-Y. Lin, A. Y. Ng, C. D. Manning, "Parsing Natural Scenes and Natural Language with
Recursive Neural Networks", ICML 2011; R. Socher, A. Perelygin, J. Wu, J. Chuang, C. D. Manning,
A. Ng, C. Potts, "Recursive Deep Models for Semantic Compositionality Over a Sentiment Treebank",
EMNLP 2013. K. S. Tai, R. Socher, C. D. Manning, "Improved Semantic Representations From
Tree-Structured Long Short-Term Memory Networks", ACL 2015, arXiv:1503.00075.

A batch of trees is plain tensors, nodes numbered level by level (see ``tree_batch``); every model
here computes one level of the whole batch at a time. Shapes: N nodes, L leaves, I input features,
H hidden size, C classes.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .tree_batch import States, compose_by_level


class RecursiveNN(nn.Module):
    r"""The recursive neural network: one matrix composes two children into their parent.

    .. math::
        h_j &= \tanh(W_x x_j + b_x)                          \quad\text{leaf with word vector } x_j \\
        h_j &= \tanh(W [h_{l}; h_{r}] + b)                    \quad\text{internal, children } l, r

    (Socher et al. 2011, 2013, with the leaves' word vectors projected to H.) Parameters:
    ``W_x`` (H, I) with ``b_x``, ``W`` (H, 2H) with ``b``.

    Args:
        input_size: I, features of each leaf's vector.
        hidden_size: H, size of every node's vector.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.W_x = nn.Linear(input_size, hidden_size)
        self.W = nn.Linear(2 * hidden_size, hidden_size)

    def leaf(self, x: Tensor) -> States:
        return (torch.tanh(self.W_x(x)),)                                     # (L, H)

    def node(self, left: States, right: States) -> States:
        (h_l,), (h_r,) = left, right                                           # each (n, H)
        return (torch.tanh(self.W(torch.cat([h_l, h_r], dim=-1))),)            # (n, H)

    def forward(self, leaf_inputs: Tensor, left: Tensor, right: Tensor,
                level_sizes: Sequence[int] | Tensor) -> Tensor:
        """(L, I) leaf vectors and the batch's child indices (N,) -> (N, H) every node's h."""
        (h,) = compose_by_level(self.leaf, self.node, leaf_inputs, left, right, level_sizes)
        return h


class BinaryTreeLSTM(nn.Module):
    r"""The N-ary Tree-LSTM of Tai et al. 2015 with N = 2 (their constituency Tree-LSTM).

    For node j with left child l and right child r (equations 9-14 with N = 2):

    .. math::
        i_j   &= σ(W^{(i)} x_j + U^{(i)}_l h_l + U^{(i)}_r h_r + b^{(i)})                 \\
        f_{jl} &= σ(W^{(f)} x_j + U^{(f)}_{ll} h_l + U^{(f)}_{lr} h_r + b^{(f_l)})        \\
        f_{jr} &= σ(W^{(f)} x_j + U^{(f)}_{rl} h_l + U^{(f)}_{rr} h_r + b^{(f_r)})        \\
        o_j   &= σ(W^{(o)} x_j + U^{(o)}_l h_l + U^{(o)}_r h_r + b^{(o)})                 \\
        u_j   &= \tanh(W^{(u)} x_j + U^{(u)}_l h_l + U^{(u)}_r h_r + b^{(u)})             \\
        c_j   &= i_j ⊙ u_j + f_{jl} ⊙ c_l + f_{jr} ⊙ c_r                                  \\
        h_j   &= o_j ⊙ \tanh(c_j)

    In a constituency tree only the leaves hold words: a leaf has x_j = its word vector and no
    children (h, c of the children are 0, so the forget gates drop out: c_j = i_j ⊙ u_j); an internal
    node has x_j = 0. Leaves and internal nodes keep their own biases, as the authors' code
    (stanfordnlp/treelstm, separate leaf and composer modules) does; each forget gate has its own.

    Parameters, gates stacked in the order named: ``W`` (3H, I) and its bias: i, o, u of a leaf;
    ``U_left`` (5H, H) with the internal nodes' bias and ``U_right`` (5H, H): i, f_l, f_r, o, u.
    The forget biases start at 1 (Gers et al. 2000; Jozefowicz et al. 2015): a parent starts by
    keeping its children's memory.

    Args:
        input_size: I, features of each leaf's vector.
        hidden_size: H, size of every node's h and c.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.W = nn.Linear(input_size, 3 * hidden_size)
        self.U_left = nn.Linear(hidden_size, 5 * hidden_size)
        self.U_right = nn.Linear(hidden_size, 5 * hidden_size, bias=False)
        with torch.no_grad():
            self.U_left.bias[hidden_size:3 * hidden_size].fill_(1.0)          # b^(f_l), b^(f_r)

    def leaf(self, x: Tensor) -> States:
        i, o, u = self.W(x).chunk(3, dim=-1)                                   # each (L, H)
        c = torch.sigmoid(i) * torch.tanh(u)                                   # (L, H)
        h = torch.sigmoid(o) * torch.tanh(c)                                   # (L, H)
        return h, c

    def node(self, left: States, right: States) -> States:
        (h_l, c_l), (h_r, c_r) = left, right                                   # each (n, H)
        gates = self.U_left(h_l) + self.U_right(h_r)                           # (n, 5H)
        i, f_l, f_r, o, u = gates.chunk(5, dim=-1)                             # each (n, H)
        c = torch.sigmoid(i) * torch.tanh(u) + torch.sigmoid(f_l) * c_l + torch.sigmoid(f_r) * c_r
        h = torch.sigmoid(o) * torch.tanh(c)                                   # (n, H)
        return h, c

    def forward(self, leaf_inputs: Tensor, left: Tensor, right: Tensor,
                level_sizes: Sequence[int] | Tensor) -> Tensor:
        """(L, I) leaf vectors and the batch's child indices (N,) -> (N, H) every node's h."""
        h, _ = compose_by_level(self.leaf, self.node, leaf_inputs, left, right, level_sizes)
        return h


COMPOSITIONS = {"tree-lstm": BinaryTreeLSTM, "recursive": RecursiveNN}


class TreeClassifier(nn.Module):
    r"""A label at every node of a tree: word embeddings at the leaves, a composition up the tree,
    a softmax classifier on every node's h (the Sentiment Treebank setting: Socher et al. 2013 train
    on every phrase's label and report accuracy at the root and over all nodes).

    .. math::
        x_j = E[w_j], \quad h = \text{composition}(x, \text{tree}), \quad
        \hat{y}_j = \mathrm{softmax}(W_s\, \mathrm{dropout}(h_j) + b_s)

    Args:
        vocab_size: rows of the embedding E.
        num_classes: C, labels per node (SST: 5).
        composition: ``"tree-lstm"`` (``BinaryTreeLSTM``) or ``"recursive"`` (``RecursiveNN``).
        embedding_dim: I, size of the word vectors.
        hidden_size: H, size of every node's vector.
        dropout: dropout on the word vectors and on h before the classifier (Tai et al.: 0.5).

    Call: ``logits = model(words, left, right, level_sizes)`` with the arrays of a level-ordered
    batch (``rnnkit.data.trees.trees_to_batch``): words (L,) leaf word ids, left/right (N,) child
    indices, level_sizes nodes per level -> logits (N, C) for every node; the roots' rows are
    ``logits[roots]``.
    """

    def __init__(self, vocab_size: int, num_classes: int, composition: str = "tree-lstm",
                 embedding_dim: int = 100, hidden_size: int = 150, dropout: float = 0.0) -> None:
        super().__init__()
        if composition not in COMPOSITIONS:
            raise ValueError(f"composition must be one of {sorted(COMPOSITIONS)}, got {composition!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.composition = COMPOSITIONS[composition](embedding_dim, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_classes)

    def forward(self, words: Tensor, left: Tensor, right: Tensor,
                level_sizes: Sequence[int] | Tensor) -> Tensor:
        if words.dim() != 1 or words.dtype != torch.long:
            raise ValueError(f"words must be a (L,) long tensor of leaf word ids, "
                             f"got {words.dtype} {tuple(words.shape)}")
        x = self.dropout(self.embedding(words))                                # (L, I)
        h = self.composition(x, left, right, level_sizes)                      # (N, H)
        return self.classifier(self.dropout(h))                                # (N, C)
