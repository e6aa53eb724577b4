"""Bracketed trees with a label on every node (PTB style), as in the Stanford Sentiment Treebank.

One tree per line, for example ``(3 (2 (2 The) (2 Rock)) (4 (2 is) (4 great)))``: a node is
``(LABEL WORD)`` (a leaf) or ``(LABEL CHILD CHILD ...)``; a word holds no ASCII whitespace and no
bracket (PTB writes them -LRB- -RRB-). Socher et al. 2013, "Recursive Deep Models
for Semantic Compositionality Over a Sentiment Treebank": labels 0-4, the root's label is the
sentence's. The SST release is binary already (every internal node has two children);
``binarize`` makes any other tree so.

``trees_to_batch`` turns a list of trees into the tensors the tree models take
(``rnnkit.models.tree``): every node of the batch numbered level by level, leaves first, so that a
model computes a whole level at once.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from os import PathLike
from typing import Iterator, NamedTuple, Sequence

import torch
from torch import Tensor

from .errors import DataFormatError
from .vocab import Vocabulary


@dataclass(frozen=True)
class Tree:
    """A labelled tree node: a leaf holds a ``word``, an internal node its ``children``.

    Args:
        label: the node's label (SST: ``"0"`` ... ``"4"``).
        children: the child trees, left to right; empty for a leaf.
        word: the leaf's word; None for an internal node.
    """

    label: str
    children: tuple["Tree", ...] = ()
    word: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.children, tuple):
            object.__setattr__(self, "children", tuple(self.children))
        if (self.word is None) == (not self.children):
            raise ValueError(f"a Tree holds either a word (leaf) or children (internal node), got "
                             f"word={self.word!r} and {len(self.children)} children")

    @property
    def is_leaf(self) -> bool:
        return self.word is not None

    def leaves(self) -> list[str]:
        """The words at the leaves, left to right (the sentence)."""
        if self.is_leaf:
            return [self.word]
        return [word for child in self.children for word in child.leaves()]

    def to_bracketed(self) -> str:
        """The tree in the bracketed form ``parse_tree`` reads (one line, single spaces)."""
        if self.is_leaf:
            return f"({self.label} {self.word})"
        return f"({self.label} {' '.join(child.to_bracketed() for child in self.children)})"

    def is_binary(self) -> bool:
        """True when every internal node has exactly two children."""
        return self.is_leaf or (len(self.children) == 2 and all(c.is_binary() for c in self.children))


# Tokens are split at ASCII whitespace only: SST has words with a no-break space inside ("8\xa01\/2").
_TOKEN = re.compile(r"\(|\)|[^ \t\n\r\f\v()]+")


class _Open:
    """A node whose ')' has not been read yet."""

    def __init__(self, label: str, column: int) -> None:
        self.label, self.column = label, column
        self.word: str | None = None
        self.children: list[Tree] = []


def parse_tree(text: str, path: str | PathLike | None = None, line: int | None = None) -> Tree:
    """Read one bracketed tree; ``path`` and ``line`` only name the place in errors.

    Raises:
        DataFormatError: ``FILE:LINE: what is wrong at column C`` for unbalanced brackets, a node
            without a label, a leaf with two words, a word beside child trees, or text after the tree.
    """
    def fail(message: str) -> DataFormatError:
        return DataFormatError(path, line, message)

    tokens = [(m.group(), m.start() + 1) for m in _TOKEN.finditer(text)]          # (token, column)
    if not tokens:
        raise fail("empty tree: expected '(' at column 1")
    if tokens[0][0] != "(":
        raise fail(f"expected '(' at column {tokens[0][1]}, found {tokens[0][0]!r}")
    open_nodes: list[_Open] = []
    position = 0
    while position < len(tokens):
        token, column = tokens[position]
        position += 1
        if token == "(":
            label = tokens[position] if position < len(tokens) else (None, len(text) + 1)
            if label[0] in (None, "(", ")"):
                raise fail(f"missing label after '(' at column {label[1]}")
            if open_nodes and open_nodes[-1].word is not None:
                raise fail(f"child tree after the word {open_nodes[-1].word!r} at column {column} "
                           "(a leaf holds one word and no children)")
            open_nodes.append(_Open(label[0], column))
            position += 1
        elif token == ")":
            if not open_nodes:
                raise fail(f"unbalanced brackets: ')' without '(' at column {column}")
            node = open_nodes.pop()
            if node.word is None and not node.children:
                raise fail(f"node {node.label!r} has neither a word nor children at column {column}")
            tree = Tree(node.label, tuple(node.children), node.word)
            if not open_nodes:
                if position < len(tokens):
                    extra, extra_column = tokens[position]
                    raise fail(f"trailing text {extra!r} after the tree at column {extra_column}")
                return tree
            open_nodes[-1].children.append(tree)
        else:                                       # a word (the text before '(' is refused above)
            node = open_nodes[-1]
            if node.children or node.word is not None:
                raise fail(f"unexpected word {token!r} at column {column} (a leaf is '(LABEL WORD)', "
                           "an internal node holds only child trees)")
            node.word = token
    raise fail(f"unbalanced brackets: missing ')' for the '(' at column {open_nodes[-1].column} "
               f"(the line ends at column {len(text) + 1})")


def iter_trees(path: str | PathLike) -> Iterator[Tree]:
    """Stream the trees of a file, one bracketed tree per line (blank lines are skipped)."""
    with open(path, encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if text.strip():
                yield parse_tree(text.rstrip("\r\n"), path=path, line=number)


def binarize(tree: Tree) -> Tree:
    """A binary tree over the same words: right-factored, unary chains collapsed.

    A node with children ``a b c`` becomes ``(X a (X b c))``: the inserted node takes its parent's
    label X. A node with one child (a unary chain) is replaced by its child, keeping the upper label
    (it spans the same words; at the top it is the sentence's label). SST needs none of this: every
    internal node of its release has two children.
    """
    if tree.is_leaf:
        return tree
    if len(tree.children) == 1:
        child = binarize(tree.children[0])
        return Tree(tree.label, child.children, child.word)
    children = [binarize(child) for child in tree.children]
    right = children[-1]
    for left in reversed(children[1:-1]):
        right = Tree(tree.label, (left, right))
    return Tree(tree.label, (children[0], right))


class TreeBatch(NamedTuple):
    """A batch of binary trees as the tree models take it, nodes numbered level by level.

    Level 0 holds every leaf of the batch, level k the internal nodes of height k (the longest path
    down to a leaf), so that both children of a node lie in lower levels. Nodes are numbered level
    after level; inside a level, tree by tree and left to right. N nodes, L leaves, B trees.

    Attributes:
        words: (L,) word id of leaf i (leaves are nodes 0 .. L-1).
        left, right: (N,) index of each node's left / right child; -1 for the leaves.
        labels: (N,) label id of every node.
        level_sizes: nodes per level; level k is nodes ``sum(level_sizes[:k]) ..`` on.
        roots: (B,) the node index of each tree's root, in the order of the trees given.
    """

    words: Tensor
    left: Tensor
    right: Tensor
    labels: Tensor
    level_sizes: tuple[int, ...]
    roots: Tensor

    def to(self, device: torch.device | str) -> "TreeBatch":
        """The same batch with its tensors on ``device``."""
        return TreeBatch(self.words.to(device), self.left.to(device), self.right.to(device),
                         self.labels.to(device), self.level_sizes, self.roots.to(device))


def trees_to_batch(trees: Sequence[Tree], word_vocab: Vocabulary, label_vocab: Vocabulary) -> TreeBatch:
    """Number the nodes of binary ``trees`` level by level and encode words and labels.

    Raises:
        ValueError: for an empty list or a tree that is not binary (``binarize`` it first).
    """
    if len(trees) == 0:
        raise ValueError("trees must hold at least one tree, got an empty sequence")
    entries: list[tuple[int, int, int]] = []               # (height, tree, post-order position)
    nodes: list[list[tuple[Tree, tuple[int, ...]]]] = []    # per tree: (node, its children's positions)
    for tree_index, tree in enumerate(trees):
        if not tree.is_binary():
            raise ValueError(f"trees[{tree_index}] is not binary (an internal node has other than 2 "
                             f"children): binarize it first; got {tree.to_bracketed()[:80]}")
        nodes.append(_post_order(tree))
        heights: list[int] = []
        for position, (node, children) in enumerate(nodes[-1]):
            heights.append(1 + max(heights[c] for c in children) if children else 0)
            entries.append((heights[-1], tree_index, position))
    entries.sort()
    number = {(t, position): i for i, (_, t, position) in enumerate(entries)}

    def child(t: int, position: int, side: int) -> int:
        children = nodes[t][position][1]
        return number[(t, children[side])] if children else -1

    level_sizes = [0] * (entries[-1][0] + 1)
    for height, _, _ in entries:
        level_sizes[height] += 1
    leaves = entries[:level_sizes[0]]
    return TreeBatch(
        words=torch.tensor(word_vocab.encode(nodes[t][p][0].word for _, t, p in leaves), dtype=torch.long),
        left=torch.tensor([child(t, p, 0) for _, t, p in entries], dtype=torch.long),
        right=torch.tensor([child(t, p, 1) for _, t, p in entries], dtype=torch.long),
        labels=torch.tensor(label_vocab.encode(nodes[t][p][0].label for _, t, p in entries),
                            dtype=torch.long),
        level_sizes=tuple(level_sizes),
        roots=torch.tensor([number[(t, len(nodes[t]) - 1)] for t in range(len(trees))], dtype=torch.long),
    )


def _post_order(tree: Tree) -> list[tuple[Tree, tuple[int, ...]]]:
    """Every node, children before their parent, with the positions of its children in the list
    (iterative, so that a deep tree does not reach Python's recursion limit)."""
    ordered: list[tuple[Tree, tuple[int, ...]]] = []
    finished: list[int] = []                        # positions of the subtrees completed, in order
    stack: list[tuple[Tree, bool]] = [(tree, False)]  # (node, its children are done)
    while stack:
        node, children_done = stack.pop()
        if node.is_leaf or children_done:
            count = len(node.children)
            children = tuple(finished[len(finished) - count:]) if count else ()
            del finished[len(finished) - count:]
            ordered.append((node, children))
            finished.append(len(ordered) - 1)
        else:
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(node.children))
    return ordered
