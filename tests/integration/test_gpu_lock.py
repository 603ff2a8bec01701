"""The GPU lock on a shared host, tried by real users: one path for all, hostile files at the
lock's name refused (their targets untouched), a held lock given up on in one line naming the
holder, a vanished remote client's hold released within a minute.

Real pieces: two throwaway system users (tests/users.py), the real ``flock``, ``/proc`` and
files; the remote lock over the real sshd lab (gpu1 = user dltgpu1, gpu2 = dltgpu2 on this
machine, so a remote holder and a local one share one kernel). The lock's folder is a
root-owned 1777 folder made per test in place of /run/lock (``gpulock.LOCK_DIRS``, read by the
local lock and by the remote script alike): planting symlinks at the real path would stall
every other GPU test on this machine. The real path is checked where nothing is planted.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dltasks.errors import DltError
from dltasks.gpu import lock as gpulock
from dltasks.hosts.remote.gpulock import remote_lock
from tests.sshd_harness import Lab
from tests.users import User, throwaway_user

pytestmark = [pytest.mark.slow]

BASE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def users() -> Iterator[tuple[User, User]]:
    with throwaway_user() as a, throwaway_user() as b:
        yield a, b


@pytest.fixture
def lock_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder like Debian's /run/lock (root's, 1777), standing in for it in this process."""
    d = Path(f"/tmp/dlt-locktest-{uuid.uuid4().hex[:8]}")
    d.mkdir()
    d.chmod(0o1777)
    monkeypatch.setattr(gpulock, "LOCK_DIRS", (str(d),))
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A root folder (0755) under /tmp that every user can look into, unlike tmp_path."""
    d = Path(f"/tmp/dlt-locktest-x-{uuid.uuid4().hex[:8]}")
    d.mkdir()
    d.chmod(0o755)
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


def as_user(u: User, code: str, dirs: tuple[str, ...] | None, *, timeout: float = 60,
            popen: bool = False) -> Any:
    """Python ``code`` as ``u`` with this tree's dltasks (LOCK_DIRS set to ``dirs``)."""
    pre = "import dltasks.gpu.lock as g\n" + (f"g.LOCK_DIRS = {dirs!r}\n" if dirs else "")
    argv = ["runuser", "-u", u.name, "--", "env", "-i", f"PYTHONPATH={u.py}",
            f"PATH={BASE_PATH}", "LANG=C.UTF-8", "/usr/bin/python3", "-c", pre + code]
    if popen:
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def sh_as(u: User, script: str) -> None:
    subprocess.run(["runuser", "-u", u.name, "--", "sh", "-c", script], check=True)


TRY = """
import time
t = time.monotonic()
try:
    with g.local_lock({timeout}) as p:
        print("GOT", p)
except Exception as e:
    print("ERR", e)
print("TOOK", time.monotonic() - t)
"""

HOLD = """
import sys
with g.local_lock(30):
    print("locked", flush=True)
    sys.stdin.read()
"""


def try_as(u: User, d: Path, timeout: float = 30) -> tuple[str, float]:
    """(the one line a lock attempt as ``u`` ended with, seconds it took)."""
    r = as_user(u, TRY.format(timeout=timeout), (str(d),))
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and len(lines) == 2, r.stdout + r.stderr
    return lines[0], float(lines[1].split()[1])


def try_here(timeout: float = 30) -> tuple[str, float]:
    t = time.monotonic()
    try:
        with gpulock.local_lock(timeout) as p:
            return f"GOT {p}", time.monotonic() - t
    except DltError as e:
        assert "\n" not in e.message
        return f"ERR {e.message}", time.monotonic() - t


class Holder:
    """``u`` holds the lock in ``d`` (a real process) until :meth:`end`."""

    def __init__(self, u: User, d: Path) -> None:
        self.p = as_user(u, HOLD, (str(d),), popen=True)
        assert self.p.stdout.readline().strip() == "locked", self.p.stderr.read()

    def end(self) -> None:
        self.p.stdin.close()
        self.p.wait(timeout=30)


