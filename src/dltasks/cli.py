"""``dlt``: the task collection as a console script, for projects with no tasks.py at all.

Start-up matters here (every ``dlt train`` pays it before the container starts). invoke
imports two things eagerly that a run never uses: ``unittest.mock`` (and through it asyncio
and ssl), only for ``MockContext``, and its vendored YAML parser, only for YAML config files.
About 40 ms of each command on the machines we measured. ``dlt`` imports invoke with both
deferred: each is imported for real the first time something of it is used (a MockContext
made, a YAML config file read), and nothing of the stand-ins stays in ``sys.modules``.
``inv`` and ``fab`` import invoke themselves, before any of our code, and are unchanged.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_DEFERRED = ("unittest.mock", "invoke.vendor.yaml")


class _Deferred(types.ModuleType):
    """Stands in for a module; the real one is imported when an attribute is asked for."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):  # the import system probing (__path__...): not a use
            raise AttributeError(attr)
        return getattr(_real(self.__name__), attr)


def _real(name: str) -> types.ModuleType:
    if isinstance(sys.modules.get(name), _Deferred):
        del sys.modules[name]
    return importlib.import_module(name)


def _mock(*args: Any, **kwargs: Any) -> Any:
    """``unittest.mock.Mock`` for invoke.context, imported on the first call."""
    return _real("unittest.mock").Mock(*args, **kwargs)


def _import_invoke_deferring() -> None:
    if "invoke" in sys.modules or any(name in sys.modules for name in _DEFERRED):
        return  # imported already (tests, an embedding program): nothing to win
    stubs = {name: _Deferred(name) for name in _DEFERRED}
    stubs["unittest.mock"].Mock = _mock  # type: ignore[attr-defined]
    sys.modules.update(stubs)
    try:
        import invoke.program  # noqa: F401
    finally:
        for name, stub in stubs.items():
            if sys.modules.get(name) is stub:
                del sys.modules[name]


_import_invoke_deferring()

from invoke.program import Program  # noqa: E402

from dltasks import __version__  # noqa: E402
from dltasks.tasks import ns  # noqa: E402


class DltProgram(Program):
    """invoke's Program, remembering the argv it was given (``program.run([...])`` from
    Python gives one that is not ``sys.argv``): `train -- ARGS` reads its arguments there."""

    def normalize_argv(self, argv: list[str] | None) -> None:
        super().normalize_argv(argv)
        from dltasks.tasks import _common

        _common.PROGRAM_ARGV[:] = list(self.argv)


program = DltProgram(namespace=ns, name="dlt", binary="dlt", version=__version__)
