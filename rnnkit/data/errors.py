"""The one error every reader raises on a malformed record: which file, which line, what was expected."""
from __future__ import annotations

from os import PathLike


class DataFormatError(ValueError):
    """A record that does not follow its format.

    The message reads ``FILE:LINE: what is wrong (what was expected)``, so that an editor or a
    terminal can jump to it; ``path`` and ``line`` are kept as attributes for programs.
    """

    def __init__(self, path: str | PathLike | None, line: int | None, message: str) -> None:
        self.path, self.line = (str(path) if path is not None else None), line
        where = self.path or "<input>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")
