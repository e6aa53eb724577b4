"""Tree models: the level-batched computation against a node-by-node recursion written from the papers'
equations, gradients (float64, gradcheck), a batch against each tree alone, argument errors, and a
Tree-LSTM that learns SST sentiment at the root."""
import random
from itertools import count

import pytest
import torch
from torch.func import functional_call

from rnnkit.data.trees import Tree, iter_trees, trees_to_batch
from rnnkit.data.vocab import Vocabulary
from rnnkit.metrics import accuracy
from rnnkit.models.tree import BinaryTreeLSTM, RecursiveNN, TreeClassifier
from rnnkit.models.tree_batch import check_tree_arrays

WORDS = ["good", "bad", "not", "very", "film", "the", "."]
COMPOSITIONS = {"tree-lstm": BinaryTreeLSTM, "recursive": RecursiveNN}


def random_tree(rng: random.Random, leaves: int, names) -> Tree:
    """A random binary tree whose every node carries its own name as label (to find it in a batch)."""
    if leaves == 1:
        return Tree(f"n{next(names)}", word=rng.choice(WORDS))
    split = rng.randint(1, leaves - 1)
    children = (random_tree(rng, split, names), random_tree(rng, leaves - split, names))
    return Tree(f"n{next(names)}", children)


def named_trees(sizes, seed=0):
    """Trees with uniquely named nodes, the vocabularies, and the batch of them all."""
    rng, names = random.Random(seed), count()
    trees = [random_tree(rng, size, names) for size in sizes]
    words = Vocabulary.build([WORDS])
    node_names = Vocabulary([f"n{k}" for k in range(next(names))], unknown=None)
    return trees, words, node_names, trees_to_batch(trees, words, node_names)


def reference_states(composition, embedding, words, tree, found):
    """Node by node, recursively, the equations of the model's docstring; fills found[label] = h."""
    H, sigmoid, tanh = composition.hidden_size, torch.sigmoid, torch.tanh
    if tree.is_leaf:
        x = embedding[words.id(tree.word)]                                       # (I,)
        if isinstance(composition, RecursiveNN):
            h, c = tanh(composition.W_x.weight @ x + composition.W_x.bias), None
        else:
            i, o, u = (composition.W.weight @ x + composition.W.bias).split(H)
            c = sigmoid(i) * tanh(u)
            h = sigmoid(o) * tanh(c)
    else:
        (h_l, c_l), (h_r, c_r) = (reference_states(composition, embedding, words, child, found)
                                  for child in tree.children)
        if isinstance(composition, RecursiveNN):
            h, c = tanh(composition.W.weight @ torch.cat([h_l, h_r]) + composition.W.bias), None
        else:
            gates = (composition.U_left.weight @ h_l + composition.U_left.bias
                     + composition.U_right.weight @ h_r)
            i, f_l, f_r, o, u = gates.split(H)
            c = sigmoid(i) * tanh(u) + sigmoid(f_l) * c_l + sigmoid(f_r) * c_r
            h = sigmoid(o) * tanh(c)
    found[tree.label] = h
    return h, c


