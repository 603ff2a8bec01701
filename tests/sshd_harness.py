"""Real sshd instances on loopback playing remote GPU hosts, for the remote integration tests.

``gpu1`` is 127.0.0.2 (user dltgpu1), ``gpu2`` is 127.0.0.3 (user dltgpu2), ``gpu2j`` is gpu2
reached through ``ProxyJump gpu1``. Each sshd has its own config and host key in a private
folder, ``UsePAM no`` and public-key authentication only. The users are real accounts (homes
under /home, member of group ``docker``), so the engine they reach through SSH is the local
one while the project lives at a different path (/home/dltgpu1/...) than on the "laptop".

The client side is a temporary HOME with ``.ssh/config``, a key and ``known_hosts``; every
command of the tests runs with HOME pointing there, so the real ``~/.ssh`` is never touched.

The lab is made once per test process (:func:`lab`), reused by every test module, and torn
down (sshd killed) at exit. Without sshd, root or ssh-keygen it skips, or FAILS under CI=true.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else "")
DOCKER_SOCK = Path("/var/run/docker.sock")


@dataclass
class Host:
    alias: str
    addr: str
    user: str
    port: int = 0
    dir: Path = Path()
    proc: subprocess.Popen[bytes] | None = None

    @property
    def home(self) -> Path:
        return Path("/home") / self.user

    @property
    def log(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def host_pub(self) -> Path:
        return self.dir / "ssh_host_ed25519_key.pub"

    def known_hosts_line(self) -> str:
        key = " ".join(self.host_pub.read_text().split()[:2])
        return f"[{self.addr}]:{self.port} {key}\n"


@dataclass
class Lab:
    root: Path
    home: Path
    hosts: dict[str, Host] = field(default_factory=dict)

    @property
    def ssh_config(self) -> Path:
        return self.home / ".ssh" / "config"

    @property
    def known_hosts(self) -> Path:
        return self.home / ".ssh" / "known_hosts"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a client command: HOME is the lab's, no DLT_* leaks in."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DLT_", "SSH_AUTH_SOCK", "DOCKER_HOST"))}
        env["HOME"] = str(self.home)
        env.update(extra)
        return env

    def ssh_argv(self, alias: str) -> list[str]:
        """Plain OpenSSH to ``alias`` with the lab's config (ssh reads pw_dir, not $HOME)."""
        return ["ssh", "-F", str(self.ssh_config), "-i", str(self.home / ".ssh" / "id_ed25519"),
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", alias]

    def reset_known_hosts(self) -> None:
        self.known_hosts.write_text("".join(h.known_hosts_line() for h in self.hosts.values()
                                            if h.alias in ("gpu1", "gpu2")))
        self.known_hosts.chmod(0o600)

    def sshd_children(self, alias: str) -> list[int]:
        """Pids of the processes serving connections to ``alias`` (every descendant of its
        listener: the [priv] process and the user's session process, which holds the socket
        too)."""
        host = self.hosts[alias]
        assert host.proc is not None
        out = subprocess.run(["ps", "-o", "pid=,ppid=", "-e"], capture_output=True, text=True)
        kids: dict[int, list[int]] = {}
        for line in out.stdout.splitlines():
            pid, ppid = (int(x) for x in line.split())
            kids.setdefault(ppid, []).append(pid)
        found, todo = [], list(kids.get(host.proc.pid, []))
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(kids.get(pid, []))
        return found

    def drop_connections(self, alias: str, before: set[int]) -> list[int]:
        """SIGKILL the processes serving connections to ``alias`` that were not in ``before``,
        as a dead network would end them. A process that ended by itself between the listing
        and the kill (a short exec's session, a privsep child) is simply not there any more."""
        killed = []
        for pid in set(self.sshd_children(alias)) - before:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed.append(pid)
        return killed


def _unavailable(why: str) -> None:
    if IN_CI:
        pytest.fail(f"{why} (CI=true: remote tests must not skip; run dev/test)", pytrace=False)
    pytest.skip(why)


def _free_port(addr: str) -> int:
    with socket.socket() as s:
        s.bind((addr, 0))
        return int(s.getsockname()[1])


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def _ensure_user(user: str, pub: str) -> None:
    """The account exists, is unlocked for key login, is in group docker and trusts ``pub``."""
    if subprocess.run(["id", user], capture_output=True).returncode != 0:
        extra = ["-G", "docker"] if DOCKER_SOCK.exists() else []
        made = subprocess.run(["useradd", "-m", "-s", "/bin/bash", *extra, user],
                              capture_output=True, text=True)
        # A failure is fine when a test process beside us made the account first.
        if made.returncode != 0 and subprocess.run(["id", user]).returncode != 0:
            raise RuntimeError(f"useradd {user} failed: {made.stderr.strip()}")
    _run("usermod", "-p", "*", user)  # locked accounts are refused by sshd with UsePAM no
    if DOCKER_SOCK.exists():
        _run("usermod", "-aG", "docker", user)
    ssh = Path("/home") / user / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    # Appended, not overwritten: test processes running side by side each have their own key.
    keys = ssh / "authorized_keys"
    old = keys.read_text() if keys.exists() else ""
    keys.write_text(old + ("" if not old or old.endswith("\n") else "\n") + pub)
    shutil.chown(ssh, user, user)
    shutil.chown(ssh / "authorized_keys", user, user)
    (ssh / "authorized_keys").chmod(0o600)


_SSHD_CONFIG = """\
ListenAddress {addr}:{port}
HostKey {dir}/ssh_host_ed25519_key
PidFile {dir}/sshd.pid
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowUsers dltgpu1 dltgpu2
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
MaxStartups 100
MaxSessions 100
LogLevel DEBUG1
Subsystem sftp internal-sftp
"""


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, even by a signal (no atexit)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _start_sshd(host: Host) -> None:
    host.dir.mkdir(parents=True, exist_ok=True)
    key = host.dir / "ssh_host_ed25519_key"
    if not key.exists():
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    host.port = _free_port(host.addr)
    cfg = host.dir / "sshd_config"
    cfg.write_text(_SSHD_CONFIG.format(addr=host.addr, port=host.port, dir=host.dir))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
    host.proc = subprocess.Popen([SSHD, "-D", "-f", str(cfg), "-E", str(host.log)],
                                 stdin=subprocess.DEVNULL, start_new_session=True,
                                 preexec_fn=_die_with_parent)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if host.proc.poll() is not None:
            raise RuntimeError(f"sshd for {host.alias} exited: {host.log.read_text()[-500:]}")
        with socket.socket() as s:
            if s.connect_ex((host.addr, host.port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"sshd for {host.alias} did not listen on {host.addr}:{host.port}")


def _write_client(lab: Lab) -> None:
    ssh = lab.home / ".ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    g1, g2 = lab.hosts["gpu1"], lab.hosts["gpu2"]
    lab.ssh_config.write_text(f"""\
Host gpu1
    HostName {g1.addr}
    Port {g1.port}
    User {g1.user}
    IdentityFile ~/.ssh/id_ed25519

Host gpu2
    HostName {g2.addr}
    Port {g2.port}
    User {g2.user}
    IdentityFile ~/.ssh/id_ed25519

Host gpu2j
    HostName {g2.addr}
    Port {g2.port}
    User {g2.user}
    ProxyJump gpu1
    IdentityFile ~/.ssh/id_ed25519
""")
    lab.ssh_config.chmod(0o600)
    lab.reset_known_hosts()


def _forget_key(lab: Lab) -> None:
    pub = (lab.home / ".ssh" / "id_ed25519.pub").read_text().strip()
    for host in lab.hosts.values():
        keys = host.home / ".ssh" / "authorized_keys"
        if keys.exists():
            lines = [x for x in keys.read_text().splitlines() if x.strip() != pub]
            keys.write_text("".join(x + "\n" for x in lines))


def _teardown(lab: Lab) -> None:
    try:
        _forget_key(lab)
    except OSError:
        pass
    for host in lab.hosts.values():
        if host.proc is not None and host.proc.poll() is None:
            os.killpg(host.proc.pid, signal.SIGTERM)  # the listener and its session children
            try:
                host.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(host.proc.pid, signal.SIGKILL)
    shutil.rmtree(lab.root, ignore_errors=True)


_LAB: Lab | None = None


def lab() -> Lab:
    """The running lab, made on first use (about a second) and reused until the process exits."""
    global _LAB
    if _LAB is not None:
        return _LAB
    if not SSHD:
        _unavailable("sshd is not installed (apt-get install openssh-server rsync)")
    for tool in ("ssh", "ssh-keygen", "rsync"):
        if not shutil.which(tool):
            _unavailable(f"{tool} is not installed (apt-get install openssh-client rsync)")
    if os.geteuid() != 0:
        _unavailable("the sshd lab creates users dltgpu1/dltgpu2: run the tests as root "
                     "(dev/test does, in its container)")
    root = Path(tempfile.mkdtemp(prefix="dlt-sshlab-"))
    new = Lab(root=root, home=root / "home")
    (new.home / ".ssh").mkdir(parents=True, mode=0o700)
    key = new.home / ".ssh" / "id_ed25519"
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key), "-C", "dlt-test")
    pub = key.with_suffix(".pub").read_text()
    for alias, addr, user in (("gpu1", "127.0.0.2", "dltgpu1"), ("gpu2", "127.0.0.3", "dltgpu2")):
        _ensure_user(user, pub)
        host = Host(alias, addr, user, dir=root / alias)
        new.hosts[alias] = host
    atexit.register(_teardown, new)
    for host in new.hosts.values():
        _start_sshd(host)
    _write_client(new)
    _LAB = new
    return new


