"""The forwards of a detached run's ports, held in the foreground or by a background forwarder.

A detached run on a remote host keeps running after `fab -H gpu1 train --detach` ends; its
ports must stay reachable from this machine, so a forwarder (the same program re-run as
`forward RUN`, in its own session) holds the forwards until the run's container stops or the
SSH connection dies. It writes ``forward.pid`` (0600: its pid, then one ``CONTAINER LOCAL``
line per port) once listening, and removes it as it ends; `stop RUN` ends it first, and
`forward RUN` reports it instead of fighting over its ports. A pid is only acted on when that
process is ours: its command line names `forward` and the run id (a pid file left behind by
a crash, its pid reused since, never gets a signal from us).

:func:`hold_forwards` is the loop every `forward RUN` runs; :func:`start_forwarder` starts the
background one (the command line is the task layer's: the program the user ran) and waits
until it reports its laptop ports on a pipe (``DLT_FORWARD_PIPE``: the pipe's descriptor).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import stat
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dltasks.engine.api import NotFound
from dltasks.errors import ConnectionLost, DltError
from dltasks.hosts.shell import local, local_detached
from dltasks.hosts.target import Target
from dltasks.runs.ports import READY_TIMEOUT, forwarded
from dltasks.runs.record import forward_log_file, forward_pid_file, run_dir

#: The environment variable naming the pipe a background forwarder reports its ports on.
PIPE_ENV = "DLT_FORWARD_PIPE"
#: How long `train --detach` waits for its background forwarder to report: an SSH login (its
#: connect timeout), then a notebook's or TensorBoard's start (:data:`.ports.READY_TIMEOUT`).
START_WAIT = 60.0 + READY_TIMEOUT
#: When the wait is long enough to say what it waits for.
SAY_AFTER = 3.0
#: How often a forward looks at whether the run still runs (the engine's inspect).
POLL = 2.0


@dataclass(frozen=True)
class Forwarder:
    """A live background forwarder: its pid and the laptop port of each container port."""

    pid: int
    ports: Mapping[int, int]


def write_pid_file(folder: Path, ports: Mapping[int, int]) -> Path:
    """This process as the run's forwarder (0600, never through a link; one that a dead
    forwarder left behind is replaced: it is ours)."""
    path = forward_pid_file(folder)
    text = f"{os.getpid()}\n" + "".join(f"{c} {p}\n" for c, p in sorted(ports.items()))
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def remove_pid_file(folder: Path) -> None:
    """Remove the pid file if it still names this process."""
    found = _read(forward_pid_file(folder))
    if found is not None and found.pid == os.getpid():
        with contextlib.suppress(OSError):
            forward_pid_file(folder).unlink()


def _read(path: Path) -> Forwarder | None:
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
        ports = {}
        for ln in lines[1:]:
            if ln.strip():
                c, p = ln.split()
                ports[int(c)] = int(p)
        return Forwarder(int(lines[0]), ports)
    except (OSError, ValueError):
        return None


def _cmdline(pid: int) -> list[str]:
    """The command line of process ``pid`` ([] when there is none, or it cannot be read)."""
    proc = Path(f"/proc/{pid}/cmdline")
    if proc.parent.parent.is_dir() and Path("/proc/self").exists():
        try:
            return proc.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            return []
    try:  # no /proc (macOS): ps says it
        out = local(["ps", "-o", "command=", "-p", str(pid)])
    except DltError:
        return []
    return out.stdout.split()


def is_forwarder(pid: int, run_id: str) -> bool:
    """Whether ``pid`` is a live forwarder of ``run_id`` (its command line says so)."""
    words = _cmdline(pid)  # `forward`, or `ns.forward` under a fabfile's namespace
    return run_id in words and any(w == "forward" or w.endswith(".forward") for w in words)


def live_forwarder(folder: Path, run_id: str) -> Forwarder | None:
    """The run's background forwarder, when its pid file names a live one of ours."""
    found = _read(forward_pid_file(folder))
    if found is None or found.pid == os.getpid() or not is_forwarder(found.pid, run_id):
        return None
    return found


