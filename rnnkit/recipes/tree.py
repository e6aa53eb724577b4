r"""The ``tree`` recipe: sentiment at every node of a parse tree (the Stanford Sentiment Treebank).

Model: ``rnnkit.models.tree.TreeClassifier``: word vectors at the leaves, composed up the binary
tree by a Tree-LSTM (Tai et al. 2015, arXiv:1503.00075) or a recursive network (Socher et al. 2011,
2013), a softmax on every node. It is trained on the mean cross-entropy over the labelled nodes

.. math:: \mathcal{L} = -\frac{1}{|\mathcal{N}|} \sum_{j \in \mathcal{N}} \ln p(y_j \mid \text{subtree}_j),

and scored as Socher et al. (2013) report it: ``accuracy`` at the roots (the sentence's label, the
dev metric) and ``node_accuracy`` over every labelled node (phrases and words); ``loss`` is the mean
cross-entropy per labelled node.

Data options (``data_defaults``):

* ``labels``: ``"binary"`` (the default; SST-2 from the trees, as the data README says: trees whose
  root is 2 (neutral) are dropped, 0–1 → ``negative``, 3–4 → ``positive`` on every node; inner nodes
  labelled 2 stay in the tree but count neither in the loss nor in ``node_accuracy``) or ``"fine"``
  (the five labels ``0`` … ``4``, every node counted).
* ``lowercase``: lower-case the words (default True).
* ``min_freq``: words seen fewer times in training become ``<unk>``.

The input is one bracketed tree per line (``rnnkit.data.trees``, gzip-transparent), labels ``0``–``4``
on every node; a tree that is not binary is binarised (right-factored). A malformed tree or another
label raises ``DataFormatError`` (``FILE:LINE``).

Model options: ``composition`` (``tree-lstm`` | ``recursive``), with the common ``embedding``, ``hidden``
and ``dropout``. ``cell``, ``variant`` and ``layers`` do not apply (the composition is the cell) and must
keep their defaults; ``bidirectional`` is ignored.

``predict``: each input line → the root's label (``negative`` / ``positive``, or ``0`` … ``4``). A line
that starts with ``(`` is read as a bracketed tree (its labels ignored); any other line is taken as
a whitespace-tokenised sentence and given a right-branching binary tree over its words,
``(w1 (w2 (… (w_{n-1} w_n))))``: the root composes the first word with the rest of the sentence
(no parser here; a model trained on SST's parses reads such trees less well than real parses).
Its words are lower-cased with ``lowercase``, as the training trees' were; an empty line gives an
empty line.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.batching import bucket_batches
from ..data.errors import DataFormatError
from ..data.text import iter_nonblank_lines
from ..data.trees import Tree, TreeBatch, binarize, parse_tree, trees_to_batch
from ..data.vocab import Vocabulary
from ..metrics import accuracy
from ..models.tree import COMPOSITIONS, TreeClassifier
from .base import COMMON_MODEL_DEFAULTS, RecipeState, register
from .common import cased, model_device, numbered_chunks

LABEL_SETS = ("binary", "fine")
FINE_LABELS = ("0", "1", "2", "3", "4")
POLARITY = {"0": "negative", "1": "negative", "2": "neutral", "3": "positive", "4": "positive"}
NEUTRAL = "neutral"


class TreeTask:
    """Cross-entropy over the labelled nodes; root and all-node accuracy.

    ``ignored``: the label id that is not a class (``neutral`` in the binary setting; None: none).
    """

    metric = "accuracy"
    higher_is_better = True
    loss_unit = "nodes"

    def __init__(self, ignored: int | None) -> None:
        self.ignore_index = -100 if ignored is None else ignored

    def training_loss(self, model: nn.Module, batch: TreeBatch) -> tuple[Tensor, dict[str, int]]:
        logits = model(batch.words, batch.left, batch.right, batch.level_sizes)   # (N, C)
        counted = int((batch.labels != self.ignore_index).sum())
        loss = F.cross_entropy(logits, batch.labels, ignore_index=self.ignore_index)
        return loss, {"nodes": counted, "examples": int(batch.roots.shape[0]), "tokens": int(batch.words.shape[0])}

    def evaluate(self, model: nn.Module, batches: Iterable[TreeBatch]) -> dict[str, float]:
        predicted_roots, gold_roots, predicted_nodes, gold_nodes, total = [], [], [], [], 0.0
        for batch in batches:
            logits = model(batch.words, batch.left, batch.right, batch.level_sizes)   # (N, C)
            counted = batch.labels != self.ignore_index                               # (N,)
            total += float(F.cross_entropy(logits, batch.labels, ignore_index=self.ignore_index,
                                           reduction="sum"))
            predicted_roots.append(logits[batch.roots].argmax(-1))                    # (B,)
            gold_roots.append(batch.labels[batch.roots])                              # (B,)
            predicted_nodes.append(logits[counted].argmax(-1))                        # (n,)
            gold_nodes.append(batch.labels[counted])                                  # (n,)
        if not gold_roots:
            raise ValueError("the tree task got no batches to evaluate")
        nodes = torch.cat(gold_nodes)
        return {"accuracy": accuracy(torch.cat(predicted_roots), torch.cat(gold_roots)),
                "node_accuracy": accuracy(torch.cat(predicted_nodes), nodes),
                "loss": total / max(int(nodes.numel()), 1)}


class TreeRecipe:
    """Sentiment classification over binary parse trees (see the module docstring)."""

    name = "tree"
    summary = "sentiment of every phrase of a parse tree (SST; root and all-node accuracy)"
    model_defaults: dict[str, Any] = {"composition": "tree-lstm"}
    data_defaults: dict[str, Any] = {"labels": "binary", "lowercase": True, "min_freq": 1}

    def read(self, path: str, data_options: dict[str, Any]) -> list[Tree]:
        """The binary trees of ``path``, labels mapped as ``data_options["labels"]`` says."""
        labels = data_options["labels"]
        if labels not in LABEL_SETS:
            raise ValueError(f"tree data option 'labels' must be one of {', '.join(LABEL_SETS)}, got {labels!r}")
        trees = []
        for line_number, text in iter_nonblank_lines(path):
            tree = parse_tree(text, path=path, line=line_number)
            bad = next((node.label for node in _nodes(tree) if node.label not in FINE_LABELS), None)
            if bad is not None:
                raise DataFormatError(path, line_number, f"label {bad!r}: SST labels 0-4 expected on every node")
            if labels == "binary" and POLARITY[tree.label] == NEUTRAL:
                continue
            polarity = POLARITY.get if labels == "binary" else str
            trees.append(binarize(map_tree(tree, polarity, lambda word: cased(word, data_options))))
        return trees

    def prepare(self, records: list[Tree], model_options: dict[str, Any], data_options: dict[str, Any]) -> RecipeState:
        """The ``words`` of the training trees and the ``labels`` of the label set; the data options as they are."""
        # binary: neutral last, so that the classes are ids 0 .. C-1 and neutral (id C) is no class
        labels = ("negative", "positive", NEUTRAL) if data_options["labels"] == "binary" else FINE_LABELS
        vocabularies = {"words": Vocabulary.build((tree.leaves() for tree in records),
                                                  min_freq=data_options["min_freq"]),
                        "labels": Vocabulary(labels, unknown=None)}
        return RecipeState(self.name, model_options, data_options, vocabularies)

    def build_model(self, state: RecipeState) -> nn.Module:
        model_options, vocabularies = state.model_options, state.vocabularies
        for key in ("cell", "variant", "layers"):
            if model_options[key] != COMMON_MODEL_DEFAULTS[key]:
                raise ValueError(f"tree model option {key!r} does not apply (the composition "
                                 f"{sorted(COMPOSITIONS)} is the cell); got {model_options[key]!r}")
        return TreeClassifier(len(vocabularies["words"]), len(_classes(vocabularies["labels"])),
                              composition=model_options["composition"], embedding_dim=model_options["embedding"],
                              hidden_size=model_options["hidden"], dropout=model_options["dropout"])

    def batches(self, records: list[Tree], state: RecipeState, batch_size: int, *,
                shuffle: bool, seed: int) -> list[TreeBatch]:
        """Batches of trees with similar numbers of words (so that their depths are alike)."""
        words, labels = state.vocabularies["words"], state.vocabularies["labels"]
        groups = bucket_batches([len(tree.leaves()) for tree in records], batch_size, shuffle=shuffle, seed=seed)
        return [trees_to_batch([records[i] for i in group], words, labels) for group in groups]

    def task(self, state: RecipeState) -> TreeTask:
        return TreeTask(state.vocabularies["labels"].index.get(NEUTRAL))

    def predict(self, model: nn.Module, state: RecipeState, lines: Iterable[str]) -> Iterator[str]:
        """Each bracketed tree or sentence → its root's label (see the module docstring)."""
        for chunk in numbered_chunks(lines):
            yield from root_labels(model, state, chunk)