def fresh_lab() -> Lab:
    """The lab, with known_hosts restored to the two hosts' real keys (for each test)."""
    the_lab = lab()
    the_lab.reset_known_hosts()
    return the_lab


@contextmanager
def lab_project(base: Path, lab: Lab, env: str, *, prefix: str = "t", engine: Any = None,
                fabfile: bool = False) -> Iterator[tuple[Path, str]]:
    """A project for the lab in ``base``/proj and its unique name: a .env with that
    DLT_PROJECT and DLT_REMOTE_DIR, then the lines ``env`` (and, with ``fabfile``, a fabfile
    with dltasks' tasks). Afterwards its folders on every lab host go, and, given ``engine``
    (the lab's hosts share this machine's), its containers."""
    from tests.conftest import project_containers

    d = base / "proj"
    d.mkdir()
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    (d / ".env").write_text(f"DLT_PROJECT={name}\nDLT_REMOTE_DIR=~/dltasks/{name}\n{env}")
    if fabfile:
        (d / "fabfile.py").write_text("from dltasks.tasks import ns  # noqa: F401\n")
    try:
        yield d, name
    finally:
        for host in lab.hosts.values():
            shutil.rmtree(host.home / "dltasks" / name, ignore_errors=True)
            shutil.rmtree(host.home / f"data-{name}", ignore_errors=True)
        if engine is not None:
            for c in project_containers(engine, name):
                c.remove(force=True)


def fab(*args: str, cwd: Path, env: dict[str, str],
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real ``fab`` program (fabfile.py = ``from dltasks.tasks import ns``) in ``cwd``."""
    fabfile = cwd / "fabfile.py"
    if not fabfile.exists():
        fabfile.write_text("from dltasks.tasks import ns  # noqa: F401\n")
    code = "import sys; from fabric.main import program; sys.argv[0] = 'fab'; program.run()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)
