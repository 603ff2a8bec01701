"""Remote hosts over real sshd on loopback: host keys, ProxyJump, the forwarded engine, -H a,b.

gpu1/gpu2 are sshd instances on 127.0.0.2/127.0.0.3 logging in as dltgpu1/dltgpu2 (see
tests/sshd_harness.py); their engine is the local one, reached through SSH.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from dltasks.errors import DltError
from tests.sshd_harness import Lab, fab

pytestmark = [pytest.mark.ssh]


def _fingerprint(pub: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True)
    return out.stdout.split()[1]


def test_config_reads_env_of_the_alias_typed(ssh_lab: Lab,
                                             remote_project: tuple[Path,
                                             str]) -> None:
    d, _ = remote_project
    (d / ".env.gpu1").write_text("DLT_DATA_DIR=/mnt/ssd/data\n")
    (d / ".env.127.0.0.2").write_text("DLT_DATA_DIR=/wrong\n")
    r = fab("-H", "gpu1", "config", cwd=d, env=ssh_lab.env())
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith("DLT_DATA_DIR"))
    assert "/mnt/ssd/data" in row and ".env.gpu1" in row


def test_engine_forwarded_over_the_ssh_connection(ssh_lab: Lab, remote_project: tuple[Path, str],
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   base_image: str, engine: object) -> None:
    import fabric

    from dltasks.hosts.remote import remote_target
    from dltasks.hosts.remote.forward import SocketForward
    from dltasks.hosts.remote.target import RemoteTarget
    from dltasks.settings import resolve

    d, name = remote_project
    monkeypatch.setenv("HOME", str(ssh_lab.home))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    t = remote_target(fabric.Connection("gpu1"), resolve(d, host="gpu1", environ={}))
    try:
        assert t.name == "gpu1" and isinstance(t, RemoteTarget) and t.syncs_project
        assert t.host_project_dir == f"/home/dltgpu1/dltasks/{name}"
        # Nagle off (else ~40 ms per short exchange), and our socket not kept for a reconnect
        assert t.shell.c.transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert "sock" not in t.shell.c.connect_kwargs
        assert t.shell.run("whoami").stdout.strip() == "dltgpu1"
        sock = t.engine_url.removeprefix("unix://")
        assert Path(sock).exists() and oct(Path(sock).parent.stat().st_mode)[-3:] == "700"
        assert t.docker.info()["ID"] == engine.info()["ID"]  # type: ignore[attr-defined]
        out = t.docker.containers.run(base_image, ["echo", "through ssh"], remove=True,
                                      labels={"dltasks.test": "1"})
        assert out == b"through ssh\n"
        # the fallback for servers with AllowStreamLocalForwarding no: docker system dial-stdio
        fwd = SocketForward(t.shell.c.transport, mode="dial-stdio")
        try:
            import docker

            client = docker.DockerClient(base_url=fwd.url)
            assert client.version()["Version"] == engine.version()["Version"]  # type: ignore[attr-defined]
            client.close()
        finally:
            fwd.close()
        assert not Path(fwd.path).exists()
    finally:
        t.close()
    assert not Path(sock).exists()


def test_unknown_host_key_refused_with_fingerprint(ssh_lab: Lab,
                                                   remote_project: tuple[Path,
                                                   str]) -> None:
    d, name = remote_project
    ssh_lab.known_hosts.write_text(ssh_lab.hosts["gpu2"].known_hosts_line())
    r = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env())
    assert r.returncode != 0
    err = r.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("dlt: error: unknown host key for gpu1")
    assert _fingerprint(ssh_lab.hosts["gpu1"].host_pub) in err
    assert f"ssh-keyscan -p {ssh_lab.hosts['gpu1'].port} 127.0.0.2" in err
    assert "Traceback" not in r.stdout + r.stderr
    assert not (ssh_lab.hosts["gpu1"].home / "dltasks" / name).exists()
    assert "127.0.0.2" not in ssh_lab.known_hosts.read_text()  # nothing accepted silently

    ok = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env(DLT_ACCEPT_NEW_HOST_KEY="true"))
    assert ok.returncode == 0, ok.stderr
    assert "accepted new host key for gpu1" in ok.stderr
    key = ssh_lab.hosts["gpu1"].host_pub.read_text().split()[1]
    assert key in ssh_lab.known_hosts.read_text()
    again = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env())
    assert again.returncode == 0 and "accepted" not in again.stderr


def test_changed_host_key_refused(ssh_lab: Lab, remote_project: tuple[Path, str]) -> None:
    d, _ = remote_project
    g1, g2 = ssh_lab.hosts["gpu1"], ssh_lab.hosts["gpu2"]
    wrong = g2.known_hosts_line().split(" ", 1)[1]
    ssh_lab.known_hosts.write_text(f"[{g1.addr}]:{g1.port} {wrong}")
    for env in (ssh_lab.env(), ssh_lab.env(DLT_ACCEPT_NEW_HOST_KEY="true")):
        r = fab("-H", "gpu1", "sync", cwd=d, env=env)
        assert r.returncode != 0
        assert "HOST KEY CHANGED" in r.stderr and _fingerprint(g1.host_pub) in r.stderr
        assert _fingerprint(g2.host_pub) in r.stderr
    assert g1.host_pub.read_text().split()[1] not in ssh_lab.known_hosts.read_text()


def test_proxyjump_honoured(ssh_lab: Lab, remote_project: tuple[Path, str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    import fabric

    from dltasks.hosts.remote import remote_target
    from dltasks.hosts.remote.sync import sync_project
    from dltasks.settings import resolve

    d, name = remote_project
    log = ssh_lab.hosts["gpu1"].log
    before = log.stat().st_size
    r = fab("-H", "gpu2j", "sync", cwd=d, env=ssh_lab.env())
    assert r.returncode == 0, r.stderr
    assert (Path("/home/dltgpu2/dltasks") / name / "main.py").is_file()
    monkeypatch.setenv("HOME", str(ssh_lab.home))
    t = remote_target(fabric.Connection("gpu2j"), resolve(d, host="gpu2j", environ={}))
    try:
        assert t.shell.run("whoami").stdout.strip() == "dltgpu2"
        assert t.docker.ping()
        jump = t.shell.c.gateway.transport.sock  # the TCP connection is the jump host's
        assert jump.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        (d / "extra.txt").write_text("x")
        # OpenSSH with the options fabric resolved (ProxyCommand for the jump, our known_hosts)
        res = sync_project(t, t.settings, quiet=True, via="ssh")
        assert res.stats.transferred == 1
        assert (Path("/home/dltgpu2/dltasks") / name / "extra.txt").is_file()
    finally:
        t.close()
    # the fab CLI, the in-process Target and OpenSSH all went through gpu1 to reach gpu2
    with log.open("rb") as f:
        f.seek(before)
        jumped = [line for line in f.read().decode(errors="replace").splitlines()
                  if "direct_tcpip" in line and "127.0.0.3" in line]
    assert len(jumped) >= 3, jumped


def test_two_hosts_one_failing_does_not_hide_the_other(ssh_lab: Lab,
                                                      remote_project: tuple[Path, str]) -> None:
    d, name = remote_project
    ssh_lab.known_hosts.write_text(ssh_lab.hosts["gpu2"].known_hosts_line())  # gpu1 unknown
    r = fab("-H", "gpu1,gpu2", "sync", cwd=d, env=ssh_lab.env())
    assert r.returncode != 0
    assert "[gpu1] unknown host key" in r.stderr
    assert "failed on 1 host(s): gpu1" in r.stderr
    assert "-> gpu2:" in r.stderr  # gpu2 still ran, after gpu1 failed
    assert (Path("/home/dltgpu2/dltasks") / name / "main.py").is_file()
    ssh_lab.reset_known_hosts()
    ok = fab("-H", "gpu1,gpu2", "sync", cwd=d, env=ssh_lab.env())
    assert ok.returncode == 0, ok.stderr
    assert "-> gpu1:" in ok.stderr and "-> gpu2:" in ok.stderr


def test_a_host_named_twice_is_refused_and_a_users_own_task_runs_ours_as_called(
        ssh_lab: Lab, remote_project: tuple[Path, str]) -> None:
    """`fab -H gpu1,gpu1 sync`: one line, nothing done (which of fabric's calls is whose could
    not be told). A user's own fab task that calls one of ours with its host's Connection runs
    ours as called, for that host only: never as a group at the first host, never skipped."""
    d, name = remote_project
    r = fab("-H", "gpu1,gpu1", "sync", cwd=d, env=ssh_lab.env())
    assert r.returncode == 2 and "-H names gpu1 twice (gpu1): name each host once" in r.stderr
    assert "->" not in r.stderr
    (d / "fabfile.py").write_text(
        "from fabric import task\n"
        "from dltasks.tasks import ns\n"
        "from dltasks.tasks.remote import sync\n\n\n"
        "@task\n"
        "def mine(c):\n"
        "    if c.original_host == 'gpu2':\n"
        "        sync(c)\n\n\n"
        "ns.add_task(mine)\n")
    r = fab("-H", "gpu1,gpu2", "mine", cwd=d, env=ssh_lab.env())
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("-> gpu2:") == 1 and "-> gpu1:" not in r.stderr
    assert (Path("/home/dltgpu2/dltasks") / name / "main.py").is_file()


def test_sync_and_fetch_need_a_remote_host(remote_project: tuple[Path, str]) -> None:
    from tests.conftest import dlt

    d, _ = remote_project
    r = dlt("sync", cwd=d, env={"HOME": os.environ.get("HOME", "/root")})
    assert r.returncode != 0 and "fab -H HOST sync" in r.stderr


def test_proxyjump_hop_key_checked_too(ssh_lab: Lab, remote_project: tuple[Path, str]) -> None:
    d, name = remote_project
    ssh_lab.known_hosts.write_text(ssh_lab.hosts["gpu2"].known_hosts_line())  # hop unknown
    r = fab("-H", "gpu2j", "sync", cwd=d, env=ssh_lab.env())
    assert r.returncode != 0
    assert "unknown host key for gpu1" in r.stderr
    assert _fingerprint(ssh_lab.hosts["gpu1"].host_pub) in r.stderr
    assert not (Path("/home/dltgpu2/dltasks") / name).exists()


def test_an_engine_started_after_connecting_is_found(
        ssh_lab: Lab, remote_project: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine is first asked for while connecting; `setup` may start it only later, so a
    failed first attempt is not the last word."""
    import fabric

    from dltasks.hosts.remote import remote_target
    from dltasks.settings import resolve

    d, _ = remote_project
    later = Path(tempfile.mkdtemp(prefix="dlt-later-", dir="/tmp"))  # gpu1's user can reach it
    later.chmod(0o755)
    sock = later / "docker.sock"
    (d / ".env.gpu1").write_text(f"DLT_DOCKER_HOST=unix://{sock}\n")
    monkeypatch.setenv("HOME", str(ssh_lab.home))
    t = remote_target(fabric.Connection("gpu1"), resolve(d, host="gpu1", environ={}))
    try:
        future = t.resources._future
        assert future is not None
        with pytest.raises(DltError, match=f"cannot reach the Docker engine on gpu1: no socket "
                                           f"at unix://{sock} there: start the engine there"):
            future.result(timeout=30)  # the first attempt found nothing
        sock.symlink_to("/var/run/docker.sock")  # the engine appears
        assert t.engine.info()["ID"]
    finally:
        t.close()
        shutil.rmtree(later)
