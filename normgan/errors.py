"""Errors that the user can fix.

Every problem caused by input (config, files, command-line arguments) raises a
:class:`UserError` whose message is one line naming the problem and the fix.
The CLI prints ``normgan: error: <message>`` and exits with code 2, without a
traceback.  Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; the message says what and how to fix it."""

    exit_code = 2


class ConfigError(UserError):
    """An invalid configuration key or value."""


class DataError(UserError):
    """A missing, empty or unreadable dataset."""


class TrainingDiverged(Exception):
    """A loss became NaN or inf; the run stopped before writing a bad checkpoint."""

    exit_code = 3
