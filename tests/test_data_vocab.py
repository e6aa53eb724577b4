"""Vocabulary: frequency order, minimum frequency, unknown symbols, JSON round trip."""
import json

import pytest

from rnnkit.data import PAD, UNK, DataFormatError, Vocabulary


def test_build_orders_by_frequency_and_drops_rare_symbols():
    vocab = Vocabulary.build([["b", "a", "b"], ["c", "b", "a"], ["d"]], min_freq=2)
    assert vocab.symbols == [PAD, UNK, "b", "a"]
    assert vocab.encode(["a", "zzz", "b"]) == [3, 1, 2]
    assert vocab.decode([2, 3]) == ["b", "a"]
    assert vocab.pad_index == 0 and vocab.unk_index == 1


def test_label_vocabulary_without_unknown_refuses_unseen_labels():
    labels = Vocabulary.build([["x", "y"]], specials=(), unknown=None)
    assert labels.encode(["y", "x"]) == [1, 0]                 # equal counts: first seen first
    with pytest.raises(KeyError, match="'z' is not in the vocabulary"):
        labels.id("z")


def test_round_trip_through_json():
    vocab = Vocabulary.build(["hello world hello".split()], max_size=1)
    again = Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again == vocab and len(again) == 3


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="min_freq"):
        Vocabulary.build([], min_freq=0)
    with pytest.raises(ValueError, match="'symbols'"):
        Vocabulary.from_dict({"symbols": "abc"})


def test_format_error_names_file_and_line():
    error = DataFormatError("data/train.tsv", 12, "expected 2 tab-separated fields, found 1")
    assert str(error) == "data/train.tsv:12: expected 2 tab-separated fields, found 1"
    assert (error.path, error.line) == ("data/train.tsv", 12)