@pytest.mark.parametrize("name", sorted(COMPOSITIONS))
def test_level_batched_states_and_gradients_match_node_by_node_recursion(name):
    torch.manual_seed(0)
    trees, words, node_names, batch = named_trees([1, 2, 5, 9, 4, 7])
    composition = COMPOSITIONS[name](input_size=3, hidden_size=4).double()
    embedding = torch.randn(len(words), 3, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(len(node_names), 4, dtype=torch.float64)         # a weight per node and unit
    parameters = [embedding, *composition.parameters()]

    h = composition(embedding[batch.words], batch.left, batch.right, batch.level_sizes)   # (N, H)
    batched_loss = (h * probe[batch.labels]).sum()
    batched_gradients = torch.autograd.grad(batched_loss, parameters)

    found = {}
    for tree in trees:
        reference_states(composition, embedding, words, tree, found)
    assert len(found) == len(batch.labels) == h.shape[0]
    expected = torch.stack([found[label] for label in node_names.decode(batch.labels)])
    torch.testing.assert_close(h, expected, rtol=0, atol=1e-12)
    reference_loss = sum((found[label] * probe[node_names.id(label)]).sum() for label in found)
    for got, want in zip(batched_gradients, torch.autograd.grad(reference_loss, parameters)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(COMPOSITIONS))
def test_gradcheck_inputs_and_parameters_in_float64(name):
    torch.manual_seed(1)
    _, _, _, batch = named_trees([3, 2, 1], seed=1)
    composition = COMPOSITIONS[name](input_size=2, hidden_size=3).double()
    names = [n for n, _ in composition.named_parameters()]
    leaf_inputs = torch.randn(batch.level_sizes[0], 2, dtype=torch.float64, requires_grad=True)
    parameters = [p.detach().clone().requires_grad_() for p in composition.parameters()]

    def every_h(x, *values):
        return functional_call(composition, dict(zip(names, values)),
                               (x, batch.left, batch.right, batch.level_sizes))

    assert torch.autograd.gradcheck(every_h, (leaf_inputs, *parameters))


@pytest.mark.parametrize("name", sorted(COMPOSITIONS))
def test_a_batch_of_trees_equals_each_tree_alone(name):
    torch.manual_seed(2)
    trees, words, node_names, batch = named_trees([6, 1, 3, 8, 2], seed=2)
    model = TreeClassifier(len(words), num_classes=5, composition=name, embedding_dim=4,
                           hidden_size=5, dropout=0.3).eval()
    logits = model(batch.words, batch.left, batch.right, batch.level_sizes)   # (N, C)
    assert logits.shape == (len(batch.labels), 5)
    by_name = dict(zip(node_names.decode(batch.labels), logits))
    for tree in trees:
        alone = trees_to_batch([tree], words, node_names)
        alone_logits = model(alone.words, alone.left, alone.right, alone.level_sizes)
        for label, row in zip(node_names.decode(alone.labels), alone_logits):
            torch.testing.assert_close(by_name[label], row, rtol=1e-5, atol=1e-6)


def test_level_sizes_must_match_the_arrays():
    _, _, _, batch = named_trees([3, 2])                       # levels (5, 2, 1): 5 leaves
    x = torch.zeros(5, 2)
    with pytest.raises(ValueError, match=r"leaf_inputs must be \(L=4, I\).*got \(5, 2\)"):
        check_tree_arrays(x, batch.left, batch.right, (4, 3, 1))
    with pytest.raises(ValueError, match=r"left must be a \(N=9,\) long tensor.*got torch.int64 \(8,\)"):
        check_tree_arrays(x, batch.left, batch.right, (5, 3, 1))
    with pytest.raises(ValueError, match=r"right must be .*got torch.int32"):
        check_tree_arrays(x, batch.left, batch.right.int(), batch.level_sizes)
    with pytest.raises(ValueError, match="positive node counts"):
        check_tree_arrays(x, batch.left, batch.right, (5, 0, 3))


def test_a_child_in_its_parents_level_is_refused():
    _, _, _, batch = named_trees([3, 2])                       # levels (5, 2, 1)
    right = batch.right.clone()
    right[6] = 5                                               # node 6's child from its own level 1
    with pytest.raises(ValueError, match=r"right\[6\] = 5: a child must be a node of a lower level "
                                         r"\(0 .. 4 for node 6\)"):
        check_tree_arrays(torch.zeros(5, 2), batch.left, right, batch.level_sizes)


def test_classifier_arguments_are_checked():
    with pytest.raises(ValueError, match="composition must be one of.*'lstm'"):
        TreeClassifier(10, 5, composition="lstm")
    with pytest.raises(ValueError, match="dropout"):
        TreeClassifier(10, 5, dropout=1.0)
    model = TreeClassifier(10, 5, embedding_dim=2, hidden_size=2)
    with pytest.raises(ValueError, match=r"words must be a \(L,\) long tensor.*\(1, 2\)"):
        model(torch.zeros(1, 2, dtype=torch.long), torch.tensor([-1, -1]), torch.tensor([-1, -1]), (2,))


POLARITY = {"0": "negative", "1": "negative", "2": "neutral", "3": "positive", "4": "positive"}


def polarity_tree(tree: Tree) -> Tree:
    """SST-2 labels on every node (negative / neutral / positive), words lower-cased."""
    if tree.is_leaf:
        return Tree(POLARITY[tree.label], word=tree.word.lower())
    return Tree(POLARITY[tree.label], tuple(polarity_tree(child) for child in tree.children))


def sst2_excerpt(path, every, size):
    """Every `every`-th tree (the files are sorted by sentiment), neutral roots dropped."""
    trees = [tree for k, tree in enumerate(iter_trees(path)) if k % every == 0 and tree.label != "2"]
    return [polarity_tree(tree) for tree in trees[:size]]


def trained_on_sst2(shared_data, composition: str, epochs: int):
    """A TreeClassifier (E=H=64, dropout 0.2, Adam 0.01) trained on 600 SST-2 training trees, loss on
    every node that is not neutral; returns the model (in eval mode), the training batches, the dev
    trees and their batch."""
    train = sst2_excerpt(shared_data("sst/trees/train.txt"), every=10, size=600)
    dev = sst2_excerpt(shared_data("sst/trees/dev.txt"), every=4, size=200)
    words = Vocabulary.build((tree.leaves() for tree in train), min_freq=2)
    labels = Vocabulary(["negative", "positive", "neutral"], unknown=None)     # neutral: no loss
    train.sort(key=lambda tree: len(tree.leaves()))            # similar sizes: fewer levels per batch
    batches = [trees_to_batch(train[k:k + 25], words, labels) for k in range(0, len(train), 25)]
    torch.manual_seed(0)
    model = TreeClassifier(len(words), num_classes=2, composition=composition, embedding_dim=64,
                           hidden_size=64, dropout=0.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(epochs):
        model.train()
        for k in torch.randperm(len(batches)).tolist():
            batch = batches[k]
            logits = model(batch.words, batch.left, batch.right, batch.level_sizes)       # (N, 2)
            loss = torch.nn.functional.cross_entropy(logits, batch.labels, ignore_index=2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    return model, batches, dev, trees_to_batch(dev, words, labels)


@pytest.mark.slow
def test_tree_lstm_learns_sst2_at_the_root(shared_data):
    """600 training trees (SST-2: neutral roots dropped), 12 epochs; dev root accuracy must beat the
    majority class by 7 points (measured with seeds 0-4: 0.655-0.685 against 0.55, 5-8 s)."""
    model, batches, dev, dev_batch = trained_on_sst2(shared_data, "tree-lstm", epochs=12)
    with torch.no_grad():
        logits = model(dev_batch.words, dev_batch.left, dev_batch.right, dev_batch.level_sizes)
    root_accuracy = accuracy(logits[dev_batch.roots].argmax(-1), dev_batch.labels[dev_batch.roots])
    roots = torch.cat([batch.labels[batch.roots] for batch in batches])
    majority = int(roots.mode().values)
    baseline = (dev_batch.labels[dev_batch.roots] == majority).float().mean().item()
    print(f"root accuracy {root_accuracy:.3f}, majority {baseline:.3f}")
    assert root_accuracy >= baseline + 0.07


@pytest.mark.slow
def test_recursive_network_learns_the_sentiment_of_phrases(shared_data):
    """The recursive network (Socher et al.) on the same excerpt: over every non-neutral node of the
    dev trees (phrases and words, where most of its signal is), accuracy must beat the majority node
    label by 10 points. Its root accuracy is weaker than the Tree-LSTM's (0.56-0.65 measured against
    0.55), so the roots are not what this test asserts."""
    model, batches, dev, dev_batch = trained_on_sst2(shared_data, "recursive", epochs=8)
    with torch.no_grad():
        logits = model(dev_batch.words, dev_batch.left, dev_batch.right, dev_batch.level_sizes)
    polar = dev_batch.labels != 2                               # nodes that are not neutral
    node_accuracy = accuracy(logits[polar].argmax(-1), dev_batch.labels[polar])
    train_labels = torch.cat([batch.labels[batch.labels != 2] for batch in batches])
    majority = int(train_labels.mode().values)
    baseline = (dev_batch.labels[polar] == majority).float().mean().item()
    print(f"node accuracy {node_accuracy:.3f}, majority {baseline:.3f}")
    assert node_accuracy >= baseline + 0.10, (node_accuracy, baseline)
