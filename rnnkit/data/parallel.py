"""Parallel text for translation: two line-aligned files, or one file of tab-separated pairs.

* Multi30k (Elliott et al. 2016, "Multi30K: Multilingual English-German Image Descriptions",
  arXiv:1605.00459): ``train.en.gz`` / ``train.de.gz``, one raw sentence per line, line k of one the
  translation of line k of the other.
* Tatoeba / manythings.org ``fra.txt``: ``English<TAB>French`` per line (newer files add a third,
  attribution column, which is ignored).

Sentences are raw text; ``simple_tokenize`` splits words from punctuation, which is all the models need
(BLEU is computed by sacrebleu on detokenised text, with its own tokeniser).
"""
from __future__ import annotations

import re
from typing import Callable, Iterator, NamedTuple

from .errors import DataFormatError
from .text import PathType, iter_aligned_lines, iter_nonblank_lines

# A number with inner separators (3.5, 1,000), a word with inner apostrophes or hyphens (don't,
# aujourd'hui, re-imagining), or any single other non-space character (punctuation, symbols).
# \w and \s are Unicode-aware: accented letters stay in words, U+202F (French "Cours !") is a space.
TOKEN = re.compile(r"\d+(?:[.,]\d+)+|\w+(?:[-'’]\w+)*|[^\w\s]")

Tokenizer = Callable[[str], list[str]]


def simple_tokenize(text: str) -> list[str]:
    """Split ``text`` into words and punctuation: ``"Don't go, Mr. Smith!"`` →
    ``["Don't", "go", ",", "Mr", ".", "Smith", "!"]``."""
    return TOKEN.findall(text)


class SentencePair(NamedTuple):
    """A source sentence and its translation, as token lists."""
    source: list[str]
    target: list[str]


def make_pair(source: str, target: str, tokenize: Tokenizer, lowercase: bool) -> SentencePair:
    """Tokenise both sides, lower-cased first when asked."""
    if lowercase:
        source, target = source.lower(), target.lower()
    return SentencePair(tokenize(source), tokenize(target))


def iter_parallel(source_path: PathType, target_path: PathType, tokenize: Tokenizer = simple_tokenize,
                  lowercase: bool = False) -> Iterator[SentencePair]:
    """Yield a SentencePair per line of two line-aligned files (each may be gzipped).

    Raises:
        DataFormatError: when the files have different lengths (naming the shorter file and the line
            it lacks) or when a line has no tokens on one side (naming that file and line).
    """
    rows = iter_aligned_lines(source_path, target_path)

    def pairs() -> Iterator[SentencePair]:
        for line_number, (source, target) in rows:
            pair = make_pair(source, target, tokenize, lowercase)
            if not pair.source or not pair.target:
                empty = source_path if not pair.source else target_path
                raise DataFormatError(empty, line_number, "empty sentence (one sentence per line expected)")
            yield pair
    return pairs()


def read_parallel(source_path: PathType, target_path: PathType, tokenize: Tokenizer = simple_tokenize,
                  lowercase: bool = False) -> list[SentencePair]:
    return list(iter_parallel(source_path, target_path, tokenize=tokenize, lowercase=lowercase))


def iter_pair_tsv(path: PathType, tokenize: Tokenizer = simple_tokenize, lowercase: bool = False,
                  reverse: bool = False) -> Iterator[SentencePair]:
    """Yield a SentencePair per ``source<TAB>target`` line (Tatoeba's ``English<TAB>French``).

    ``reverse=True`` swaps the columns (French → English). Fields after the second are ignored; blank
    lines are skipped; a line with fewer than 2 fields or an empty side raises DataFormatError.
    """
    numbered = iter_nonblank_lines(path)

    def pairs() -> Iterator[SentencePair]:
        for line_number, line in numbered:
            fields = line.split("\t")
            if len(fields) < 2:
                raise DataFormatError(path, line_number, f"{len(fields)} tab-separated field "
                                                         "(source<TAB>target expected)")
            source, target = (fields[1], fields[0]) if reverse else (fields[0], fields[1])
            pair = make_pair(source, target, tokenize, lowercase)
            if not pair.source or not pair.target:
                raise DataFormatError(path, line_number, "an empty side (source<TAB>target expected, "
                                                         "both non-empty)")
            yield pair
    return pairs()


def read_pair_tsv(path: PathType, tokenize: Tokenizer = simple_tokenize, lowercase: bool = False,
                  reverse: bool = False) -> list[SentencePair]:
    return list(iter_pair_tsv(path, tokenize=tokenize, lowercase=lowercase, reverse=reverse))
