"""The background forwarder of a detached remote run's ports, as files in the run's folder.

A detached run on a remote host keeps running after `fab -H gpu1 train --detach` ends; its
ports must stay reachable from this machine, so a forwarder (the same program re-run as
`forward RUN`, in its own session) holds the forwards until the run's container stops or the
SSH connection dies. It writes ``forward.pid`` (0600: its pid, then one ``CONTAINER LOCAL``
line per port) once listening, and removes it as it ends; `stop RUN` ends it first, and
`forward RUN` reports it instead of fighting over its ports. A pid is only acted on when that
process is ours: its command line names `forward` and the run id (a pid file left behind by
a crash, its pid reused since, never gets a signal from us).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dltasks.runs.record import forward_pid_file


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
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
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
