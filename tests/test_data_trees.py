"""Bracketed trees: reading, round trip, malformed lines (file:line:column), binarizing, level batches."""
from collections import Counter
from itertools import islice

import pytest

from rnnkit.data.errors import DataFormatError
from rnnkit.data.trees import Tree, binarize, iter_trees, parse_tree, trees_to_batch
from rnnkit.data.vocab import UNK, Vocabulary

SENTENCE = "(3 (2 (2 The) (2 Rock)) (4 (2 is) (4 (3 very) (4 great))))"
LABELS = Vocabulary([str(k) for k in range(5)], unknown=None)


def leaf(label, word):
    return Tree(label, word=word)


def test_parse_builds_the_tree_written():
    expected = Tree("3", (Tree("2", (leaf("2", "The"), leaf("2", "Rock"))),
                          Tree("4", (leaf("2", "is"), Tree("4", (leaf("3", "very"), leaf("4", "great")))))))
    tree = parse_tree(SENTENCE)
    assert tree == expected
    assert tree.leaves() == ["The", "Rock", "is", "very", "great"]
    assert tree.is_binary()


def test_a_word_may_hold_a_no_break_space_but_not_an_ascii_space():
    assert parse_tree("(2 (2 8\xa01\\/2) (2 .))").leaves() == ["8\xa01\\/2", "."]
    with pytest.raises(DataFormatError, match="unexpected word"):
        parse_tree("(2 8 1/2)")


def test_round_trip_parse_print_parse():
    text = "(S  (NP (D the)\t(N cat))(VP (V sat) (PP (P on) (NP (D the) (N mat)))) (. .))"
    tree = parse_tree(text)
    printed = tree.to_bracketed()
    assert printed == "(S (NP (D the) (N cat)) (VP (V sat) (PP (P on) (NP (D the) (N mat)))) (. .))"
    assert parse_tree(printed) == tree


def test_tree_holds_a_word_or_children_not_both():
    with pytest.raises(ValueError, match="either a word"):
        Tree("2")
    with pytest.raises(ValueError, match="either a word"):
        Tree("2", (leaf("2", "a"),), word="b")


