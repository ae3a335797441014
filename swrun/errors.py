"""Errors a user can cause, each with the exit code the CLI maps it to.

Anything that is not a SwrunError is a bug in swrun and keeps its traceback.
"""

from __future__ import annotations


class SwrunError(Exception):
    """A problem the user can fix; printed as one line, never a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def line(self) -> str:
        text = " ".join(str(self).split())
        return f"{text} ({self.hint})" if self.hint else text


class UsageError(SwrunError):
    """Bad arguments or parameters."""

    exit_code = 2


class ProjectError(SwrunError):
    """The Alembic project cannot be loaded: missing alembic.ini, broken migration file, ..."""

    exit_code = 3


class DatabaseError(SwrunError):
    """The database cannot be reached or used: host down, wrong password, no such database."""

    exit_code = 4


class StateError(SwrunError):
    """The database and the migration files disagree: two heads, unknown revision, ..."""

    exit_code = 5


class LockTimeout(SwrunError):
    """Another swrun run holds the database's migration lock."""

    exit_code = 6


class BackupError(SwrunError):
    """The backup could not be taken or checked."""

    exit_code = 7


class MigrationFailed(SwrunError):
    """A revision failed while being applied."""

    exit_code = 8

    def __init__(self, message: str, *, revision: str | None = None, current: tuple[str, ...] = (), hint: str | None = None):
        super().__init__(message, hint=hint)
        self.revision = revision
        self.current = current


class StepFailed(SwrunError):
    """A runbook step failed; the record of the run is written all the same."""

    exit_code = 9

    def __init__(self, message: str, *, step: str | None = None, record: str | None = None):
        super().__init__(message)
        self.step = step
        self.record = record
