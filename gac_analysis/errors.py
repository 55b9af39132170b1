"""Errors the toolkit raises for bad input.

Every user-facing failure is a :class:`GacError` whose message is one line that says
what went wrong, where, and what to do. The CLI prints that line and exits with
``exit_code`` (2 for bad input) instead of showing a traceback.
"""

from __future__ import annotations


class GacError(Exception):
    """Base class: a user-facing error with a one-line message."""

    exit_code = 2


class CheckpointError(GacError):
    """A checkpoint file is missing, unreadable, unsafe, or does not fit the model."""


class TimeStepsUnknownError(CheckpointError):
    """A checkpoint does not fix the number of time steps T (direct coding: no TA weights) and none was given."""


class ModelForwardError(GacError):
    """A user's model raised in its forward on the data (a shape it does not take, a bug of its own)."""


class DataError(GacError):
    """A data source is unknown, missing, empty, or yields malformed images."""


class EnergyTableError(GacError):
    """An energy cost table is unknown or malformed."""


class ReportError(GacError):
    """A run folder or report file is unreadable or of another schema."""


class ConfigError(GacError):
    """A configuration file (budget, sweep) is malformed."""


class GacWarning(UserWarning):
    """A result the tool stands behind, with something the user should know (the CLI prints it as one
    ``warning:`` line)."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), for a one-line error."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else "(no message)")[:200]
