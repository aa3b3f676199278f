"""Errors raised for user mistakes.

User-facing errors name the file and what is wrong with it; the command line prints
their message without a traceback (see ``vit_facemap.cli``).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class DataError(ValueError):
    """Bad input data: a missing or corrupt file, a malformed table, inconsistent labels."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.message = message
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


# what a command line reports in one line, without a traceback (NotADirectoryError: an
# output under a path that is a file, ``--out notes.txt/run``)
USER_ERRORS: tuple[type[BaseException], ...] = (DataError, RunExistsError, FileNotFoundError,
                                                NotADirectoryError)


def _warning_line(prog: str, default: Callable[..., str]) -> Callable[..., str]:
    """Python's warning format, but one line ``prog: warning: ...`` for a DataWarning: the
    default showed the package's source file and line, and the line of code that warned
    ("  frames = load_set(args.data, decode=False)"), above a message meant for the user."""
    def line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             line: str | None = None) -> str:
        if issubclass(category, DataWarning):
            return f"{prog}: warning: {message}\n"
        return default(message, category, filename, lineno, line)
    return line


def run_reporting(prog: str, func: Callable[[], int | None], on_interrupt: str = "") -> int:
    """``func()``'s exit status; a user mistake prints ``prog: error: ...`` and gives 2.
    ``on_interrupt`` is said after "interrupted" (Ctrl-C): how to continue the work.
    A :class:`DataWarning` prints as ``prog: warning: ...``."""
    try:
        # set for this command only: catch_warnings does not restore formatwarning, and each
        # command run in one process (the tests, a notebook) wrapped the format again
        default = warnings.formatwarning
        warnings.formatwarning = _warning_line(prog, default)
        try:
            status = int(func() or 0)
        finally:
            warnings.formatwarning = default
        sys.stdout.flush()  # a reader gone is found here, not in Python's flush at exit
        return status
    except USER_ERRORS as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted{'; ' + on_interrupt if on_interrupt else ''}",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of the output has gone (`... | head -1`): stop quietly, as other
        # command-line tools do; what is left unwritten goes to devnull, so that the flush
        # at exit does not fail again
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is no file (captured): nothing to flush
            pass
        return 1


@contextmanager
def argument_errors(what: str = "") -> Iterator[None]:
    """Checks of the arguments: a ValueError they raise (a config's own validation, say) is a
    user mistake, reported in one line; later, a ValueError is a bug and keeps its traceback
    (as does a TypeError anywhere: unknown keys are found by :func:`check_keys` first)."""
    try:
        yield
    except DataError:
        raise
    except ValueError as exc:
        raise DataError(f"{what}{': ' if what else ''}{first_line(exc)}") from None


def check_keys(cls: type, keys: list[str] | tuple[str, ...] | set[str], what: str) -> None:
    """A DataError naming the valid keys when ``keys`` holds one that is not a field of the
    dataclass ``cls`` (``replace`` and ``cls(**kw)`` would raise a bare TypeError)."""
    from dataclasses import fields

    valid = [f.name for f in fields(cls)]
    unknown = [k for k in keys if k not in valid]
    if unknown:
        raise DataError(f"unknown {what} {', '.join(map(repr, unknown))}; valid keys: "
                        f"{', '.join(valid)}")
