"""``dlt``: the task collection as a console script, for projects with no tasks.py at all."""

from __future__ import annotations

from invoke.parser import Parser
from invoke.program import Program

from dltasks import __version__
from dltasks.tasks import ns


class DltProgram(Program):
    """invoke's Program, keeping the invocation it parses (``program.run([...])`` from Python
    gives an argv that is not ``sys.argv``) in its config, where tasks read it
    (:mod:`dltasks.tasks.invocation`): `train -- ARGS` reads its arguments there."""

    def update_config(self, merge: bool = True) -> None:
        super().update_config(merge=merge)
        from dltasks.tasks.invocation import keep

        keep(self.config, "dlt", self.argv)

    def _make_parser(self) -> Parser:
        """invoke's parser, where a task's host word is a positional word (`dlt context
        gpu1`): this program takes no -H, so a task naming a host always needs one."""
        from dltasks.tasks._common import host_words_positional

        unknown_help = self.config.tasks.ignore_unknown_help
        contexts = self.collection.to_contexts(ignore_unknown_help=unknown_help)
        return Parser(initial=self.initial_context,
                      contexts=host_words_positional(contexts, self.collection, unknown_help))


program = DltProgram(namespace=ns, name="dlt", binary="dlt", version=__version__)


def main() -> None:
    """The ``dlt`` console script (and ``python -m dltasks``)."""
    program.run()
