"""The GPU lock of a host: one exclusive lock that every user of the host can take.

Picking GPUs and creating (and starting) the container that claims them happen under it, so
two users starting at the same moment never get the same GPU. It is a ``flock`` on
:data:`LOCK_NAME` in ``/run/lock`` (else ``/tmp``): the kernel drops it when its holder ends
in any way (a killed ``inv``, a dropped SSH connection), so it is never left stale.

The file is made readable and writable by everyone, and the lock is taken on a read-only
descriptor: ``flock`` needs no write access, and opening a file another user made in a sticky
folder with ``O_CREAT`` is refused where ``fs.protected_regular`` is on. Any user of the host
can thus take the lock, which is what it is for; one who holds it forever stalls other GPU
runs on that host (they say so while they wait), never a non-GPU run.

On this machine it is an ``fcntl.flock``; on a remote host, the ``flock`` program of
util-linux held by a shell in an SSH exec channel until we close the channel.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .errors import DltError

if TYPE_CHECKING:
    from .target import Target

LOCK_NAME = "dltasks-gpus.lock"
LOCK_DIRS = ("/run/lock", "/tmp")
#: After this long waiting for the lock, say who we wait for.
_SAY_AFTER_S = 1.0

#: Takes the lock on the remote host and holds it until stdin closes: prints ``busy`` when
#: another holder has it (then waits), ``locked <path>`` once held.
_REMOTE_SCRIPT = (
    'for d in /run/lock /tmp; do [ -d "$d" ] && [ -w "$d" ] && break; done; '
    f'f="$d/{LOCK_NAME}"; [ -e "$f" ] || (umask 0; : >"$f") 2>/dev/null; '
    'exec 9<"$f" || exit 3; command -v flock >/dev/null 2>&1 || exit 127; '
    'flock -n 9 || { echo busy; flock 9 || exit 4; }; echo "locked $f"; cat >/dev/null'
)


def lock_path() -> str:
    """Where this machine's GPU lock lives."""
    for d in LOCK_DIRS:
        if os.path.isdir(d) and os.access(d, os.W_OK):
            return os.path.join(d, LOCK_NAME)
    raise DltError(f"no writable folder for the GPU lock ({', '.join(LOCK_DIRS)}) on this "
                   "machine")


def _open_shared(path: str) -> int:
    """A read-only descriptor of the lock file, made (mode 0666) when it is not there."""
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        pass
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666)  # whatever our umask made of it
        return fd
    except FileExistsError:  # another user made it just now
        return os.open(path, os.O_RDONLY)


@contextlib.contextmanager
def _local_lock(waiting: Callable[[], None]) -> Iterator[str]:
    import fcntl

    path = lock_path()
    try:
        fd = _open_shared(path)
    except OSError as e:
        raise DltError(f"cannot open the GPU lock {path} ({e.strerror}): remove it or make it "
                       "readable by everyone (chmod 666)") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        os.close(fd)  # closing the descriptor drops the lock


@contextlib.contextmanager
def _remote_lock(target: Target, waiting: Callable[[], None]) -> Iterator[str]:
    transport = target.shell.c.transport
    chan: Any = transport.open_session(timeout=30)
    try:
        chan.exec_command(_REMOTE_SCRIPT)
        out = chan.makefile("rb")
        line = out.readline().decode(errors="replace").strip()
        if line == "busy":
            waiting()
            line = out.readline().decode(errors="replace").strip()
        if not line.startswith("locked "):
            code = chan.recv_exit_status()
            err = chan.makefile_stderr("rb").read().decode(errors="replace").strip()
            if code == 127:
                raise DltError(f"`flock` is not installed on {target.name}: install util-linux "
                               "there (it holds the GPU lock)")
            raise DltError(f"cannot take the GPU lock on {target.name} (exit {code}): "
                           f"{err.splitlines()[-1] if err else 'no answer'}")
        yield line[len("locked "):]
    finally:
        chan.close()  # its shell's stdin ends, the shell exits, the lock is dropped


@contextlib.contextmanager
def gpu_lock(target: Target) -> Iterator[str]:
    """Hold the GPU lock of ``target``'s host; yields the lock file's path there."""
    t0 = time.monotonic()

    def waiting() -> None:
        print(f"dlt: waiting for the GPU lock on {target.name} (another GPU run is starting "
              "there)...", file=sys.stderr)

    lock = _remote_lock(target, waiting) if target.is_remote else _local_lock(waiting)
    with lock as path:
        if time.monotonic() - t0 > _SAY_AFTER_S:
            print(f"dlt: got the GPU lock on {target.name}", file=sys.stderr)
        yield path
