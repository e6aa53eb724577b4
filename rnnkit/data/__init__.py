"""Data: readers for the standard formats (each error names file and line), vocabularies, batches.

Every reader streams its file (``iter_*``; ``read_*`` is ``list(iter_*(...))``), reads ``.gz`` files
transparently and raises ``DataFormatError`` (``FILE:LINE: what is wrong``) on a malformed record.
"""
from .atis import AtisUtterance, iter_atis, read_atis
from .batching import bucket_batches, pad_batch, stream_batches
from .conll import TaggedSentence, iter_conllu, read_conllu
from .errors import DataFormatError
from .labelled import LabelledText, iter_labelled_tsv, iter_sst_sentences, read_labelled_tsv, read_sst_sentences
from .parallel import SentencePair, iter_pair_tsv, iter_parallel, read_pair_tsv, read_parallel, simple_tokenize
from .text import iter_char_tokens, iter_lines, iter_word_lines, read_characters, split_by_fraction
from .timeseries import read_series_csv, read_series_txt, read_uea_arff, read_ucr, sliding_windows
from .trees import Tree, TreeBatch, binarize, iter_trees, parse_tree, trees_to_batch
from .vocab import BOS, EOS, PAD, UNK, Vocabulary

__all__ = ["DataFormatError", "Vocabulary", "PAD", "UNK", "BOS", "EOS",
           "LabelledText", "iter_labelled_tsv", "read_labelled_tsv", "iter_sst_sentences", "read_sst_sentences",
           "TaggedSentence", "iter_conllu", "read_conllu", "AtisUtterance", "iter_atis", "read_atis",
           "iter_lines", "read_characters", "iter_word_lines", "iter_char_tokens", "split_by_fraction",
           "SentencePair", "iter_parallel", "read_parallel", "iter_pair_tsv", "read_pair_tsv", "simple_tokenize",
           "read_series_csv", "read_series_txt", "read_ucr", "read_uea_arff", "sliding_windows",
           "Tree", "TreeBatch", "parse_tree", "iter_trees", "binarize", "trees_to_batch",
           "pad_batch", "bucket_batches", "stream_batches"]
