"""The exception types a user may see, always as a single line that names the fix.

One type per kind of failure (as docker-py's ``docker/errors.py`` keeps a small taxonomy): code
that must tell failures apart (a run's record says "connection lost", a multi-host report)
decides by type, never by reading the message.
"""

from __future__ import annotations


class DltError(Exception):
    """A failure the user can act on.

    The task layer prints ``message`` on one line (no traceback) and exits with ``code``.
    Write messages as: what went wrong, then the fix ("... : run `inv setup`"); the task layer
    spells such hints for the program the user ran (`dlt setup`, `fab -H gpu1 setup`).
    """

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message


class SettingsError(DltError):
    """A setting (.env, the ``dlt`` config section, a flag) has a value that cannot be used."""


class EngineFailure(DltError):
    """The Docker engine could not be reached, or refused or failed what was asked of it."""


class ConnectionLost(DltError):
    """The SSH connection to a host died; what runs there goes on (reattach with `logs`)."""


class ClusterError(DltError):
    """A job across hosts or a Slurm cluster could not be set up, run or reached."""


class LostNote(str):
    """What the far side of an engine forward saw, when it was the SSH connection dying: an
    engine error with this note is a :class:`ConnectionLost` too."""
