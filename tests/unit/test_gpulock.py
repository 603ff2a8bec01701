"""The pure parts of the GPU lock: reading /proc/locks, the folder rule, the one-line messages,
and the remote script's answers turned into those same lines."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from dltasks.errors import DltError
from dltasks.gpu import lock as gpulock
from dltasks.hosts.remote.gpulock import _fail, remote_script

LOCKS = """\
1: POSIX  ADVISORY  WRITE 19050 fe:00:2147814 0 EOF
2: FLOCK  ADVISORY  WRITE 3039 fe:00:1466945 0 EOF
2: -> FLOCK  ADVISORY  WRITE 4242 fe:00:1466945 0 EOF
3: FLOCK  ADVISORY  WRITE 77 fe:00:14669450 0 EOF
4: OFDLCK ADVISORY  READ  -1 00:06:1466945 0 EOF
"""


def test_lock_pids_are_the_holders_of_that_inode_only() -> None:
    # not the waiter (->), not another inode sharing digits, not a POSIX/OFD lock
    assert gpulock.lock_pids(LOCKS, 1466945) == [3039]
    assert gpulock.lock_pids(LOCKS, 14669450) == [77]
    assert gpulock.lock_pids(LOCKS, 5) == []
    assert gpulock.lock_pids("garbage\n\n1: FLOCK\n", 5) == []


def test_a_holder_is_marked_with_its_inode_exactly() -> None:
    argv = b"sh\0-c\0while ...\0dltasks-gpulock-held:1466945:\0"
    assert gpulock.marked(argv, 1466945)
    assert not gpulock.marked(argv, 146694)


def _st(mode: int, uid: int) -> os.stat_result:
    return os.stat_result((mode, 1, 1, 1, uid, 0, 0, 0, 0, 0))


def test_the_folder_must_be_roots_with_mode_1777() -> None:
    assert gpulock.shared_dir_ok(_st(stat.S_IFDIR | 0o1777, 0))
    assert not gpulock.shared_dir_ok(_st(stat.S_IFDIR | 0o755, 0))      # Fedora's /run/lock
    assert not gpulock.shared_dir_ok(_st(stat.S_IFDIR | 0o1777, 1000))  # a user's
    assert not gpulock.shared_dir_ok(_st(stat.S_IFDIR | 0o777, 0))      # no sticky bit
    assert not gpulock.shared_dir_ok(_st(stat.S_IFLNK | 0o777, 0))      # a symlink


def test_messages_are_one_line_with_the_fix() -> None:
    e = gpulock.refusal("/run/lock/x", "gpu1", "mode", "eve", 0o600)
    assert e.message == ("the GPU lock /run/lock/x on gpu1 has mode 0600 (owner eve): other "
                         "users cannot read it, so they cannot take the lock; eve (or root) "
                         "must run: chmod 644 /run/lock/x")
    e = gpulock.refusal("/tmp/x", "local", "symlink", "root")
    assert e.message.endswith("root must remove it: rm /tmp/x")
    e = gpulock.busy("/tmp/x", "local", 60.2, "")
    assert e.code == 75 and "held by another process (the host does not show whose) after " \
        "60s" in e.message and "DLT_LOCK_TIMEOUT" in e.message
    for err in (e, gpulock.refusal("/tmp/x", "local", "folder", "eve")):
        assert "\n" not in err.message


@pytest.mark.parametrize("line,expected", [
    ("held eve 4242 python3", "is still held by eve (pid 4242, python3) after 3s"),
    ("held", "held by another process (the host does not show whose)"),
    ("refuse symlink eve", "is a symlink (owner eve): dltasks never follows one there; eve (or "
                           "root) must remove it: rm /run/lock/dltasks-gpus.lock"),
    ("refuse mode eve 600", "has mode 0600 (owner eve)"),
    ("refuse eve:directory", "is a folder, not a plain file (owner eve); eve (or root) must "
                             "remove it: rm -r /run/lock/dltasks-gpus.lock"),
    ("refuse eve:character special file", "is a character device, not a plain file"),
    ("refuse eve:socket", "is a socket, not a plain file"),
    ("missing flock", "`flock` is not installed on gpu1: install util-linux there"),
    ("missing timeout", "install coreutils there"),
    ("nodir", "no folder for the GPU lock on gpu1"),
    ("timeout", "no answer from gpu1 while taking its GPU lock"),
])
def test_the_remote_scripts_answers_become_the_same_lines(line: str, expected: str) -> None:
    e = _fail(line, None, "/run/lock/dltasks-gpus.lock", "gpu1", 3.0)
    assert isinstance(e, DltError) and expected in e.message and "\n" not in e.message


def test_the_remote_script_is_posix_sh_and_names_no_waiter() -> None:
    script = remote_script()
    r = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # a waiting shell's command line is the script: the holder's mark must not be in it whole
    assert gpulock.HELD_MARK not in script
    assert ": > " not in script and ">\"$f\"" not in script   # never writes through the name


def test_local_and_remote_name_a_kind_alike() -> None:
    # one table: what fstat shows here and what `stat -c %F` says there get the same word
    for fmt, stat_word in ((stat.S_IFDIR, "directory"), (stat.S_IFIFO, "fifo"),
                           (stat.S_IFSOCK, "socket"), (stat.S_IFCHR, "character special file"),
                           (stat.S_IFBLK, "block special file"), (stat.S_IFLNK, "symbolic link")):
        assert gpulock.kind_of(fmt | 0o644) == gpulock.kind_named(stat_word)
    assert gpulock.kind_of(stat.S_IFDIR) == "folder" and gpulock.kind_named("fifo") == "FIFO"


class _Channel:
    """The one seam: a channel whose script ended with ``code`` and ``stderr``."""

    def __init__(self, code: int, stderr: bytes) -> None:
        import io
        import threading

        self.code, self.stderr = code, io.BytesIO(stderr)
        self.status_event = threading.Event()
        self.status_event.set()

    def recv_exit_status(self) -> int:
        return self.code

    def makefile_stderr(self, mode: str) -> object:
        return self.stderr


def test_an_unforeseen_remote_failure_is_one_line_with_what_where_and_the_fix() -> None:
    e = _fail("", _Channel(2, b"noise\nsh: 1: cannot open /run/lock/x: Input/output error\n"),
              "/run/lock/dltasks-gpus.lock", "gpu1", 0.5)
    assert e.message == (
        "cannot take the GPU lock /run/lock/dltasks-gpus.lock on gpu1 (exit 2: sh: 1: cannot "
        "open /run/lock/x: Input/output error): check there that `sh`, `flock` and `stat` run "
        "for your user (ssh gpu1 flock --version) and that /run/lock is a root-owned folder "
        "with mode 1777 (ls -ld it)")
    e = _fail("what?", _Channel(1, b""), "/tmp/dltasks-gpus.lock", "gpu2", 0.5)
    assert "(exit 1: what?): check there" in e.message and "/tmp is a root-owned" in e.message