def test_root_and_users_compute_one_path(users: tuple[User, User], scratch: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    a, _ = users
    r = as_user(a, "print(g.lock_path())", None)
    assert r.stdout.strip() == gpulock.lock_path(), r.stderr   # the real one, as it stands
    # a host whose /run/lock is 0755 root (Fedora, RHEL, Arch): root can write there, users
    # cannot; both must still take the lock in the next folder
    fedora = scratch / "runlock"
    fedora.mkdir()
    fedora.chmod(0o755)
    shared = scratch / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    theirs = scratch / "theirs"   # 1777 but a user's: not trusted either
    theirs.mkdir()
    theirs.chmod(0o1777)
    os.chown(theirs, a.uid, -1)
    dirs = (str(fedora), str(theirs), str(shared))
    r = as_user(a, "print(g.lock_path())", dirs)
    assert r.stdout.strip() == f"{shared}/{gpulock.LOCK_NAME}", r.stderr
    monkeypatch.setattr(gpulock, "LOCK_DIRS", dirs)
    assert gpulock.lock_path() == f"{shared}/{gpulock.LOCK_NAME}"


def test_the_file_is_made_0644_whatever_the_umask_and_shared(users: tuple[User, User],
                                                            lock_dir: Path) -> None:
    a, b = users
    r = as_user(a, "import os; os.umask(0o077)\n" + TRY.format(timeout=5), (str(lock_dir),))
    assert r.stdout.startswith("GOT "), r.stdout + r.stderr
    st = os.lstat(lock_dir / gpulock.LOCK_NAME)
    assert stat.S_IMODE(st.st_mode) == 0o644 and st.st_uid == a.uid
    assert try_as(b, lock_dir)[0].startswith("GOT ")
    assert try_here()[0].startswith("GOT ")


def test_a_lock_held_by_another_user_times_out_in_one_line_naming_the_holder(
        users: tuple[User, User], lock_dir: Path) -> None:
    a, b = users
    holder = Holder(a, lock_dir)
    try:
        line, took = try_as(b, lock_dir, timeout=2)
        assert line.startswith(f"ERR the GPU lock {lock_dir}/{gpulock.LOCK_NAME} on local is "
                               f"still held by {a.name} (pid "), line
        assert "python3) after 2s: " in line, line
        assert "DLT_LOCK_TIMEOUT" in line and 2 <= took < 6, (line, took)
        line, took = try_here(timeout=1)
        assert f"still held by {a.name} (pid " in line and "python3)" in line, line
        assert 1 <= took < 5
    finally:
        holder.end()
    assert try_as(b, lock_dir, timeout=2)[0].startswith("GOT ")   # let go: free again


def test_a_file_precreated_0600_by_another_user_is_refused_with_the_fix(
        users: tuple[User, User], lock_dir: Path) -> None:
    a, b = users
    path = lock_dir / gpulock.LOCK_NAME
    sh_as(a, f"umask 077; : > {path}")
    for line, took in (try_as(b, lock_dir), try_here()):   # root too, though it could read it
        assert line == (f"ERR the GPU lock {path} on local has mode 0600 (owner {a.name}): other"
                        " users cannot read it, so they cannot take the lock; "
                        f"{a.name} (or root) must run: chmod 644 {path}"), line
        assert took < 5                                        # refused, not a hang
    assert stat.S_IMODE(path.stat().st_mode) == 0o600          # left as it was


def planted(u: User, d: Path, scratch: Path) -> Iterator[tuple[str, Path, bytes | None]]:
    """A dangling symlink, then one to a real file, planted by ``u`` at the lock's name:
    (what, target, the target's bytes before or None)."""
    path = d / gpulock.LOCK_NAME
    far = scratch / "far"
    far.mkdir(exist_ok=True)
    far.chmod(0o1777)   # anyone could create the target there, were it followed
    ghost = far / "ghost"
    sh_as(u, f"ln -s {ghost} {path}")
    yield "dangling", ghost, None
    subprocess.run(["rm", "-f", str(path)], check=True)
    real = far / "real"
    real.write_bytes(b"precious\n")
    real.chmod(0o644)
    os.utime(real, (1_000_000_000, 1_000_000_000))
    sh_as(u, f"ln -s {real} {path}")
    yield "real", real, b"precious\n"


def assert_untouched(target: Path, before: bytes | None) -> None:
    if before is None:
        assert not os.path.lexists(target)                 # never created
    else:
        assert target.read_bytes() == before                # never truncated
        assert target.stat().st_mtime == 1_000_000_000


def test_a_symlink_at_the_lock_path_is_refused_and_its_target_untouched(
        users: tuple[User, User], lock_dir: Path, scratch: Path) -> None:
    a, b = users
    path = lock_dir / gpulock.LOCK_NAME
    for what, target, before in planted(a, lock_dir, scratch):
        for line, took in (try_as(b, lock_dir), try_here()):
            assert line == (f"ERR the GPU lock {path} on local is a symlink (owner {a.name}): "
                            f"dltasks never follows one there; {a.name} (or root) must remove "
                            f"it: rm {path}"), (what, line)
            assert took < 5
            assert_untouched(target, before)
        assert os.path.islink(path)                         # not ours to remove


def test_a_fifo_or_a_folder_at_the_lock_path_is_refused_not_waited_on(
        users: tuple[User, User], lock_dir: Path) -> None:
    a, _ = users
    path = lock_dir / gpulock.LOCK_NAME
    sh_as(a, f"mkfifo -m 644 {path}")
    line, took = try_here()
    assert line == (f"ERR the GPU lock {path} on local is a FIFO, not a plain file (owner "
                    f"{a.name}); {a.name} (or root) must remove it: rm {path}")
    assert took < 5
    path.unlink()
    sh_as(a, f"mkdir -m 755 {path}")
    line, _ = try_here()
    assert f"is a folder, not a plain file (owner {a.name}); " in line and "rm -r" in line


def test_a_lock_file_replaced_again_and_again_is_given_up_on_in_time(
        lock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # another user replaces the file after each of our flocks (the one seam: the moment it
    # happens, just before we compare the file we locked with the one at the path)
    path = lock_dir / gpulock.LOCK_NAME
    real_same = gpulock._same_file
    swaps = []

    def replaced_first(fd: int, p: str) -> bool:
        new = lock_dir / f"new-{len(swaps)}"
        new.write_bytes(b"")
        new.chmod(0o644)
        os.rename(new, path)   # a real new file at the lock's name, as `mv` would make
        swaps.append(1)
        return real_same(fd, p)

    monkeypatch.setattr(gpulock, "_same_file", replaced_first)
    result: list[tuple[str, float]] = []
    t = threading.Thread(target=lambda: result.append(try_here(timeout=1)), daemon=True)
    t.start()
    t.join(timeout=30)
    assert not t.is_alive(), f"still reopening after 30s ({len(swaps)} replacements)"
    ((line, took),) = result
    assert line == (f"ERR the GPU lock {path} on local was replaced under us again and again "
                    "for 1s: another user keeps removing or replacing it; ask root to look "
                    f"(ls -l {path})"), line
    assert 1 <= took < 5 and len(swaps) > 1
    assert path.is_file()   # nothing of theirs removed


# -- the remote lock: the same rules in its script, and a heartbeat --------------------------

@pytest.fixture
def gpu1(ssh_lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A paramiko transport to gpu1 (user dltgpu1), as dltasks holds one."""
    import fabric

    monkeypatch.setenv("HOME", str(ssh_lab.home))
    c = fabric.Connection("gpu1")
    c.open()
    yield c.transport
    c.close()


def try_remote(transport: Any, timeout: float = 30) -> tuple[str, float]:
    t = time.monotonic()
    try:
        with remote_lock(transport, "gpu1", timeout) as p:
            return f"GOT {p}", time.monotonic() - t
    except DltError as e:
        assert "\n" not in e.message
        return f"ERR {e.message}", time.monotonic() - t


@pytest.mark.ssh
def test_remote_lock_is_made_safely_and_refuses_what_local_refuses(
        users: tuple[User, User], lock_dir: Path, scratch: Path, gpu1: Any) -> None:
    a, _ = users
    path = lock_dir / gpulock.LOCK_NAME
    assert try_remote(gpu1)[0] == f"GOT {path}"
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644
    assert st.st_uid == int(subprocess.run(["id", "-u", "dltgpu1"], capture_output=True,
                                           text=True).stdout)
    assert sorted(os.listdir(lock_dir)) == [gpulock.LOCK_NAME]   # no temporary file left
    path.unlink()

    for what, target, before in planted(a, lock_dir, scratch):
        line, took = try_remote(gpu1)
        assert line == (f"ERR the GPU lock {path} on gpu1 is a symlink (owner {a.name}): "
                        f"dltasks never follows one there; {a.name} (or root) must remove "
                        f"it: rm {path}"), (what, line)
        assert took < 10
        assert_untouched(target, before)
    path.unlink()

    sh_as(a, f"umask 077; : > {path}")
    line, _ = try_remote(gpu1)
    assert line == (f"ERR the GPU lock {path} on gpu1 has mode 0600 (owner {a.name}): other "
                    f"users cannot read it, so they cannot take the lock; {a.name} (or root) "
                    f"must run: chmod 644 {path}")
    path.unlink()
    sh_as(a, f"mkfifo -m 644 {path}")
    line, took = try_remote(gpu1)
    assert line.startswith(f"ERR the GPU lock {path} on gpu1 is a FIFO, not a plain file "
                           f"(owner {a.name})") and took < 10, line


@pytest.mark.ssh
def test_remote_and_local_holders_are_named_to_each_other(
        users: tuple[User, User], lock_dir: Path, gpu1: Any) -> None:
    a, _ = users
    holder = Holder(a, lock_dir)
    try:
        line, took = try_remote(gpu1, timeout=2)
        assert f"ERR the GPU lock {lock_dir}/{gpulock.LOCK_NAME} on gpu1 is still held by " \
               f"{a.name} (pid " in line and ", python3) after 2s: " in line, line
        assert 2 <= took < 10
    finally:
        holder.end()
    with remote_lock(gpu1, "gpu1", 5):
        # the flock program that took it is gone; the marked shell holding it is named
        line, _ = try_here(timeout=1)
        assert "still held by dltgpu1 (pid " in line and ", sh) after 1s" in line, line
        line, _ = try_as(a, lock_dir, timeout=1)
        assert "still held by dltgpu1 (pid " in line, line
    assert try_here(timeout=5)[0].startswith("GOT ")


_REMOTE_HOLDER = """
import sys, time, fabric
import dltasks.gpu.lock as g
from dltasks.hosts.remote.gpulock import remote_lock
g.LOCK_DIRS = ({d!r},)
c = fabric.Connection("gpu1")
c.open()
with remote_lock(c.transport, "gpu1", 10):
    print("locked", flush=True)
    time.sleep(600)
"""


def _remote_holder(ssh_lab: Lab, d: Path) -> subprocess.Popen[str]:
    env = ssh_lab.env(PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen([sys.executable, "-c", _REMOTE_HOLDER.format(d=str(d))], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "locked", \
        p.stderr.read() if p.stderr else ""
    return p


@pytest.mark.ssh
def test_a_vanished_remote_client_lets_go_within_a_minute(
        ssh_lab: Lab, lock_dir: Path, gpu1: Any) -> None:
    # frozen: its TCP connection stays open and sends nothing, as a laptop gone from the
    # network; only the missing heartbeat can tell the host
    frozen = _remote_holder(ssh_lab, lock_dir)
    killed: subprocess.Popen[str] | None = None
    try:
        assert try_remote(gpu1, timeout=1)[0].startswith("ERR ")   # held
        frozen.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        line, _ = try_remote(gpu1, timeout=90)
        assert line.startswith("GOT "), line
        assert time.monotonic() - t0 < 70
        # killed: its kernel closes the connection, the host lets go at once
        killed = _remote_holder(ssh_lab, lock_dir)
        killed.kill()
        killed.wait()
        line, took = try_remote(gpu1, timeout=30)
        assert line.startswith("GOT ") and took < 10, (line, took)
    finally:
        for p in (frozen, killed):
            if p is not None and p.poll() is None:
                p.kill()
                p.send_signal(signal.SIGCONT)
                p.wait()
