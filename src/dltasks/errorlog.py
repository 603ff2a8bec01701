"""Errors nobody foresaw: one line for the user, the traceback in a log file (as pre-commit's
``error_handler`` does), never a bare traceback on the terminal.

The log is private to its user (0600) and, like everything dltasks writes, holds no secret:
the values of secret-looking variables of the environment and of the project's ``.env`` files,
and every URL's password, are masked in the line and in the log.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from dltasks.errors import DltError


def log_path() -> Path:
    """``$XDG_CACHE_HOME/dltasks/error.log`` (default ``~/.cache/dltasks/error.log``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dltasks" / "error.log"


def known_secrets(folder: Path | None = None) -> list[str]:
    """Secret values this process may know: the environment's and the ``.env*`` files' of
    ``folder`` (default: the current folder). Never fails."""
    from dltasks.settings.masking import secret_values

    values: dict[str, str] = dict(os.environ)
    try:
        from dotenv import dotenv_values

        base = folder or Path.cwd()
        for f in sorted(base.glob(".env*")):
            if f.is_file():
                values.update({f"{f.name}:{k}": v or "" for k, v in dotenv_values(f).items()})
    except Exception:  # noqa: BLE001 - masking must never be why an error report fails
        pass
    return secret_values(values)


def unexpected(err: BaseException) -> DltError:
    """``err`` as a one-line DltError; its traceback appended to :func:`log_path`."""
    from dltasks import __version__
    from dltasks.settings.masking import scrub

    secrets = known_secrets()
    first = scrub((str(err).strip().splitlines() or [""])[0][:200], secrets)
    what = f"{type(err).__name__}: {first}" if first else type(err).__name__
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)  # a log made before this rule may have been readable by others
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} dltasks {__version__} "
                    f"python {sys.version.split()[0]}\n")
            f.write(scrub(f"argv: {sys.argv!r}\n", secrets))
            f.write(scrub("".join(traceback.format_exception(type(err), err,
                                                             err.__traceback__)), secrets))
        where = f"the traceback is in {path}"
    except OSError as e:
        where = f"its traceback could not be written to {path} ({e.strerror})"
    return DltError(f"unexpected error: {what} ({where}; please report it)")