def map_tree(tree: Tree, label: Callable[[str], str], word: Callable[[str], str]) -> Tree:
    """The same tree with ``label`` applied to every label and ``word`` to the words, left to right."""
    if tree.is_leaf:
        return Tree(label(tree.label), word=word(tree.word))
    return Tree(label(tree.label), tuple(map_tree(child, label, word) for child in tree.children))


def right_branching(words: list[str], label: str) -> Tree:
    """``(w1 (w2 (… (w_{n-1} w_n))))``, every node labelled ``label``."""
    tree = Tree(label, word=words[-1])
    for word in reversed(words[:-1]):
        tree = Tree(label, (Tree(label, word=word), tree))
    return tree


@torch.no_grad()
def root_labels(model: nn.Module, state: RecipeState, lines: list[tuple[int, str]]) -> list[str]:
    """The predicted root label of each (line number, line), a bracketed tree or a sentence; "" for
    an empty line."""
    words, labels = state.vocabularies["words"], state.vocabularies["labels"]
    rows = [row for row, (_, line) in enumerate(lines) if line.strip()]
    results = [""] * len(lines)
    if rows:
        trees = [input_tree(lines[row][1], lines[row][0], labels.symbols[0], state.data_options) for row in rows]
        batch = trees_to_batch(trees, words, labels).to(model_device(model))
        logits = model(batch.words, batch.left, batch.right, batch.level_sizes)     # (N, C)
        for row, label in zip(rows, logits[batch.roots].argmax(-1).tolist()):      # (B,)
            results[row] = labels.symbols[label]
    return results


def input_tree(line: str, line_number: int, label: str, data_options: dict[str, Any]) -> Tree:
    """The binary tree of a predict line (bracketed, or right-branching over a sentence's words),
    every node labelled ``label``, its words ``cased`` as the training trees' were."""
    text = line.strip()
    shape = binarize(parse_tree(text, path="<input>", line=line_number)) if text.startswith("(") \
        else right_branching(text.split(), label)
    return map_tree(shape, lambda _: label, lambda word: cased(word, data_options))


def _classes(labels: Vocabulary) -> list[str]:
    return [symbol for symbol in labels.symbols if symbol != NEUTRAL]


def _nodes(tree: Tree) -> Iterator[Tree]:
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.children)


register(TreeRecipe())
