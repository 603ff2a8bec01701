"""`forward RUN`: a detached run's published ports, reachable from this machine again.

In the foreground: the forwards live until Ctrl-C (which ends only the forward, never the
run), the run's end, or the SSH connection's. Also the background forwarder that keeps a
detached remote run's ports reachable after `fab -H gpu1 train --port 8000 --detach` ends:
the same program re-run as `forward RUN` in its own session (:func:`start_forwarder`), which
tells its parent its laptop ports on a pipe once listening (``DLT_FORWARD_PIPE``: the pipe's
descriptor), then goes on alone; the files it keeps are :mod:`dltasks.runs.forwarder`'s.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from invoke.exceptions import Exit

from dltasks.tasks._common import dlt_task, target_for

#: The environment variable naming the pipe a background forwarder reports its ports on.
PIPE_ENV = "DLT_FORWARD_PIPE"
#: How long `train --detach` waits for its background forwarder to listen (an SSH login).
START_WAIT = 60.0
#: How often a forward looks at whether the run still runs (the engine's inspect).
POLL = 2.0


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
    from dltasks.hosts.target import ssh_host_of

    pipe = os.environ.pop(PIPE_ENV, "")
    wanted = _local_ports(port or [])
    with target_for(c) as target:
        rid, cid, kind = _running(target, run)
        folder = _folder(target, rid)
        if ssh_host_of(c) is None:  # this machine: nothing to forward, the URLs only
            _open(target, rid, cid, kind, wanted, background=None, folder=folder)
            return
        if not pipe:
            _say_live_forwarder(target, rid, cid, kind, folder)
        _open(target, rid, cid, kind, wanted, background=int(pipe) if pipe else None,
              folder=folder, hold=True)


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


def _say_live_forwarder(target: Any, rid: str, cid: str, kind: str, folder: Path) -> None:
    """When the run's background forwarder lives, its URLs (and no second forward)."""
    from dltasks.runs.forwarder import live_forwarder
    from dltasks.runs.ports import forwarded

    live = live_forwarder(folder, rid)
    if live is None:
        return
    print(f"dlt: the ports of {rid} are forwarded already, by its background forwarder "
          f"(pid {live.pid}, ended by `{target.task_command(f'stop {rid}')}` with the run):",
          file=sys.stderr)
    with forwarded(target, rid, cid, kind=kind, forward=False, local_ports=live.ports):
        pass
    raise Exit(code=0)


def _open(target: Any, rid: str, cid: str, kind: str, wanted: Mapping[int, int], *,
          background: int | None, folder: Path, hold: bool = False) -> None:
    """Open the forwards, print the URLs (or report them on the pipe ``background``), and
    with ``hold`` keep them until Ctrl-C/SIGTERM, the run's end or the connection's."""
    from dltasks.errors import ConnectionLost
    from dltasks.runs import forwarder
    from dltasks.runs.ports import forwarded

    if background is not None:  # stop ends us with SIGTERM: leave as Ctrl-C would
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        with forwarded(target, rid, cid, kind=kind, local_ports=wanted) as urls:
            if not hold:
                return
            if background is not None:
                forwarder.write_pid_file(folder, {u.container: u.local_port for u in urls})
                with os.fdopen(background, "w") as report:
                    json.dump({str(u.container): u.local_port for u in urls}, report)
            else:
                print("dlt: forwarding until Ctrl-C (which ends the forward, never the run)",
                      file=sys.stderr, flush=True)
            ended = _until_over(target, cid)
        if ended:
            print(f"dlt: run {rid} has ended; its forward is closed", file=sys.stderr)
            return
        raise ConnectionLost(f"lost the SSH connection to {target.name}: the forward of {rid} "
                             f"ended (the run goes on there); reopen it with "
                             f"`{target.task_command(f'forward {rid}')}`", code=255)
    except KeyboardInterrupt:
        print(f"\ndlt: forward of {rid} closed; the run goes on", file=sys.stderr)
    finally:
        if background is not None:
            forwarder.remove_pid_file(folder)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _until_over(target: Any, cid: str, *, poll: float = POLL) -> bool:
    """Wait until the run's container stops or is removed (True) or the connection dies
    (False). Any other engine error (a dockerd restart, a timeout) is said once and waited
    out: only the engine's "no such container" means the run has ended."""
    from dltasks.engine.api import NotFound
    from dltasks.errors import DltError

    said = False
    while True:
        if not target.is_alive():
            return False
        try:
            state = target.engine.inspect_container(cid).get("State") or {}
        except NotFound:
            return True  # removed (stopped by `stop`)
        except DltError as e:
            if not target.is_alive():
                return False
            if not said:
                print(f"dlt: warning: the engine on {target.name} did not answer ({e.message}); "
                      "the forward stays open and asks again", file=sys.stderr, flush=True)
                said = True
            time.sleep(poll)
            continue
        if not state.get("Running"):
            return True
        time.sleep(poll)


def start_forwarder(c: Any, target: Any, run_id: str, cid: str, kind: str, *,
                    wait: float = START_WAIT) -> None:
    """Start the background forwarder of detached run ``run_id`` (the same program, re-run as
    `forward RUN` in a new session, stdio to the run's forward.log) and print the URLs on this
    machine once it listens; when it cannot, one warning: the run goes on."""
    import select
    import subprocess

    from dltasks.hosts.target import ssh_host_of
    from dltasks.runs.forwarder import live_forwarder
    from dltasks.runs.ports import forwarded
    from dltasks.runs.record import forward_log_file

    folder = _folder(target, run_id)
    host = ssh_host_of(c) or target.name
    argv = _forward_argv(c, host, run_id, kind)
    read_end, write_end = os.pipe()
    log = os.open(forward_log_file(folder), os.O_WRONLY | os.O_CREAT | os.O_APPEND
                  | os.O_NOFOLLOW, 0o600)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                pass_fds=(write_end,), start_new_session=True,
                                env={**os.environ, PIPE_ENV: str(write_end)})
    finally:
        os.close(write_end)
        os.close(log)
    data = b""
    deadline = time.monotonic() + wait
    try:
        with os.fdopen(read_end, "rb") as pipe:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([pipe], [], [],
                                            max(0.0, deadline - time.monotonic()))
                if not ready:
                    break
                chunk = os.read(pipe.fileno(), 4096)
                if not chunk:
                    break
                data += chunk
    except BaseException:  # Ctrl-C while it logs in: it must not outlive us unreported
        proc.kill()
        proc.wait()
        raise
    try:
        ports = {int(k): int(v) for k, v in json.loads(data.decode()).items()}
    except ValueError:
        ports = None
    if ports is None or live_forwarder(folder, run_id) is None:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        why = _last_line(forward_log_file(folder)) or f"no answer within {wait:.0f}s"
        print(f"dlt: warning: the ports of {run_id} are not forwarded to this machine "
              f"({why}); the run goes on: forward them with "
              f"`{target.task_command(f'forward {run_id}')}`", file=sys.stderr)
        return
    with forwarded(target, run_id, cid, kind=kind, forward=False, local_ports=ports):
        pass
    print(f"dlt: the forward runs in the background (pid {proc.pid}) until the run ends; "
          f"`{target.task_command(f'stop {run_id}')}` ends both", file=sys.stderr)


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].removeprefix("dlt: error: ").strip()[:300] if lines else ""


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
