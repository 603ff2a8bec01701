"""The one exception type a user may see, always as a single line that names the fix."""

from __future__ import annotations


class DltError(Exception):
    """A failure the user can act on.

    The task layer prints ``message`` on one line (no traceback) and exits with ``code``.
    Write messages as: what went wrong, then the fix ("... : run `inv setup`").
    """

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message
