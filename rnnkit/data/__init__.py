"""Data: readers for the standard formats (each error names file and line), vocabularies, batches."""
from .errors import DataFormatError
from .vocab import BOS, EOS, PAD, UNK, Vocabulary

__all__ = ["DataFormatError", "Vocabulary", "PAD", "UNK", "BOS", "EOS"]
