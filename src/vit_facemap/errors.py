"""Errors raised for user mistakes.

User-facing errors name the file and what is wrong with it; the command line prints
their message without a traceback (see ``vit_facemap.cli``).
"""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input data: a missing or corrupt file, a malformed table, inconsistent labels."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type when it has none), for a one-line
    error that wraps a library's long one. HDF5's messages open with a banner ("HDF5 error
    back trace") and end with the cause: for those, the last line."""
    lines = [s for s in str(exc).strip().splitlines() if s.strip()]
    if not lines:
        return type(exc).__name__
    line = lines[-1] if "back trace" in lines[0] else lines[0]
    return line.strip()[:limit]


def not_utf8(exc: UnicodeDecodeError, path: str | Path) -> DataError:
    """The error for a table that is not UTF-8 text (saved as Latin-1 by a spreadsheet, say)."""
    return DataError(f"not UTF-8 text (byte {exc.start}); save the table as UTF-8 CSV", path)


class DataWarning(UserWarning):
    """Something odd in the input that does not stop a run (a frame with no labels)."""


class RunExistsError(FileExistsError):
    """An output (run directory, traces file) exists and overwriting was not asked for."""

    def __init__(self, path: str | Path, hint: str = "pass --overwrite to replace it") -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: already exists; {hint}")
