"""`forward RUN`: a detached run's published ports, reachable from this machine again.

In the foreground: the forwards live until Ctrl-C (which ends only the forward, never the
run), the run's end, or the SSH connection's. Also the command line of the background
forwarder that keeps a detached remote run's ports reachable after `fab -H gpu1 train
--port 8000 --detach` ends: the same program re-run as `forward RUN`
(:func:`start_background_forward`); what it does, and the files it keeps, are
:mod:`dltasks.runs.forwarder`'s.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from invoke.exceptions import Exit

from dltasks.tasks._common import dlt_task, target_for


def _local_ports(values: list[str]) -> dict[int, int]:
    """``--port LOCAL:CONTAINER`` values: container port -> the port wanted here."""
    from dltasks.engine.spec import parse_ports
    from dltasks.errors import DltError

    out = {}
    for p in parse_ports(values):
        if not p.host:
            raise DltError(f"--port {p.container}: write LOCAL:CONTAINER (the port on this "
                           f"machine, then the container's), e.g. --port 8890:{p.container}")
        out[p.container] = p.host
    return out


@dlt_task(iterable=["port"], help={
    "port": "LOCAL:CONTAINER: the port on this machine for the container's port CONTAINER "
            "(repeatable; default: the host's port number when free here, else a free one)."})
def forward(c: Any, run: str, port: list[str] | None = None) -> None:
    """Forward a detached run's published ports (`train --port ... --detach`) to this machine
    again and print their URLs; Ctrl-C ends the forward, never the run. A local run's ports
    are on this machine already: the URLs are printed. RUN: its id, or the start of one."""
    from dltasks.runs.forwarder import hold_forwards, report_pipe

    pipe = report_pipe()
    wanted = _local_ports(port or [])
    with target_for(c) as target:
        rid, cid, kind = _running(target, run)
        folder = _folder(target, rid)
        if not target.forwards_need_a_process:  # this machine: nothing to forward, URLs only
            if wanted:
                how = target.task_command("train --port HOST:CONTAINER")
                print(f"dlt: warning: --port not applied: the ports of {rid} are on this "
                      f"machine already, under the numbers below (choose them when starting "
                      f"it: `{how}`)", file=sys.stderr)
            hold_forwards(target, rid, cid, kind, wanted, background=None, folder=folder)
            return
        if pipe is None:
            _say_live_forwarder(target, rid, cid, kind, folder, wanted=bool(wanted))
        hold_forwards(target, rid, cid, kind, wanted, background=pipe, folder=folder,
                      hold=True)


def _folder(target: Any, rid: str) -> Path:
    from dltasks.runs.record import run_dir

    return run_dir(target.settings.project_dir, rid)


def _running(target: Any, run: str) -> tuple[str, str, str]:
    """(run id, container id, kind) of the running single-container run ``run`` names, else
    one line: no such run, ended, no ports."""
    from dltasks.engine.spec import bound_ports
    from dltasks.errors import DltError
    from dltasks.runs.listing import pick_node, resolve_run
    from dltasks.runs.ports import inspect_run

    found = resolve_run(target, run)
    rid = found.candidate.run_id
    if not found.candidate.mine:  # its URLs hold its owner's secrets (a notebook's token)
        raise DltError(f"run {rid} is not yours (a run of {found.candidate.owner}): only its "
                       f"owner can forward its ports; forward one of yours (`inv ps` lists "
                       f"them)")
    if found.record is not None or any(r.node for r in found.runs):
        raise DltError(f"run {rid} publishes no ports (a Slurm run or a job across hosts); "
                       "start a single run with --port: `inv train --port CONTAINER`")
    info = pick_node(found, None, target.name)
    if info.status != "running":
        raise DltError(f"run {rid} has ended; nothing to forward")
    if not bound_ports(inspect_run(target, info.container_id)):
        raise DltError(f"run {rid} publishes no ports; start it with --port: "
                       "`inv train --port CONTAINER --detach`")
    return rid, info.container_id, info.kind


def _say_live_forwarder(target: Any, rid: str, cid: str, kind: str, folder: Path, *,
                        wanted: bool = False) -> None:
    """When the run's background forwarder lives, its URLs (and no second forward; ports
    ``wanted`` by --port are said not to apply)."""
    from dltasks.runs.forwarder import live_forwarder
    from dltasks.runs.ports import forwarded

    live = live_forwarder(folder, rid)
    if live is None:
        return
    print(f"dlt: the ports of {rid} are forwarded already, by its background forwarder "
          f"(pid {live.pid}, ended by `{target.task_command(f'stop {rid}')}` with the run):",
          file=sys.stderr)
    if wanted:
        print(f"dlt: warning: --port not applied: the background forwarder holds the ports; "
              f"for others, end it (`kill {live.pid}`: the run goes on) and forward again",
              file=sys.stderr)
    with forwarded(target, rid, cid, kind=kind, forward=False, local_ports=live.ports):
        pass
    raise Exit(code=0)


def start_background_forward(c: Any, target: Any, run_id: str, cid: str,
                             kind: str) -> None:
    """Start the background forwarder of detached run ``run_id`` on ``target`` (whose
    forwards need a process that outlives us): `forward RUN`, re-run as the user ran us."""
    from dltasks.hosts.target import ssh_host_of
    from dltasks.runs import forwarder

    argv = _forward_argv(c, ssh_host_of(c) or target.name, run_id, kind)
    forwarder.start_forwarder(target, run_id, cid, kind, argv)


#: fabric's flags that ask on the terminal: a forwarder in its own session has none.
_PROMPTS = ("--prompt-for-passphrase", "--prompt-for-login-password",
            "--prompt-for-sudo-password")


def _core_flags(c: Any) -> tuple[list[str], list[str]]:
    """The program's own flags the user gave before the first task (an identity, an SSH
    config, a timeout), less its hosts and its prompts (the forwarder has no terminal):
    (the flags to pass, the prompts left out)."""
    from dltasks.tasks.invocation import core_flags, host_flag_value, invocation

    out: list[str] = []
    dropped: list[str] = []
    for flag, value in core_flags(invocation(c).argv):
        if host_flag_value(flag, value) is not None:
            continue
        if flag in _PROMPTS:
            dropped.append(flag)
            continue
        out += [flag] if value is None else [flag, value]
    return out, dropped


def _forward_argv(c: Any, host: str, run_id: str, kind: str) -> list[str]:
    """The background forwarder's command line: the user's program (fab), their flags, the
    host, and `forward RUN` named as they named the task (``dlt.notebook`` ->
    ``dlt.forward``: a fabfile's namespace), so it finds the same task and its command line
    is recognised as a forwarder's. A prompt flag is left out, with one warning."""
    from dltasks.tasks.invocation import invocation, task_word

    flags, dropped = _core_flags(c)
    if dropped:
        print(f"dlt: warning: the background forwarder has no terminal to prompt on: "
              f"{' '.join(dropped)} left out (it logs in with your agent or key files)",
              file=sys.stderr)
    word = task_word(invocation(c).argv, kind)
    task = word[:len(word) - len(kind)] + "forward"
    return [sys.executable, "-m", "fabric", *flags, "-H", host, task, run_id]
