"""The shell programs dltasks runs on hosts (``sh -c SCRIPT NAME ARGS``), kept as ``*.sh`` files
next to this module so that they read as shell and ``shellcheck`` checks them (``dev/test``).

Each file starts with a comment block (the shellcheck directive, what the program prints, its
arguments); :func:`script` drops that header, so only the program goes over the wire. Values
travel as positional arguments, never pasted into the text.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_HERE = Path(__file__).resolve().parent


@cache
def script(name: str) -> str:
    """The program in ``<name>.sh``, without its leading comment block and final newline."""
    lines = (_HERE / f"{name}.sh").read_text(encoding="utf-8").splitlines()
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines)
