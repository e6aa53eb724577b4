"""Vocabularies: symbols to ids and back, built from counts, saved with the model as plain JSON."""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"


class Vocabulary:
    """An ordered list of symbols: the specials first, then the kept symbols by falling frequency.

    Args:
        symbols: every symbol, specials included, in id order.
        unknown: the symbol unknown ones map to (``"<unk>"``); None to refuse unknown symbols
            (label sets where an unseen label is an error).

    Attributes:
        pad_index: the id of ``"<pad>"`` when the vocabulary has it, else None.
    """

    def __init__(self, symbols: Sequence[str], unknown: str | None = UNK) -> None:
        self.symbols = list(symbols)
        self.index = {symbol: i for i, symbol in enumerate(self.symbols)}
        if len(self.index) != len(self.symbols):
            duplicates = sorted({s for s in self.symbols if self.symbols.count(s) > 1})
            raise ValueError(f"symbols must be distinct; repeated: {duplicates[:5]}")
        if unknown is not None and unknown not in self.index:
            raise ValueError(f"unknown symbol {unknown!r} is not among the symbols")
        self.unknown = unknown
        self.unk_index = self.index[unknown] if unknown is not None else None
        self.pad_index = self.index.get(PAD)

    @classmethod
    def build(cls, sequences: Iterable[Iterable[str]], *, min_freq: int = 1, max_size: int | None = None,
              specials: Sequence[str] = (PAD, UNK), unknown: str | None = UNK) -> "Vocabulary":
        """Count the symbols of ``sequences`` (read once, so a generator over a large file works) and
        keep those seen at least ``min_freq`` times, the most frequent first (ties: first seen first),
        at most ``max_size`` besides the specials."""
        if isinstance(min_freq, bool) or not isinstance(min_freq, int) or min_freq < 1:
            raise ValueError(f"min_freq must be a positive int, got {min_freq!r}")
        counts: Counter[str] = Counter()
        for sequence in sequences:
            counts.update(sequence)
        kept = [s for s, n in counts.most_common() if n >= min_freq and s not in specials]
        if max_size is not None:
            kept = kept[:max_size]
        return cls([*specials, *kept], unknown=unknown)

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self.index

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and (self.symbols, self.unknown) == (other.symbols, other.unknown)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} symbols, unknown={self.unknown!r})"

    def id(self, symbol: str) -> int:
        found = self.index.get(symbol, self.unk_index)
        if found is None:
            raise KeyError(f"symbol {symbol!r} is not in the vocabulary, which has no unknown symbol "
                           f"(known: {self.symbols[:10]}{' ...' if len(self) > 10 else ''})")
        return found

    def encode(self, symbols: Iterable[str]) -> list[int]:
        return [self.id(s) for s in symbols]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.symbols[int(i)] for i in ids]

    def to_dict(self) -> dict:
        """A JSON-ready description; ``Vocabulary.from_dict`` rebuilds an equal vocabulary."""
        return {"symbols": list(self.symbols), "unknown": self.unknown}

    @classmethod
    def from_dict(cls, data: dict) -> "Vocabulary":
        if not isinstance(data, dict) or not isinstance(data.get("symbols"), list) \
                or not all(isinstance(s, str) for s in data["symbols"]):
            raise ValueError("a vocabulary must be a dict with 'symbols': a list of strings "
                             "(and 'unknown': a string or null)")
        return cls(data["symbols"], unknown=data.get("unknown"))
