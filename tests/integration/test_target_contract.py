"""One contract, two kinds of target (issue 22, point 2): the same test body runs against a
LocalTarget (this machine, an invoke Context) and a RemoteTarget (gpu1 of the sshd lab, a
fabric Connection). Real sshd, real engine, real GPU lock file: nothing is faked.

What a caller may rely on, whatever the kind: a shell program's output and exit code, a
program started now and collected later, the engine answering (and listing a container made
on it), the host's GPU lock held and refused to a second taker until released, liveness,
sync (a no-op here, a file arriving there), the project's folder on the host, who runs there.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sshd_harness import Lab


@pytest.fixture(params=["local", pytest.param("remote", marks=pytest.mark.ssh)])
def target(request: pytest.FixtureRequest, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Path, str]]:
    """(the target, the project folder here, the project folder the host should use)."""
    from invoke import Context

    from dltasks.hosts.target import open_target
    from dltasks.settings import resolve

    for k in [k for k in os.environ if k.startswith("DLT_")]:
        monkeypatch.delenv(k)
    if request.param == "local":
        d = tmp_path / "proj"
        d.mkdir()
        (d / "main.py").write_text("print('hi')\n")
        t = open_target(Context(), resolve(d, environ={}))
        expected_dir = str(d)
    else:
        import fabric

        lab: Lab = request.getfixturevalue("ssh_lab")
        d, name = request.getfixturevalue("remote_project")
        monkeypatch.setenv("HOME", str(lab.home))  # the lab's ssh config and known_hosts
        monkeypatch.delenv("DOCKER_HOST", raising=False)
        t = open_target(fabric.Connection("gpu1"), resolve(d, host="gpu1", environ={}))
        expected_dir = str(lab.hosts["gpu1"].home / "dltasks" / name)
    try:
        yield t, d, expected_dir
    finally:
        t.close()


def test_target_contract(target: tuple[Any, Path, str], engine: Any, base_image: str) -> None:
    from dltasks.gpu.lock import LockBusy
    from dltasks.hosts.target import HostLogin, Target

    t, d, host_dir = target
    assert isinstance(t, Target)
    remote = t.name != "local"

    # where the project is on the host; who runs there
    assert t.host_project_dir == host_dir
    who = t.who()
    assert isinstance(who, HostLogin) and who.cpus >= 1
    assert who.user == ("dltgpu1" if remote else getpass.getuser())
    assert t.own_uid_gid in ("", who.uid_gid)
    assert t.task_command("logs") == ("fab -H gpu1 logs" if remote else "inv logs")
    assert t.peer_address() == ("127.0.0.2" if remote else "127.0.0.1")

    # a shell program on the host: its output and its exit code
    res = t.run_script('echo "out:$1"; echo "err" >&2; exit 3', "a b")
    assert (res.code, res.stdout, res.stderr.strip()) == (3, "out:a b\n", "err")
    started = t.start(["sh", "-c", 'printf "%s" "$HOME"'])
    assert started().stdout == ("/home/dltgpu1" if remote else os.path.expanduser("~"))

    # paths on the host: a missing one named, a folder made only when nothing is missing
    made = f"{host_dir}/made-{uuid.uuid4().hex[:6]}"
    assert t.prepare([f"{host_dir}/nope"], [])[1] == [f"{host_dir}/nope"]

    # sync: the project's copy on the host (none for this machine)
    (d / "arrived.txt").write_text("synced\n")
    synced = t.sync_project()
    assert t.syncs_project is remote
    if remote:
        assert synced is not None
        assert (Path(host_dir) / "arrived.txt").read_text() == "synced\n"
    else:
        assert synced is None and sorted(p.name for p in d.iterdir()) == ["arrived.txt",
                                                                          "main.py"]
    assert t.prepare([f"{host_dir}/main.py"], [made]) == (who, [])
    assert t.run_script('[ -d "$1" ]', made).ok

    # a file put on the host for a container to mount: the same bytes there
    probe = d / "probe.py"
    probe.write_text("print('probe')\n")
    there = t.copy_of(probe, "probe")
    assert t.run_script('cat "$1"', there, check=True).stdout == "print('probe')\n"

    # the engine answers, and lists a container made on it
    label = f"dltasks.contract={uuid.uuid4().hex[:8]}"
    c = engine.containers.create(base_image, ["true"], labels={label.split("=")[0]:
                                                                label.split("=")[1]})
    try:
        assert t.engine.info().get("ID")
        listed = t.engine.containers(filters={"label": [label]})
        assert [x["Id"] for x in listed] == [c.id]
        assert t.docker.ping()
    finally:
        c.remove(force=True)

    # the GPU lock: held, refused to a second taker while held, free again after
    waited = threading.Event()
    with t.hold_gpu_lock(30, lambda: None) as path:
        assert path.endswith("dltasks-gpus.lock")
        with pytest.raises(LockBusy) as busy:
            with t.hold_gpu_lock(0.5, waited.set):
                pass
        assert waited.is_set() and "GPU lock" in busy.value.message
    with t.hold_gpu_lock(5, lambda: None) as again:
        assert again == path

    # liveness
    assert t.is_alive()
    t.check_alive("r1")

    # a port on the host's loopback, reachable here while forwarded (the lab's hosts are this
    # machine: the port is taken here, so a remote target forwards another port to it)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    answered = threading.Thread(target=_answer_once, args=(server,), daemon=True)
    answered.start()
    try:
        # a detached run's forwards outlive us only through a process of their own, remotely
        assert t.forwards_need_a_process is remote
        with t.forward_port(port) as here:
            assert (here == port) is not remote
            with socket.create_connection(("127.0.0.1", here), timeout=10) as conn:
                conn.sendall(b"ping")
                assert conn.recv(64) == b"pong:ping"
        answered.join(10)
        if remote:  # the forward is gone with the block
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", here), timeout=5).close()
    finally:
        server.close()


def _answer_once(server: socket.socket) -> None:
    """Answer the first connection that sends something (a remote forward first opens one
    that sends nothing: its check that sshd forwards TCP at all)."""
    while True:
        conn, _ = server.accept()
        with conn:
            data = conn.recv(64)
            if data:
                conn.sendall(b"pong:" + data)
                return
