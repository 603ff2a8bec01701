"""The GPU lock on a remote host: util-linux ``flock`` held by a shell in an SSH exec channel.

The script follows the rules of :mod:`dltasks.gpu.lock` with the tools of any Linux host: the
same folder choice (root's, mode 1777, whoever asks); the file made by ``mktemp`` in that
folder, ``chmod 644`` and a hard link to the lock's name (``ln -T`` fails when anything, a
dangling symlink included, is there, and never writes through one); a symlink, anything but a
plain file, or a file others cannot read refused with its owner; the open descriptor checked
to be the file at the path (nothing swapped in between); ``flock -w`` bounded by
DLT_LOCK_TIMEOUT, then the holder named from ``/proc``.

Held, the shell becomes a loop that reads the client's heartbeat (a byte every
:data:`HEARTBEAT_S`); when none comes for :data:`DEAD_AFTER_S` (a client gone from the network
with its TCP connection still open) or the channel closes, it exits and the kernel drops the
lock. Its command line carries :data:`~dltasks.gpu.lock.HELD_MARK` and the lock's inode, so
others can name it: ``/proc/locks`` shows the pid of the ``flock`` program, long gone.
"""

from __future__ import annotations

import contextlib
import posixpath
import threading
from collections.abc import Callable, Iterator
from typing import Any

from dltasks.errors import DltError
from dltasks.gpu import lock as gpulock
from dltasks.hosts.shell import quote
from dltasks.scripts import script

#: Seconds between the client's heartbeat bytes while it holds a remote lock.
HEARTBEAT_S = 5
#: A holder that hears no heartbeat for this long lets go (its client is gone).
DEAD_AFTER_S = 45
#: Extra seconds, beyond DLT_LOCK_TIMEOUT, we wait for the host's answer.
_SLACK_S = 30


def remote_script() -> str:
    """The lock script (``sh -c SCRIPT NAME TIMEOUT DEAD_AFTER LOCK_NAME DIR...``, see
    :func:`remote_argv`): prints ``path PATH``, ``busy`` while another holds it, then
    ``locked PATH`` once held; or one of ``nodir``, ``missing TOOL``, ``refuse KIND OWNER
    [MODE]``, ``held [USER PID COMM]`` and exits."""
    return script("gpulock")


def remote_argv(timeout: float) -> list[str]:
    """The command that runs :func:`remote_script` waiting up to ``timeout`` seconds."""
    return ["sh", "-c", remote_script(), "dltasks-gpulock", str(int(timeout)), str(DEAD_AFTER_S),
            gpulock.LOCK_NAME, *gpulock.LOCK_DIRS]


def _line(out: Any) -> str:
    try:
        return str(out.readline().decode(errors="replace").strip())
    except TimeoutError:
        return "timeout"


def _fail(line: str, chan: Any, path: str, where: str, waited: float) -> DltError:
    """The one line for a script that did not get the lock (``path``: the lock's, there)."""
    parts = line.split()
    if parts[:1] == ["held"]:
        holder = f"{parts[1]} (pid {parts[2]}, {' '.join(parts[3:])})" if len(parts) > 2 else ""
        return gpulock.busy(path, where, waited, holder)
    if parts[:1] == ["refuse"] and len(parts) >= 2:
        kind = parts[1]
        owner = parts[2] if len(parts) > 2 else "?"
        if kind == "mode":
            return gpulock.refusal(path, where, "mode", owner, int(parts[3], 8))
        if kind == "changed":
            return DltError(f"the GPU lock {path} on {where} changed while we opened it: "
                            "another user is playing with it; ask root to look")
        if kind != "symlink":  # "OWNER:FILE KIND"
            owner, _, kind = " ".join(parts[1:]).partition(":")
            kind = gpulock.kind_named(kind)
        return gpulock.refusal(path, where, kind, owner)
    if line == "nodir":
        return DltError(f"no folder for the GPU lock on {where}: neither /run/lock nor /tmp is "
                        "a root-owned folder with mode 1777 there; as root there: chmod 1777 "
                        "/tmp")
    if parts[:1] == ["missing"]:
        pkg = "util-linux" if parts[1:] == ["flock"] else "coreutils"
        return DltError(f"`{parts[-1]}` is not installed on {where}: install {pkg} there (the "
                        "GPU lock needs it)")
    if line == "timeout":
        return DltError(f"no answer from {where} while taking its GPU lock: check the network, "
                        "then retry")
    code = chan.recv_exit_status() if chan.status_event.wait(5) else -1
    err = chan.makefile_stderr("rb").read().decode(errors="replace").strip() \
        if code >= 0 else ""
    said = err.splitlines()[-1] if err else line or "no answer"
    return DltError(f"cannot take the GPU lock {path} on {where} (exit {code}: {said}): check "
                    f"there that `sh`, `flock` and `stat` run for your user (ssh {where} flock "
                    f"--version) and that {posixpath.dirname(path)} is a root-owned folder with "
                    "mode 1777 (ls -ld it)")


@contextlib.contextmanager
def remote_lock(transport: Any, where: str, timeout: float,
                waiting: Callable[[], None] = lambda: None) -> Iterator[str]:
    """Hold the GPU lock of the host at the other end of ``transport`` (paramiko); yields its
    path there. Gives up after ``timeout`` seconds; a heartbeat keeps it while we hold it."""
    import time

    t0 = time.monotonic()
    chan: Any = transport.open_session(timeout=30)
    stop = threading.Event()
    beat: threading.Thread | None = None
    try:
        chan.settimeout(timeout + _SLACK_S)
        chan.exec_command(quote(remote_argv(timeout)))
        out = chan.makefile("rb")
        path = f"/run/lock/{gpulock.LOCK_NAME}"  # until the host says which
        line = _line(out)
        while line.startswith("path ") or line == "busy":
            if line == "busy":
                waiting()
            else:
                path = line[len("path "):]
            line = _line(out)
        if not line.startswith("locked "):
            raise _fail(line, chan, path, where, time.monotonic() - t0)

        def heartbeat() -> None:
            while not stop.wait(HEARTBEAT_S):
                try:
                    chan.sendall(b".")
                except Exception:  # closed, or the connection is gone: nothing to keep
                    return

        beat = threading.Thread(target=heartbeat, name="dlt-gpulock-heartbeat", daemon=True)
        beat.start()
        yield line[len("locked "):]
    finally:
        stop.set()
        chan.close()  # its shell's stdin ends, the shell exits, the lock is dropped
        if beat is not None:
            beat.join(timeout=5)
