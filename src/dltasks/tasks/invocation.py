"""What the user ran: the program (``dlt``, ``inv`` or ``fab``), its command line and hosts.

Parsed once per program run and kept in the context's config, where every task reads it:
``dlt`` (:class:`dltasks.cli.DltProgram`) puts its own argv there as it starts; under ``inv``
and ``fab`` (invoke's and fabric's own programs, which parse ``sys.argv``) the first task to
ask parses ``sys.argv`` and keeps the result there. Hints in messages (`inv setup`) are
spelled for the program the user ran by :meth:`Invocation.render`.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

ProgramName = Literal["dlt", "inv", "fab"]

#: Where the invocation lives in a program run's config (plain data: configs are copied).
CONFIG_KEY = "dlt_invocation"

#: A hint in a message: a command of ours in backquotes, written as `inv TASK ...`.
_HINT = re.compile(r"`inv ([^`]+)`")


@dataclass(frozen=True)
class Invocation:
    """One parsed command line: which program, its words, the hosts of ``-H``, and what
    follows ``--`` (None when there is no ``--``)."""

    program: ProgramName
    argv: tuple[str, ...]
    hosts: tuple[str, ...] = ()
    remainder: tuple[str, ...] | None = None

    @property
    def several_hosts(self) -> bool:
        """Whether fab was given more than one host (``-H gpu1,gpu2``)."""
        return len(self.hosts) > 1

    def command(self, words: str, host: str = "") -> str:
        """``words`` (a task and its flags: ``setup --engine``) as the user would type them
        with this program; under fab, on ``host`` (default: the hosts of ``-H``)."""
        if self.program == "fab":
            on = host or ",".join(self.hosts)
            return f"fab -H {on} {words}" if on else f"fab {words}"
        return f"{self.program} {words}"

    def render(self, text: str, host: str = "") -> str:
        """``text`` with every `inv TASK ...` hint spelled as :meth:`command` spells it."""
        if self.program == "inv":
            return text
        return _HINT.sub(lambda m: f"`{self.command(m.group(1), host)}`", text)


def program_name(argv0: str) -> ProgramName:
    """Which of our programs ``argv0`` is: fab, dlt (also ``python -m dltasks``), else inv.
    ``python -m fabric`` / ``-m invoke`` / ``-m dltasks`` are told apart by the module run."""
    name = os.path.basename(argv0)
    if name.lower().endswith(".exe"):
        name = name[:-4]
    if name == "__main__.py" or name == "-m":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        top = (getattr(spec, "name", "") or "").split(".")[0]
        return "fab" if top == "fabric" else "inv" if top == "invoke" else "dlt"
    if name == "fab":
        return "fab"
    if name.startswith("dlt"):
        return "dlt"
    return "inv"


def parse(argv: Sequence[str], program: ProgramName | None = None) -> Invocation:
    """The invocation of command line ``argv`` (``argv[0]``: the program, unless given)."""
    words = tuple(argv)
    cut = words.index("--") if "--" in words else None
    return Invocation(program=program or program_name(words[0] if words else ""),
                      argv=words, hosts=tuple(cli_hosts(words)),
                      remainder=None if cut is None else words[cut + 1:])


#: The program's own flags that take a value (invoke's and fabric's core flags): their value
#: is not a task name. Core flags come before the first task; what follows is the tasks'.
_VALUE_FLAGS = frozenset({
    "-H", "--hosts", "-i", "--identity", "-S", "--ssh-config", "-t", "--connect-timeout",
    "-c", "--collection", "-f", "--config", "-r", "--search-root", "-D", "--list-depth",
    "-F", "--list-format", "--hide", "-T", "--command-timeout", "--print-completion-script",
})


def core_flags(argv: Sequence[str]) -> list[tuple[str, str | None]]:
    """The program's own flags in command line ``argv``, each with its value (None: a switch,
    or a value joined to it: ``--hosts=a``, ``-Ha``): those before the first task (what
    follows is the tasks' own: ``train --args "-H 1024"`` is train's)."""
    return _scan_core(argv)[0]


def _scan_core(argv: Sequence[str]) -> tuple[list[tuple[str, str | None]], int]:
    """:func:`core_flags`, and the index in ``argv`` of the first word after them."""
    out: list[tuple[str, str | None]] = []
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "--" or not a.startswith("-"):
            break  # the first task: the rest is its flags and the next tasks'
        takes = a in _VALUE_FLAGS
        out.append((a, argv[i + 1] if takes and i + 1 < len(argv) else None))
        i += 2 if takes else 1
    return out, i


def _after_core(argv: Sequence[str]) -> Sequence[str]:
    """The words after the program's own flags (a core flag's value, ``-H node3.train``,
    names a host, never a task), up to ``--`` (what follows is the command's)."""
    rest = argv[_scan_core(argv)[1]:]
    return rest[:list(rest).index("--")] if "--" in rest else rest


def host_flag_value(flag: str, value: str | None) -> str | None:
    """The hosts a core flag gives (``-H a,b``, ``--hosts=a,b``, ``-Ha,b``), else None."""
    if flag in ("-H", "--hosts"):
        return value or ""
    if flag.startswith("--hosts="):
        return flag.split("=", 1)[1]
    if flag.startswith("-H") and len(flag) > 2 and not flag.startswith("--"):
        return flag[2:]
    return None


def cli_hosts(argv: Sequence[str]) -> list[str]:
    """The hosts of ``-H a,b`` / ``--hosts=a,b`` / ``-Ha,b`` in a fab command line: among the
    program's own flags only, before the first task (``train --args "-H 1024"`` is train's)."""
    hosts: list[str] = []
    for flag, value in core_flags(argv):
        hosts.extend(h for h in (host_flag_value(flag, value) or "").split(",") if h)
    return hosts


def task_word(argv: Sequence[str], name: str) -> str:
    """How the command line ``argv`` names task ``name`` (``train``, or ``dlt.train`` under a
    fabfile's namespace); ``name`` itself when it does not."""
    return next((w for w in _after_core(argv) if not w.startswith("-")
                 and (w == name or w.endswith("." + name))), name)


def task_named(argv: Sequence[str], name: str) -> bool:
    """Whether task ``name`` is one the command line ``argv`` names (``train``, ``ns.train``),
    as opposed to one a user's own task calls."""
    return any(w == name or w.endswith("." + name) for w in _after_core(argv)
               if not w.startswith("-"))


def keep(config: Any, program: ProgramName, argv: Sequence[str]) -> None:
    """Put the invocation of ``argv`` in ``config`` (a program run's), as plain data."""
    config[CONFIG_KEY] = {"program": program, "argv": list(argv)}


def invocation(c: Any) -> Invocation:
    """The invocation of the program running task context ``c``: the one kept in its config,
    else ``sys.argv`` (``inv``/``fab``), kept there for the program's next task."""
    config = getattr(c, "config", None)
    kept = config.get(CONFIG_KEY, None) if config is not None else None
    if not kept:
        inv = parse(sys.argv)
        if config is not None:
            keep(config, inv.program, inv.argv)
        return inv
    return parse(kept["argv"], kept["program"])


def spelled(c: Any, text: str) -> str:
    """``text`` (a report, a message) with its hints spelled for the program running ``c``
    and, under fab, for ``c``'s host."""
    from dltasks.hosts.target import ssh_host_of

    host = ""
    if ssh_host_of(c):
        from dltasks.hosts.remote.multihost import host_name

        host = host_name(c)
    return invocation(c).render(text, host)
