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


class Diverged(UserError):
    """The user-facing end of a :class:`TrainingDiverged` run (exit code 3): the message names the
    step, the last good checkpoint and the fix; ``step`` is the step it happened at."""

    exit_code = 3

    def __init__(self, message: str, *, step: int) -> None:
        super().__init__(message)
        self.step = step


class TrainingDiverged(Exception):
    """A loss became NaN or inf; the run stopped before writing a bad checkpoint."""

    exit_code = 3


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: a checkpoint was saved at ``step``; resume with ``normgan train --resume run_dir``.

    The exit code is the shell's 128 + signal number: 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, run_dir, step: int, *, signum: int = 2) -> None:
        import signal

        name = signal.Signals(signum).name
        super().__init__(f"{name} at step {step}: checkpoint saved, continue with: normgan train --resume {run_dir}")
        self.run_dir, self.step, self.signum = run_dir, step, signum
        self.exit_code = 128 + signum


class SignalExit(BaseException):
    """Stop at once on a signal (a second Ctrl-C, SIGTERM during start-up); ``str`` is the one-line message.

    A BaseException like KeyboardInterrupt, so that no ``except Exception`` swallows it; cleanup code
    (``finally``, temporary checkpoint files) still runs.
    """

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
