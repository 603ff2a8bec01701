"""``dlt``: the task collection as a console script, for projects with no tasks.py at all."""

from __future__ import annotations

from invoke.program import Program

from . import __version__
from .tasks import ns

program = Program(namespace=ns, name="dlt", binary="dlt", version=__version__)
