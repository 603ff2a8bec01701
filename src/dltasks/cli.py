"""``dlt``: the task collection as a console script, for projects with no tasks.py at all."""

from __future__ import annotations

from invoke.program import Program

from dltasks import __version__
from dltasks.tasks import ns


class DltProgram(Program):
    """invoke's Program, remembering the argv it was given (``program.run([...])`` from
    Python gives one that is not ``sys.argv``): `train -- ARGS` reads its arguments there."""

    def normalize_argv(self, argv: list[str] | None) -> None:
        super().normalize_argv(argv)
        from dltasks.tasks import _common

        _common.PROGRAM_ARGV[:] = list(self.argv)


program = DltProgram(namespace=ns, name="dlt", binary="dlt", version=__version__)


def main() -> None:
    """The ``dlt`` console script (and ``python -m dltasks``)."""
    program.run()
