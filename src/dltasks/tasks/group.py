"""How a task body is called: once, or once over every host of ``fab -H a,b``.

fabric's executor calls a task once per host of ``-H``, in order, and the first exception ends
the program. A task of ours is instead run as ONE call over the group, at fabric's call for the
first host: each host in turn (serially, as fabric would, so the output reads the same), its
result or failure kept in a :class:`fabric.GroupResult`; each failure is printed with its host
and the exit after the last host names every failed one. fabric's calls for the later hosts
then find their host done and return at once. A task whose flags make it cover every host
itself (``train --nnodes 2``: one job across them) is called once, with the first host's
context, and reads the hosts from the invocation. Nothing is remembered between calls: which
call does the work follows from the invocation alone.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from invoke.exceptions import Exit

from dltasks.errors import DltError
from dltasks.tasks.invocation import Invocation


def call_once(fn: Callable[..., Any], c: Any, args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Any:
    """``fn(c, ...)``; a DltError ends the program as one line, its hints spelled for the
    program the user ran (`fab -H gpu1 setup` for the host of ``c``)."""
    try:
        return _call(fn, c, args, kwargs)
    except DltError as e:
        from dltasks.tasks.invocation import spelled

        raise Exit(f"dlt: error: {spelled(c, e.message)}", code=e.code) from None


def call_over_hosts(fn: Callable[..., Any], c: Any, args: tuple[Any, ...],
                    kwargs: dict[str, Any], inv: Invocation, *, whole: bool) -> Any:
    """fabric's call of ``fn`` for host ``c`` of ``inv.hosts`` (two or more): the group's
    call at the first host, nothing at the others. ``whole``: ``fn`` covers the hosts itself.

    Hosts are told apart as fabric tells connections apart: user, host and port
    (``a:2222`` and ``a:2223`` are two hosts); a host named twice is refused, since which of
    fabric's calls is whose could no longer be told."""
    from fabric import GroupResult

    from dltasks.hosts.remote.multihost import failure_line, host_name, summary

    # each host's Connection made as fabric's executor makes them (same config); not opened
    conns = [type(c)(host=spec, config=c.config) for spec in inv.hosts]
    try:
        for i, cx in enumerate(conns):
            if cx in conns[:i]:
                raise Exit(f"dlt: error: -H names {host_name(cx)} twice ({inv.hosts[i]}): name "
                           "each host once", code=2)
        if c != conns[0]:
            return None  # the call for the first host ran this host's turn
        if whole:  # one call covers every host: its hints name all of them (`fab -H a,b`)
            try:
                return _call(fn, c, args, kwargs)
            except DltError as e:
                raise Exit(f"dlt: error: {inv.render(e.message)}", code=e.code) from None
        results = GroupResult()
        cx = c
        for i, made in enumerate(conns):
            cx = c if i == 0 else made
            name = host_name(cx)
            try:
                results[cx] = _call(fn, cx, args, kwargs)
            except DltError as e:
                results[cx] = e
                print(failure_line(name, inv.render(e.message, name)), file=sys.stderr,
                      flush=True)
            except Exit as e:  # e.g. a run's non-zero exit code
                if not e.code:
                    raise
                results[cx] = e
                print(failure_line(name, str(e.message or f"exit code {e.code}")),
                      file=sys.stderr, flush=True)
        if results.failed:
            last = results[cx]
            code = last.code if isinstance(last, (DltError, Exit)) else 1
            raise Exit(summary([host_name(x) for x in results.failed]), code=code)
        return None
    finally:
        for made in conns:
            made.close()


def _call(fn: Callable[..., Any], c: Any, args: tuple[Any, ...],
          kwargs: dict[str, Any]) -> Any:
    """``fn(c, ...)``, with what nobody foresaw turned into one DltError (traceback logged)."""
    try:
        return fn(c, *args, **kwargs)
    except (DltError, Exit, KeyboardInterrupt, SystemExit):
        raise
    except BrokenPipeError:  # `dlt ps | head -1`: the reader left; so do we
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise Exit(code=141) from None
    except Exception as e:  # noqa: BLE001 - not foreseen: one line, the rest logged
        from dltasks.errorlog import unexpected

        raise unexpected(e) from None