@pytest.mark.parametrize("text, problem, column", [
    ("(2 (2 a) (2 b)", "missing ')' for the '('", 1),
    ("(2 (2 a) (2 b)))", "trailing text ')'", 16),
    ("(2 (2 a) (2 b)) (2 c)", "trailing text '('", 17),
    ("((2 a) (2 b))", "missing label", 2),
    ("(2 (2 a) ( (2 b)))", "missing label", 12),
    ("(2 (2) (2 b))", "neither a word nor children", 6),
    ("(2 (2 a b) (2 c))", "unexpected word 'b'", 9),
    ("(2 (2 a) c)", "unexpected word 'c'", 10),
    ("(2 a (2 b))", "child tree after the word 'a'", 6),
    ("x (2 a)", "expected '('", 1),
])
def test_malformed_line_names_file_line_and_column(tmp_path, text, problem, column):
    path = tmp_path / "trees.txt"
    path.write_text(f"{SENTENCE}\n\n{text}\n{SENTENCE}\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as raised:
        list(iter_trees(path))
    message = str(raised.value)
    assert message.startswith(f"{path}:3: ")
    assert problem in message and f"column {column}" in message
    assert (raised.value.path, raised.value.line) == (str(path), 3)


def test_parse_without_a_file_names_the_input():
    with pytest.raises(DataFormatError, match=r"^<input>: empty tree"):
        parse_tree("   ")


def test_binarize_right_factors_and_collapses_unary_chains():
    tree = parse_tree("(S (NP (D the) (N cat)) (VP (V sat)) (P .))")
    expected = parse_tree("(S (NP (D the) (N cat)) (S (VP sat) (P .)))")
    assert binarize(tree) == expected
    assert binarize(tree).leaves() == tree.leaves()
    four = parse_tree("(X (a 1) (b 2) (c 3) (d 4))")
    assert binarize(four) == parse_tree("(X (a 1) (X (b 2) (X (c 3) (d 4))))")


def test_binarize_leaves_a_binary_tree_unchanged():
    tree = parse_tree(SENTENCE)
    assert binarize(tree) == tree


def rebuild(batch, node, words, labels):
    """The Tree that node `node` of a TreeBatch stands for, read back from the arrays alone."""
    label = labels.decode([batch.labels[node]])[0]
    if batch.left[node] < 0:
        return Tree(label, word=words.decode([batch.words[node]])[0])
    return Tree(label, (rebuild(batch, int(batch.left[node]), words, labels),
                        rebuild(batch, int(batch.right[node]), words, labels)))


def test_batch_numbers_nodes_by_level_for_a_hand_checked_case():
    words = Vocabulary.build([["The", "Rock", "is", "great"]])
    batch = trees_to_batch([parse_tree("(3 (2 (2 The) (2 Rock)) (4 (2 is) (4 great)))"),
                            parse_tree("(1 bad)")], words, LABELS)
    # level 0: The Rock is great bad; level 1: (The Rock) (is great); level 2: the first root
    assert batch.level_sizes == (5, 2, 1)
    assert batch.words.tolist() == words.encode(["The", "Rock", "is", "great", UNK])
    assert batch.left.tolist() == [-1] * 5 + [0, 2, 5]
    assert batch.right.tolist() == [-1] * 5 + [1, 3, 6]
    assert batch.labels.tolist() == [2, 2, 2, 4, 1, 2, 4, 3]
    assert batch.roots.tolist() == [7, 4]


def test_batch_arrays_rebuild_every_tree_and_children_precede_their_level():
    trees = [parse_tree(SENTENCE), parse_tree("(0 (1 not) (0 (0 bad) (2 .)))"), parse_tree("(2 a)"),
             parse_tree(SENTENCE)]                                # the same tree twice is fine
    words = Vocabulary.build(tree.leaves() for tree in trees)
    batch = trees_to_batch(trees, words, LABELS)
    assert [rebuild(batch, int(root), words, LABELS) for root in batch.roots] == trees
    start = 0
    for size in batch.level_sizes:
        level = slice(start, start + size)
        if start > 0:
            assert (batch.left[level] >= 0).all() and (batch.left[level] < start).all()
            assert (batch.right[level] >= 0).all() and (batch.right[level] < start).all()
        start += size
    assert start == len(batch.labels) == sum(2 * len(t.leaves()) - 1 for t in trees)


def test_batch_refuses_non_binary_trees_and_empty_lists():
    words = Vocabulary.build([["a", "b", "c"]])
    with pytest.raises(ValueError, match=r"trees\[1\] is not binary.*binarize"):
        trees_to_batch([parse_tree("(2 a)"), parse_tree("(2 (2 a) (2 b) (2 c))")], words, LABELS)
    with pytest.raises(ValueError, match="at least one tree"):
        trees_to_batch([], words, LABELS)


@pytest.mark.parametrize("split, trees, binary_sentences, root_counts", [
    ("train", 8544, 6920, None),
    ("dev", 1101, 872, [139, 289, 229, 279, 165]),
    ("test", 2210, 1821, [279, 633, 389, 510, 399]),
])
def test_shared_sst_files(shared_data, split, trees, binary_sentences, root_counts):
    """Counts from ../shared/data/README.md; every tree binary, labelled 0-4 on every node."""
    path = shared_data(f"sst/trees/{split}.txt")
    roots = Counter()
    for tree in iter_trees(path):
        assert tree.is_binary()
        roots[tree.label] += 1
    assert sum(roots.values()) == trees
    assert sum(roots.values()) - roots["2"] == binary_sentences
    if root_counts is not None:
        assert [roots[str(k)] for k in range(5)] == root_counts


def test_shared_sst_lines_print_back_identically(shared_data):
    path = shared_data("sst/trees/dev.txt")
    with open(path, encoding="utf-8") as lines:
        for text, tree in islice(zip(lines, iter_trees(path)), 300):
            assert tree.to_bracketed() == text.rstrip("\n")
