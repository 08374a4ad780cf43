"""User-facing errors: each carries a message that names the key or file:line and the fix.

User errors (bad config, bad data, bad paths) exit with code 2; anything else is a bug or a
runtime failure and exits with 1.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input; printed without a traceback, exit code 2."""

    exit_code = 2
    title = "error"

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class ConfigError(UserError):
    """One or more configuration problems, each `key: problem (allowed: ...)`."""

    title = "invalid configuration"


class DataError(UserError):
    """One or more data problems, each `file:line: problem`."""

    title = "invalid data"


class RunDirError(UserError):
    """The run directory cannot be used (exists, missing, incomplete)."""

    title = "run directory"


class DivergedError(UserError):
    """The loss became NaN or infinite; the run stops and keeps its last complete checkpoint."""

    title = "training diverged"


class StorageError(UserError):
    """A file of the run cannot be written (disk full, quota, permissions); what was written before is kept."""

    title = "cannot write"


def format_error(err: UserError, limit: int = 50) -> str:
    """Renders every problem of an error, one per line, cut after `limit` lines."""
    lines = [f"mlft: {err.title} ({len(err.problems)} problem{'s' if len(err.problems) != 1 else ''}):"]
    lines += [f"  - {p}" for p in err.problems[:limit]]
    if len(err.problems) > limit:
        lines.append(f"  ... and {len(err.problems) - limit} more")
    return "\n".join(lines)
