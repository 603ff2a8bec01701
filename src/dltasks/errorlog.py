"""Errors nobody foresaw: one line for the user, the traceback in a log file (as pre-commit's
``error_handler`` does), never a bare traceback on the terminal."""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from .errors import DltError


def log_path() -> Path:
    """``$XDG_CACHE_HOME/dltasks/error.log`` (default ``~/.cache/dltasks/error.log``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dltasks" / "error.log"


def unexpected(err: BaseException) -> DltError:
    """``err`` as a one-line DltError; its traceback appended to :func:`log_path`."""
    from . import __version__

    first = (str(err).strip().splitlines() or [""])[0][:200]
    what = f"{type(err).__name__}: {first}" if first else type(err).__name__
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} dltasks {__version__} "
                    f"python {sys.version.split()[0]}\n")
            f.write(f"argv: {sys.argv!r}\n")
            f.write("".join(traceback.format_exception(type(err), err, err.__traceback__)))
        where = f"the traceback is in {path}"
    except OSError as e:
        where = f"its traceback could not be written to {path} ({e.strerror})"
    return DltError(f"unexpected error: {what} ({where}; please report it)")
