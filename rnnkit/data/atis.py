"""ATIS slot filling and intent detection: the line-aligned ``seq.in`` / ``seq.out`` / ``label`` files.

The split of Goo et al. (2018), "Slot-Gated Modeling for Joint Slot Filling and Intent Prediction",
NAACL: in each split folder, ``seq.in`` holds the lower-cased words of an utterance, ``seq.out`` one
BIO slot tag per word, and ``label`` the intent (multi-intent utterances join intents with ``#``,
``atis_flight#atis_airfare``). Line k of each file belongs to utterance k.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, NamedTuple

from .errors import DataFormatError
from .text import PathType, iter_aligned_lines

FILES = ("seq.in", "seq.out", "label")


class AtisUtterance(NamedTuple):
    """One utterance: its words, one BIO slot tag per word, and its intent label."""
    words: list[str]
    tags: list[str]
    intent: str

    @property
    def intents(self) -> list[str]:
        """The intent split at ``#`` (one entry for a single intent)."""
        return self.intent.split("#")


def iter_atis(folder: PathType) -> Iterator[AtisUtterance]:
    """Yield each utterance of an ATIS split folder (``seq.in``, ``seq.out``, ``label``).

    Raises:
        FileNotFoundError: naming a missing file.
        DataFormatError: naming the file and line when the files have different lengths, a line has
            no words or no intent, or the tag count of a ``seq.out`` line differs from the word count
            of the same ``seq.in`` line.
    """
    words_path, tags_path, intent_path = (Path(folder) / name for name in FILES)
    rows = iter_aligned_lines(words_path, tags_path, intent_path)

    def utterances() -> Iterator[AtisUtterance]:
        for line_number, (words_line, tags_line, intent_line) in rows:
            words, tags, intent = words_line.split(), tags_line.split(), intent_line.strip()
            if not words:
                raise DataFormatError(words_path, line_number, "no words (one utterance per line expected)")
            if len(tags) != len(words):
                raise DataFormatError(tags_path, line_number, f"{len(tags)} tags for the {len(words)} words of "
                                                              f"{words_path.name} (one BIO tag per word expected)")
            if not intent or len(intent.split()) != 1:
                raise DataFormatError(intent_path, line_number, f"intent {intent_line!r} (one intent label "
                                                                "without spaces expected)")
            yield AtisUtterance(words, tags, intent)
    return utterances()


def read_atis(folder: PathType) -> list[AtisUtterance]:
    return list(iter_atis(folder))
