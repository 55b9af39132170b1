"""Shared CLI plumbing: one-line errors with exit codes, never a traceback."""

from __future__ import annotations

import functools
import sys

import typer
from rich.console import Console

from gac_analysis.errors import GacError

console = Console()
err_console = Console(stderr=True)


def handles_errors(fn):
    """Turn a :class:`GacError` into ``error: <message>`` on stderr and its exit code (2 for bad input)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GacError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=e.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted", highlight=False)
            raise typer.Exit(code=130) from None

    return wrapper


def fail(message: str, code: int = 2):
    """Print one error line and exit."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=code)


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()
