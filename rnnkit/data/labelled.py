"""Sentences with one label each: ``text<TAB>label`` files and SST's ``<label> <sentence>`` files.

SST-2 / SST-5 sentence files (``stsa.binary.*``, ``stsa.fine.*``; Socher et al. 2013, "Recursive
Deep Models for Semantic Compositionality Over a Sentiment Treebank", EMNLP) hold one sentence per
line, the label first and separated by the first space: ``1 a stirring , funny ...``.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple

from .errors import DataFormatError
from .text import PathType, iter_nonblank_lines


class LabelledText(NamedTuple):
    """One example: its tokens and its label (a string; build a label Vocabulary to get ids)."""
    tokens: list[str]
    label: str


def iter_labelled_tsv(path: PathType, lowercase: bool = False) -> Iterator[LabelledText]:
    """Yield a LabelledText per ``text<TAB>label`` line (text split on whitespace; blank lines skipped).

    A line without exactly one tab, or with an empty text or label, raises DataFormatError.
    """
    numbered = iter_nonblank_lines(path)

    def records() -> Iterator[LabelledText]:
        for line_number, line in numbered:
            fields = line.split("\t")
            if len(fields) != 2:
                raise DataFormatError(path, line_number, f"{len(fields)} tab-separated fields "
                                                         "(2 expected: text<TAB>label)")
            text, label = fields[0], fields[1].strip()
            tokens = (text.lower() if lowercase else text).split()
            if not tokens or not label:
                raise DataFormatError(path, line_number, f"empty {'text' if not tokens else 'label'} "
                                                         "(text<TAB>label expected, both non-empty)")
            yield LabelledText(tokens, label)
    return records()


def read_labelled_tsv(path: PathType, lowercase: bool = False) -> list[LabelledText]:
    return list(iter_labelled_tsv(path, lowercase=lowercase))


def iter_sst_sentences(path: PathType) -> Iterator[LabelledText]:
    """Yield a LabelledText per ``<label> <sentence>`` line of an SST-2/SST-5 sentence file.

    The label is the integer before the first space, kept as its string (``"0"`` … ``"4"``); blank lines
    are skipped; a line without an integer label and a sentence raises DataFormatError.
    """
    numbered = iter_nonblank_lines(path)

    def records() -> Iterator[LabelledText]:
        for line_number, line in numbered:
            label, _, sentence = line.strip().partition(" ")
            tokens = sentence.split()
            if not label.isdigit() or not tokens:
                raise DataFormatError(path, line_number, f"{line[:40]!r} is not '<label> <sentence>' "
                                                         "(an integer label, a space, then the sentence)")
            yield LabelledText(tokens, label)
    return records()


def read_sst_sentences(path: PathType) -> list[LabelledText]:
    return list(iter_sst_sentences(path))
