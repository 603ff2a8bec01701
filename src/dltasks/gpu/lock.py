"""The GPU lock of a host: one exclusive lock that every user of the host agrees on.

Picking GPUs and creating (and starting) the container that claims them happen under it, so
two users starting at the same moment never get the same GPU. It is a ``flock`` on
:data:`LOCK_NAME`: the kernel drops it when its holder ends in any way (a killed ``inv``, a
closed SSH channel), so it is never left stale.

One path for everyone: the first folder of :data:`LOCK_DIRS` that is a real folder owned by
root with mode 1777 (Debian's ``/run/lock``; Fedora's, 0755 root, is skipped for ``/tmp``).
The choice depends on the folder only, never on who asks, so root and users take one lock.

Made safely, as files in a shared folder must be: created with ``O_CREAT|O_EXCL|O_NOFOLLOW``
and ``fchmod`` 0644 (whatever the umask), opened with ``O_NOFOLLOW|O_NONBLOCK`` (a FIFO
cannot stall us) and checked with ``fstat``. A symlink, anything but a plain file, or a file
other users cannot read is refused in one line naming its owner and the fix; nothing is
created, truncated or followed through it. ``flock`` needs only a read-only descriptor.

Taking it is bounded: ``DLT_LOCK_TIMEOUT`` seconds (with ``--wait``, at most what is left of
it, and a held lock is then one more reason to wait: :mod:`.share`), then one line
(:class:`LockBusy`) naming the holder where the host shows it (``/proc/locks`` gives the pid
for the file's inode; a remote holder marks its process, :data:`HELD_MARK`, because the
``flock`` program that took the lock has exited). A lock file replaced under us again and
again is given up on in the same time.

On this machine it is an ``fcntl.flock``; on a remote host, util-linux's ``flock`` on a
descriptor of a shell in an SSH exec channel (:mod:`dltasks.hosts.remote.gpulock`), which lets
go when the channel closes or when the client's heartbeat stops (a client gone from the network).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from dltasks.errors import DltError

if TYPE_CHECKING:
    from dltasks.hosts.target import Target

LOCK_NAME = "dltasks-gpus.lock"
#: Candidate folders, in order; the first that is root's with mode 1777 holds the lock.
LOCK_DIRS = ("/run/lock", "/tmp")
#: In the command line of a remote holder's process: ``<mark>:<inode>:``.
HELD_MARK = "dltasks-gpulock-held"
#: After this long waiting for the lock, say who we wait for.
_SAY_AFTER_S = 1.0
#: Seconds between tries while the lock is held by another.
_POLL_S = 0.1


def shared_dir_ok(st: os.stat_result) -> bool:
    """Whether an ``lstat`` shows a folder fit for the lock: root's, mode exactly 1777."""
    return stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o1777


def lock_dir() -> str:
    """The folder of this machine's GPU lock (the same answer for every user)."""
    for d in LOCK_DIRS:
        try:
            if shared_dir_ok(os.lstat(d)):
                return d
        except OSError:
            continue
    raise DltError(f"no folder for the GPU lock on this machine: none of {', '.join(LOCK_DIRS)}"
                   " is a root-owned folder with mode 1777; as root: chmod 1777 /tmp")


def lock_path() -> str:
    """Where this machine's GPU lock lives."""
    return os.path.join(lock_dir(), LOCK_NAME)


def owner_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


#: What can stand at the lock's name that is not a plain file: its ``S_IFMT``, the word
#: ``stat -c %F`` says for it (the remote script's), and the word our messages say.
_KINDS = ((stat.S_IFDIR, "directory", "folder"), (stat.S_IFIFO, "fifo", "FIFO"),
          (stat.S_IFSOCK, "socket", "socket"),
          (stat.S_IFCHR, "character special file", "character device"),
          (stat.S_IFBLK, "block special file", "block device"),
          (stat.S_IFLNK, "symbolic link", "symlink"))


def kind_of(mode: int) -> str:
    """Our word for what an ``st_mode`` shows (not a plain file)."""
    return next((word for fmt, _, word in _KINDS if stat.S_IFMT(mode) == fmt), "special file")