def end_forwarder(folder: Path, run_id: str, *, timeout: float = 10) -> int | None:
    """End the run's background forwarder (SIGTERM, then SIGKILL after ``timeout`` seconds);
    returns its pid, None when there was none. Its pid file goes with it."""
    found = live_forwarder(folder, run_id)
    if found is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(found.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_forwarder(found.pid, run_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    if is_forwarder(found.pid, run_id):
        with contextlib.suppress(ProcessLookupError):
            os.kill(found.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):  # ours: the forwarder made it and is gone
        if (_read(forward_pid_file(folder)) or found).pid == found.pid:
            forward_pid_file(folder).unlink()
    return found.pid


def ports_here(text: str, here: Mapping[int, int]) -> str:
    """A listing's ports column (``127.0.0.1:32782->8000,...``) with the port on this machine
    that the forwarder holds for each container port: ``127.0.0.1:32782->8000 (here: 8000)``."""
    out = []
    for item in filter(None, text.split(",")):
        container = item.rsplit("->", 1)[-1]
        local = here.get(int(container)) if container.isdigit() else None
        out.append(item + (f" (here: {local})" if local else ""))
    return ",".join(out)


def report_pipe() -> int | None:
    """The pipe this process reports its laptop ports on, when started as a background
    forwarder (taken out of the environment: a child of ours never sees it)."""
    text = os.environ.pop(PIPE_ENV, "")
    if not text:
        return None
    try:  # a value from the user's own environment must not make us write anywhere
        fd = int(text)
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            return fd
    except (ValueError, OSError):
        pass
    print(f"dlt: warning: {PIPE_ENV}={text[:20]!r} names no pipe: ignored (it is set by "
          "dltasks for its background forwarder only)", file=sys.stderr)
    return None


def hold_forwards(target: Target, rid: str, cid: str, kind: str, wanted: Mapping[int, int], *,
                  background: int | None, folder: Path, hold: bool = False) -> None:
    """Open the forwards, print the URLs (or report them on the pipe ``background``), and
    with ``hold`` keep them until Ctrl-C/SIGTERM, the run's end or the connection's."""
    if background is not None:  # stop ends us with SIGTERM: leave as Ctrl-C would
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        with forwarded(target, rid, cid, kind=kind, local_ports=wanted) as urls:
            if not hold:
                return
            if background is not None:
                write_pid_file(folder, {u.container: u.local_port for u in urls})
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
            remove_pid_file(folder)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _until_over(target: Target, cid: str, *, poll: float = POLL) -> bool:
    """Wait until the run's container stops or is removed (True) or the connection dies
    (False). Any other engine error (a dockerd restart, a timeout) is said once and waited
    out: only the engine's "no such container" means the run has ended."""
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


def start_forwarder(target: Target, run_id: str, cid: str, kind: str, argv: Sequence[str], *,
                    wait: float = START_WAIT) -> None:
    """Start the background forwarder of detached run ``run_id``: ``argv`` (the program
    re-run as `forward RUN`) in a session of its own, stdio to the run's forward.log, and
    print the URLs on this machine once it listens; when it cannot, one warning: the run
    goes on."""
    folder = run_dir(target.settings.project_dir, run_id)
    read_end, write_end = os.pipe()
    try:
        proc = local_detached(argv, log=forward_log_file(folder), pass_fds=(write_end,),
                              env={**os.environ, PIPE_ENV: str(write_end)})
    finally:
        os.close(write_end)
    data = b""
    deadline = time.monotonic() + wait
    said = time.monotonic() + SAY_AFTER
    try:
        with os.fdopen(read_end, "rb") as pipe:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([pipe], [], [], max(0.0, min(
                    deadline, said if said else deadline) - time.monotonic()))
                if not ready:
                    if said and time.monotonic() >= said:
                        print(f"dlt: opening the forward of {run_id} to this machine"
                              f"{' (waiting for the ' + kind + ' to answer)' if kind else ''}"
                              "...", file=sys.stderr, flush=True)
                        said = 0.0
                        continue
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
    live = live_forwarder(folder, run_id)
    if ports is None or live is None or live.pid != proc.pid:  # the one we started, listening
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
