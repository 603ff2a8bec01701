"""Per-host error reports for ``fab -H gpu1,gpu2 TASK``.

Fabric runs a task once per host, in order, and the first exception ends the whole program:
with ``-H gpu1,gpu2`` a refused host key on gpu1 would hide gpu2 entirely. The task wrapper
(``tasks._common.dlt_task``) calls :func:`host_failed` instead of exiting: the error is printed
with its host, and the program only exits (non-zero, naming every failed host) after the last
host of ``-H`` has had its turn. Light on purpose: no paramiko, no docker.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

#: (host, message) of every failure so far in this process.
FAILURES: list[tuple[str, str]] = []


def cli_hosts(argv: Sequence[str]) -> list[str]:
    """The hosts of ``-H a,b`` / ``--hosts=a,b`` / ``-Ha,b`` in a fab command line."""
    hosts: list[str] = []
    it = iter(range(len(argv)))
    for i in it:
        a = argv[i]
        if a == "--":
            break
        value = None
        if a in ("-H", "--hosts") and i + 1 < len(argv):
            value = argv[i + 1]
            next(it, None)
        elif a.startswith("--hosts="):
            value = a.split("=", 1)[1]
        elif a.startswith("-H") and len(a) > 2 and not a.startswith("--"):
            value = a[2:]
        if value:
            hosts.extend(h for h in value.split(",") if h)
    return hosts


def several_hosts(argv: Sequence[str] | None = None) -> bool:
    return len(cli_hosts(sys.argv if argv is None else argv)) > 1


def host_name(c: Any) -> str:
    return str(getattr(c, "original_host", None) or getattr(c, "host", "") or "local")


def is_last_host(c: Any, argv: Sequence[str] | None = None) -> bool:
    """Whether ``c`` is the last host of ``-H`` (True when that cannot be told)."""
    hosts = cli_hosts(sys.argv if argv is None else argv)
    if len(hosts) < 2:
        return True
    name = host_name(c)
    full = f"{getattr(c, 'user', '')}@{name}"
    last = hosts[-1]
    return last in (name, full) or last.split("@")[-1].split(":")[0] == name


def summary() -> str:
    hosts = ", ".join(h for h, _ in FAILURES)
    return f"dlt: error: failed on {len(FAILURES)} host(s): {hosts} (see above)"


def host_failed(c: Any, message: str, argv: Sequence[str] | None = None) -> str | None:
    """Report a failure on ``c``'s host: the text to exit with now, or None to go on.

    With one host it is the error itself; with several, each is printed with its host and the
    exit (naming every failed host) comes after the last one.
    """
    args = sys.argv if argv is None else argv
    if len(cli_hosts(args)) < 2:
        return f"dlt: error: {message}"
    name = host_name(c)
    FAILURES.append((name, message))
    print(f"dlt: error: [{name}] {message}", file=sys.stderr, flush=True)
    return summary() if is_last_host(c, args) else None


def host_done(c: Any, argv: Sequence[str] | None = None) -> bool:
    """After a success on ``c``: True when earlier hosts failed and this was the last one."""
    return bool(FAILURES) and is_last_host(c, argv)
