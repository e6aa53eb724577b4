"""How the command reports what the user got wrong: one line on stderr, a non-zero exit, no traceback.

* Malformed flags (an unknown option, a value of the wrong type, a missing argument) are click's usage
  errors, exit status 2; ``OneLineGroup`` prints them as ``Error: ... (see 'rnnkit train --help')``
  instead of click's three-line usage block.
* What the library refuses (``ValueError`` and ``TypeError`` with their subclasses: a malformed record,
  ``rnnkit.data.errors.DataFormatError`` as ``FILE:LINE: ...``; a damaged or foreign checkpoint,
  ``rnnkit.train.checkpoint.CheckpointError``; an unknown option) and files that cannot be read or
  written end under ``user_errors`` with exit status 1.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import click


class _OneLineUsageError(click.UsageError):
    """A usage error shown as one line that points to the command's --help."""

    def show(self, file=None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        click.echo(f"Error: {one_line(self.format_message())}{hint}", err=True, file=file)


@contextlib.contextmanager
def _one_line_usage() -> Iterator[None]:
    try:
        yield
    except click.exceptions.NoArgsIsHelpError:     # `rnnkit diagnose` alone: show the help
        raise
    except click.UsageError as error:
        if isinstance(error, _OneLineUsageError):
            raise
        raise _OneLineUsageError(error.format_message(), error.ctx) from None


class OneLineGroup(click.Group):
    """A click group whose usage errors, its subcommands' included, are one line on stderr."""

    def make_context(self, *args, **kwargs) -> click.Context:
        with _one_line_usage():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context):
        with _one_line_usage():
            return super().invoke(ctx)


def one_line(text: str) -> str:
    """``text`` with every run of whitespace, newlines included, as one space."""
    return " ".join(str(text).split())


@contextlib.contextmanager
def user_errors(writing: Path | None = None) -> Iterator[None]:
    """Turn what the library rejects, and files that cannot be read or written, into one line on stderr
    and exit status 1. ``writing``: the output file the command writes, named when an OSError has no
    file of its own. With the environment variable ``RNNKIT_TRACEBACK=1`` the error propagates with its
    traceback instead (for a bug report: a TypeError can also be a bug of rnnkit's)."""
    if os.environ.get("RNNKIT_TRACEBACK") == "1":
        yield
        return
    try:
        yield
    except OSError as error:
        raise click.ClickException(_os_error_message(error, writing)) from None
    except UnicodeDecodeError as error:
        raise click.ClickException(f"input is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except (ValueError, TypeError, FloatingPointError) as error:
        raise click.ClickException(one_line(error)) from None


def _os_error_message(error: OSError, writing: Path | None) -> str:
    reason = error.strerror or one_line(error)
    if writing is not None and (error.filename is None or Path(error.filename) == writing):
        return f"cannot write {str(writing)!r}: {reason}"
    if error.filename is not None:
        return f"{error.filename}: {reason}"
    return reason


def check_png_path(out: Path, option: str = "--out") -> None:
    """Fail before any work when ``out`` cannot be written as a PNG."""
    if out.suffix.lower() != ".png":
        raise click.ClickException(f"{option} must name a .png file, got {str(out)!r}")
    check_writable(out)


def check_writable(out: Path) -> None:
    """Fail before any work when the file ``out`` cannot be written."""
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise click.ClickException(f"cannot write {str(out)!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise click.ClickException(f"cannot write {str(out)!r}: permission denied")
