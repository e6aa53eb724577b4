"""Plain text, line by line: opening files (gzip-transparent), and the language-modelling conventions.

Every reader in ``rnnkit.data`` reads through :func:`iter_numbered_lines`, so all of them

* stream: one line in memory at a time (only :func:`read_characters` holds a whole file);
* read ``.gz`` paths through gzip;
* split lines on ``\\n`` only and drop the line ending (``\\n`` or ``\\r\\n``), so a stray ``\\r`` or
  Unicode line separator inside a sentence stays inside it;
* raise ``FileNotFoundError`` naming the file when it is called (not at the first ``next``), and
  :class:`~rnnkit.data.errors.DataFormatError` with ``FILE:LINE`` on bytes that are not UTF-8.

Language-modelling conventions:

* PTB word level (Mikolov; Zaremba et al. 2014, arXiv:1409.2329): one sentence per line, tokens split
  by whitespace, ``<eos>`` appended at each line end (:func:`iter_word_lines`).
* PTB character level (``ptb.char.*``): space-separated symbols, ``_`` marks a word boundary
  (:func:`iter_char_tokens`).
* tinyshakespeare (Karpathy's char-rnn): the raw characters, split 90 % / 10 % by position
  (:func:`read_characters`, :func:`split_by_fraction`).
"""
from __future__ import annotations

import gzip
import math
from os import PathLike
from pathlib import Path
from typing import IO, Iterator, Sequence, TypeVar

from .errors import DataFormatError
from .vocab import EOS

PathType = str | PathLike
Item = TypeVar("Item")


def existing_file(path: PathType) -> Path:
    """``path`` as a Path, or ``FileNotFoundError`` naming it when no such file exists."""
    found = Path(path)
    if not found.is_file():
        raise FileNotFoundError(f"no such data file: {str(found)!r}")
    return found


def open_binary(path: PathType) -> IO[bytes]:
    """Open ``path`` for reading bytes, through gzip when its name ends in ``.gz``."""
    found = existing_file(path)
    return gzip.open(found, "rb") if found.suffix == ".gz" else open(found, "rb")


def decode_line(raw: bytes, path: PathType, line_number: int) -> str:
    """One line's bytes as text, without its ``\\n`` / ``\\r\\n``; DataFormatError if not UTF-8."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataFormatError(path, line_number, f"not UTF-8 at byte {error.start} of the line "
                                                 f"(UTF-8 text expected)") from None
    if text.endswith("\n"):
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    return text


def iter_numbered_lines(path: PathType) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for every line of ``path`` (numbers from 1, endings dropped)."""
    found = existing_file(path)                  # checked now, not at the first next()

    def lines() -> Iterator[tuple[int, str]]:
        with open_binary(found) as stream:
            for line_number, raw in enumerate(stream, start=1):
                yield line_number, decode_line(raw, found, line_number)
    return lines()


def iter_lines(path: PathType) -> Iterator[str]:
    """Yield every line of ``path`` as text, without its line ending (gzip-transparent)."""
    return (text for _, text in iter_numbered_lines(path))


def iter_nonblank_lines(path: PathType) -> Iterator[tuple[int, str]]:
    """Like :func:`iter_numbered_lines`, without the lines that hold only whitespace."""
    return ((line_number, text) for line_number, text in iter_numbered_lines(path) if text.strip())


def iter_aligned_lines(*paths: PathType) -> Iterator[tuple[int, tuple[str, ...]]]:
    """Yield ``(line_number, (line of paths[0], line of paths[1], ...))`` over line-aligned files.

    Files of different lengths raise DataFormatError naming the shorter file at the line it lacks,
    and the longer file, when the shorter one ends.
    """
    readers = [iter_numbered_lines(path) for path in paths]

    def rows() -> Iterator[tuple[int, tuple[str, ...]]]:
        line_number = 0
        while True:
            line_number += 1
            row = [next(reader, None) for reader in readers]
            ended = [path for path, item in zip(paths, row) if item is None]
            if len(ended) == len(paths):
                return
            if ended:
                longer = next(path for path, item in zip(paths, row) if item is not None)
                raise DataFormatError(ended[0], line_number, f"file ends after {line_number - 1} lines, but "
                                                             f"{str(longer)!r} has more (line-aligned files "
                                                             "of equal length expected)")
            yield line_number, tuple(text for _, text in row)
    return rows()


def read_lines(path: PathType) -> list[str]:
    return list(iter_lines(path))


def read_characters(path: PathType) -> str:
    """The whole file as one string, line endings kept as they are (char-level language modelling)."""
    with open_binary(path) as stream:
        data = stream.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line_number = data.count(b"\n", 0, error.start) + 1
        raise DataFormatError(path, line_number, "not UTF-8 (UTF-8 text expected)") from None


def iter_word_lines(path: PathType, eos: bool = True) -> Iterator[list[str]]:
    """Yield each line's whitespace-separated tokens, with ``"<eos>"`` appended when ``eos`` (PTB)."""
    ending = [EOS] if eos else []
    return (text.split() + ending for text in iter_lines(path))


def read_word_lines(path: PathType, eos: bool = True) -> list[list[str]]:
    return list(iter_word_lines(path, eos=eos))


def iter_char_tokens(path: PathType, eos: bool = False) -> Iterator[list[str]]:
    """Yield each line of a PTB ``ptb.char.*`` file as its symbols: single characters, ``_`` for a
    word boundary (``<unk>`` is spelled ``< u n k >``); ``"<eos>"`` appended when ``eos``.

    Blank lines are skipped: the files end with ``" \\n "``, whose last "line" is a lone space.
    """
    ending = [EOS] if eos else []
    return (symbols + ending for symbols in map(str.split, iter_lines(path)) if symbols)


def read_char_tokens(path: PathType, eos: bool = False) -> list[list[str]]:
    return list(iter_char_tokens(path, eos=eos))


def split_by_fraction(sequence: Sequence[Item], fractions: Sequence[float] = (0.9, 0.1)) -> list[Sequence[Item]]:
    """Cut ``sequence`` by position into consecutive pieces of the given fractions (which sum to 1).

    Piece k runs from ``int(n · (f_1 + … + f_{k-1}))`` to ``int(n · (f_1 + … + f_k))``, the last to the
    end: for (0.9, 0.1) that is nanoGPT's ``data[:int(n*0.9)], data[int(n*0.9):]``.
    """
    if not fractions or any(not isinstance(f, (int, float)) or f <= 0 for f in fractions) \
            or not math.isclose(sum(fractions), 1.0, abs_tol=1e-9):
        raise ValueError(f"fractions must be positive numbers summing to 1, got {tuple(fractions)!r}")
    n, bounds, total = len(sequence), [0], 0.0
    for fraction in fractions[:-1]:
        total += fraction
        bounds.append(int(n * total))
    bounds.append(n)
    return [sequence[start:stop] for start, stop in zip(bounds, bounds[1:])]