def kind_named(stat_word: str) -> str:
    """Our word for what ``stat -c %F`` calls ``stat_word`` (the remote script's answer)."""
    return next((word for _, said, word in _KINDS if said == stat_word), stat_word)


def refusal(path: str, where: str, problem: str, owner: str, mode: int = 0) -> DltError:
    """The one line for a lock file that cannot be used. ``problem``: a file kind from
    :data:`_KINDS` (symlink, folder...) or ``mode`` (other users cannot read it)."""
    who = owner if owner == "root" else f"{owner} (or root)"
    fix = f"{who} must remove it: rm {'-r ' if problem == 'folder' else ''}{path}"
    if problem == "mode":
        return DltError(f"the GPU lock {path} on {where} has mode {mode:04o} (owner {owner}): "
                        "other users cannot read it, so they cannot take the lock; "
                        f"{who} must run: chmod 644 {path}")
    if problem == "symlink":
        return DltError(f"the GPU lock {path} on {where} is a symlink (owner {owner}): dltasks "
                        f"never follows one there; {fix}")
    return DltError(f"the GPU lock {path} on {where} is a {problem}, not a plain file (owner "
                    f"{owner}); {fix}")


class LockBusy(DltError):
    """The GPU lock is still held by another after the time we were given (exit 75).

    ``holder``: who holds it, as far as the host shows ("" when it does not); ``--wait``
    takes it as one more reason to keep waiting (:mod:`dltasks.gpu.share`)."""

    def __init__(self, path: str, where: str, waited: float, holder: str) -> None:
        self.path, self.where, self.holder = path, where, holder
        super().__init__(f"the GPU lock {path} on {where} is still held by {self.who} after "
                         f"{waited:.0f}s: another GPU run is starting there (or its holder is "
                         "stuck); retry later, ask its owner, or raise DLT_LOCK_TIMEOUT", code=75)

    @property
    def who(self) -> str:
        return self.holder or "another process (the host does not show whose)"


def busy(path: str, where: str, waited: float, holder: str) -> LockBusy:
    """The one line for a lock still held after DLT_LOCK_TIMEOUT."""
    return LockBusy(path, where, waited, holder)


def check_fd(fd: int, path: str, where: str) -> os.stat_result:
    """Refuse (one line) a descriptor that is not a plain file every user can read."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise refusal(path, where, kind_of(st.st_mode), owner_name(st.st_uid))
    if not st.st_mode & stat.S_IROTH:
        raise refusal(path, where, "mode", owner_name(st.st_uid), stat.S_IMODE(st.st_mode))
    return st


def open_lock(path: str, where: str = "local") -> int:
    """A read-only descriptor of the lock file at ``path``, made (0644) when it is not there;
    a symlink, a non-regular file or one others cannot read is refused in one line."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    for _ in range(10):
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            try:  # O_EXCL: never through a symlink, never over a file made meanwhile
                fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue  # made (or planted) just now: look at it again
            except OSError as e:
                raise DltError(f"cannot make the GPU lock {path} on {where} ({e.strerror}): "
                               f"check that {os.path.dirname(path)} is a folder with mode "
                               "1777") from None
            os.fchmod(fd, 0o644)  # whatever our umask made of it
        except OSError as e:
            _refuse_unopenable(path, where, e)
        try:
            check_fd(fd, path, where)
        except BaseException:
            os.close(fd)
            raise
        return fd
    raise DltError(f"the GPU lock {path} on {where} keeps appearing and vanishing: another "
                   "user is playing with it; ask root to look")


def _refuse_unopenable(path: str, where: str, e: OSError) -> None:
    try:
        st = os.lstat(path)
    except OSError:
        st = None
    if st is not None and (e.errno == errno.ELOOP or stat.S_ISLNK(st.st_mode)):
        raise refusal(path, where, "symlink", owner_name(st.st_uid)) from None
    if st is not None and e.errno == errno.EACCES:
        raise refusal(path, where, "mode", owner_name(st.st_uid),
                      stat.S_IMODE(st.st_mode)) from None
    raise DltError(f"cannot open the GPU lock {path} on {where} ({e.strerror}): ask root to "
                   "look at it") from None


