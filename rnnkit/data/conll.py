"""CoNLL-U (Universal Dependencies) sentences as words and one tag column, for tagging.

Format (https://universaldependencies.org/format.html): ``#`` comment lines, then one line per
word with 10 tab-separated fields ``ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC``; a blank
line ends each sentence. Multiword-token lines (ID ``3-4``) and empty nodes (ID ``8.1``) carry no
tag of their own and are skipped, so the words are the syntactic words, numbered 1, 2, 3, ...

A small parser of our own rather than the ``conllu`` library's ``parse_incr``: it tells which line of
the file is wrong, which the library does not.
"""
from __future__ import annotations

import re
from typing import Iterator, NamedTuple

from .errors import DataFormatError
from .text import PathType, iter_numbered_lines

COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
WORD_ID = re.compile(r"[1-9][0-9]*")
MULTIWORD_ID = re.compile(r"[1-9][0-9]*-[1-9][0-9]*")
EMPTY_NODE_ID = re.compile(r"[0-9]+\.[1-9][0-9]*")


class TaggedSentence(NamedTuple):
    """One sentence: its words and one tag per word (``len(words) == len(tags)``)."""
    words: list[str]
    tags: list[str]


def iter_conllu(path: PathType, column: str = "upos") -> Iterator[TaggedSentence]:
    """Yield each sentence of a CoNLL-U file as its word forms and the tags of ``column``.

    Args:
        path: a ``.conllu`` file (or ``.conllu.gz``).
        column: which field gives the tags: ``"upos"`` (17 universal tags), ``"xpos"`` (the treebank's
            own, PTB tags for English), or any other column name of ``COLUMNS`` (``"deprel"``, ...).

    Raises:
        DataFormatError: a word line without 10 tab-separated fields, with an ID that is not a word
            number, a range or a decimal, or whose word numbers do not run 1, 2, 3, ... in its sentence.
    """
    if column not in COLUMNS[1:]:
        raise ValueError(f"column must be one of {COLUMNS[1:]}, got {column!r}")
    tag_field = COLUMNS.index(column)
    numbered = iter_numbered_lines(path)

    def sentences() -> Iterator[TaggedSentence]:
        words: list[str] = []
        tags: list[str] = []
        for line_number, line in numbered:
            if not line.strip():
                if words:
                    yield TaggedSentence(words, tags)
                    words, tags = [], []
                continue
            if line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != len(COLUMNS):
                raise DataFormatError(path, line_number, f"{len(fields)} tab-separated fields "
                                                         f"({len(COLUMNS)} expected: {' '.join(COLUMNS).upper()})")
            word_id = fields[0]
            if MULTIWORD_ID.fullmatch(word_id) or EMPTY_NODE_ID.fullmatch(word_id):
                continue
            if not WORD_ID.fullmatch(word_id) or int(word_id) != len(words) + 1:
                raise DataFormatError(path, line_number, f"word ID {word_id!r} (expected {len(words) + 1}: "
                                                         "word IDs run 1, 2, 3, ... in each sentence)")
            words.append(fields[1])
            tags.append(fields[tag_field])
        if words:                                # the last sentence may lack its blank line
            yield TaggedSentence(words, tags)
    return sentences()


def read_conllu(path: PathType, column: str = "upos") -> list[TaggedSentence]:
    return list(iter_conllu(path, column=column))
