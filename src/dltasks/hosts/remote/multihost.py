"""Per-host error reports for ``fab -H gpu1,gpu2 TASK``.

Fabric would run a task once per host, in order, and the first exception would end the whole
program: with ``-H gpu1,gpu2`` a refused host key on gpu1 would hide gpu2 entirely. The task
layer (:mod:`dltasks.tasks.group`) runs such a task over the hosts as one group instead; each
failure is printed with its host (:func:`failure_line`) and the program exits after the last
host, naming every failed one (:func:`summary`). Pure and light: no paramiko, no docker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def host_name(c: Any) -> str:
    """The host of context ``c`` as the user named it (``-H gpu1``), else its address."""
    return str(getattr(c, "original_host", None) or getattr(c, "host", "") or "local")


def is_host(c: Any, spec: str) -> bool:
    """Whether ``c`` is the connection made for host ``spec`` of ``-H`` (``gpu1``,
    ``me@gpu1``, ``gpu1:2222``)."""
    name = host_name(c)
    full = f"{getattr(c, 'user', '')}@{name}"
    return spec in (name, full) or spec.split("@")[-1].split(":")[0] == name


def is_last_host(c: Any, hosts: Sequence[str]) -> bool:
    """Whether ``c`` is the last host of ``hosts`` (True with fewer than two)."""
    return len(hosts) < 2 or is_host(c, hosts[-1])


def failure_line(host: str, message: str) -> str:
    """One host's failure, as printed when it happens."""
    return f"dlt: error: [{host}] {message}"


def summary(failed: Sequence[str]) -> str:
    """The exit line after the last host: every host that failed."""
    return f"dlt: error: failed on {len(failed)} host(s): {', '.join(failed)} (see above)"