def lock_pids(locks_text: str, inode: int) -> list[int]:
    """The pids ``/proc/locks`` shows holding a FLOCK on ``inode`` (waiters, ``->``, left
    out)."""
    pids = []
    for line in locks_text.splitlines():
        f = line.split()
        if "FLOCK" not in f or "->" in f or len(f) < 8:
            continue
        if f[-3].rsplit(":", 1)[-1] == str(inode) and f[-4].lstrip("-").isdigit():
            pid = int(f[-4])
            if pid > 0 and pid not in pids:
                pids.append(pid)
    return pids


def marked(cmdline: bytes, inode: int) -> bool:
    """Whether a process's command line marks it as a remote holder of ``inode``."""
    return f"{HELD_MARK}:{inode}:".encode() in cmdline


def holder_of(path: str) -> str:
    """Who holds the lock at ``path`` on this machine, as far as /proc shows: "user (pid N,
    comm)", or "" when it does not."""
    try:
        inode = os.stat(path, follow_symlinks=False).st_ino
    except OSError:
        return ""
    candidates: list[int] = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) != os.getpid():
                with contextlib.suppress(OSError):
                    with open(f"/proc/{name}/cmdline", "rb") as f:
                        if marked(f.read(), inode):
                            candidates.append(int(name))
    with contextlib.suppress(OSError):
        with open("/proc/locks") as f:
            candidates += lock_pids(f.read(), inode)
    for pid in candidates:
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue  # gone, or the flock program that took it and exited
        return f"{owner_name(uid)} (pid {pid}, {comm})"
    return ""


@contextlib.contextmanager
def local_lock(timeout: float, waiting: Callable[[], None] = lambda: None,
               where: str = "local") -> Iterator[str]:
    """Hold this machine's GPU lock; yields its path. Gives up after ``timeout`` seconds."""
    import fcntl

    path = lock_path()
    t0 = time.monotonic()
    fd = open_lock(path, where)
    try:
        said = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                waited = time.monotonic() - t0
                if waited >= timeout:
                    raise busy(path, where, waited, holder_of(path)) from None
                if not said:
                    waiting()
                    said = True
                time.sleep(_POLL_S)
                continue
            if _same_file(fd, path):
                break
            # removed or replaced while we waited: our lock is on a file nobody else opens
            os.close(fd)
            fd = -1
            waited = time.monotonic() - t0
            if waited >= timeout:  # replaced again and again: bounded like a held lock
                raise DltError(f"the GPU lock {path} on {where} was replaced under us again and "
                               f"again for {waited:.0f}s: another user keeps removing or "
                               f"replacing it; ask root to look (ls -l {path})", code=75)
            fd = open_lock(path, where)
        yield path
    finally:
        if fd >= 0:
            os.close(fd)  # closing the descriptor drops the lock


def _same_file(fd: int, path: str) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@contextlib.contextmanager
def gpu_lock(target: Target, timeout: float | None = None,
             waiting: Callable[[], None] | None = None) -> Iterator[str]:
    """Hold the GPU lock of ``target``'s host; yields the lock file's path there.

    ``timeout``: seconds before :class:`LockBusy` (default DLT_LOCK_TIMEOUT); ``waiting``:
    called once when the lock is held by another (default: a line saying so)."""
    t0 = time.monotonic()
    timeout = max(0.0, target.settings.lock_timeout if timeout is None else timeout)

    def say_waiting() -> None:
        print(f"dlt: waiting for the GPU lock on {target.name} (another GPU run is starting "
              f"there; giving up after {timeout:.0f}s, DLT_LOCK_TIMEOUT)...", file=sys.stderr)

    waiting = waiting or say_waiting

    with target.hold_gpu_lock(timeout, waiting) as path:  # local_lock, or remote_lock over SSH
        if waiting is say_waiting and time.monotonic() - t0 > _SAY_AFTER_S:
            print(f"dlt: got the GPU lock on {target.name}", file=sys.stderr)
        yield path
