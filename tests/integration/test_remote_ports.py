"""`--port` through `fab -H gpu1` (real sshd on loopback): a detached run's port reaches this
machine through a background forwarder that `stop` ends with the run; `forward RUN` in the
foreground, ended by Ctrl-C with the run going on; a taken laptop port is one line."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_ports import wait_answer
from tests.sshd_harness import Lab, fab, lab_project

pytestmark = [pytest.mark.ssh, pytest.mark.docker]

URL = re.compile(r"dlt: train (\S+): (http://127\.0\.0\.1:(\d+)\S*) \(port 8000 of the container, "
                 r"127\.0\.0\.1:(\d+) on gpu1\)")


@pytest.fixture
def proj(tmp_path: Path, ssh_lab: Lab, base_image: str) -> Iterator[tuple[Path, str]]:
    with lab_project(tmp_path, ssh_lab, f"DLT_IMAGE={base_image}\nDLT_GPUS=none\n"
                     "DLT_TRAIN_CMD=python3 -m http.server 8000\n") as made:
        yield made


def _cleanup(engine: object, project: str) -> None:
    for c in engine.containers.list(  # type: ignore[attr-defined]
            ignore_removed=True, all=True, filters={"label": f"dltasks.project={project}"}):
        c.remove(force=True)


def _pid(folder: Path) -> int:
    return int((folder / "forward.pid").read_text().split()[0])


def _gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not Path(f"/proc/{pid}/cmdline").read_bytes():  # a zombie: ended
                return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def _running(engine: object, rid: str) -> bool:
    found = engine.containers.list(  # type: ignore[attr-defined]
        ignore_removed=True, filters={"label": f"dltasks.run={rid}"})
    return bool(found) and found[0].status == "running"


def test_detached_remote_port_forwarded_in_background_and_stop_ends_both(
        ssh_lab: Lab, proj: tuple[Path, str], engine: object) -> None:
    d, name = proj
    env = ssh_lab.env()
    try:
        r = fab("-H", "gpu1", "train", "--port", "8000", "--detach", cwd=d, env=env)
        assert r.returncode == 0, r.stderr
        m = URL.search(r.stderr)
        assert m, r.stderr
        rid, url, here, there = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
        assert rid == r.stdout.strip()
        # `here` may equal `there` or not: the lab's host is this machine, where the engine's
        # userland proxy (if on) holds `there`, so the forward picks another; the URL below
        # answering after fab ended is what shows the forward
        c = engine.containers.get(json.loads(  # type: ignore[attr-defined]
            (d / "runs" / rid / "manifest.json").read_text())["container_id"])
        assert [b["HostIp"] for b in c.attrs["NetworkSettings"]["Ports"]["8000/tcp"]] == \
            ["127.0.0.1"]
        assert wait_answer(url) == 200  # the laptop URL, after fab has ended
        folder = d / "runs" / rid
        pid = _pid(folder)
        assert (folder / "forward.pid").stat().st_mode & 0o777 == 0o600
        assert (folder / "forward.log").stat().st_mode & 0o777 == 0o600
        ps = fab("-H", "gpu1", "ps", cwd=d, env=env)
        assert f"127.0.0.1:{there}->8000 (here: {here})" in ps.stdout, ps.stdout  # item 17
        again = fab("-H", "gpu1", "forward", rid, cwd=d, env=env)
        assert again.returncode == 0, again.stderr
        assert f"background forwarder (pid {pid}" in again.stderr
        assert f"http://127.0.0.1:{here} (port 8000" in again.stderr
        other = fab("-H", "gpu1", "forward", rid, "--port", "9999:8000", cwd=d, env=env)
        assert other.returncode == 0, other.stderr  # review item 12: said, not silent
        assert f"--port not applied: the background forwarder holds the ports; for others, " \
               f"end it (`kill {pid}`" in other.stderr, other.stderr
        s = fab("-H", "gpu1", "stop", rid, cwd=d, env=env)
        assert s.returncode == 0, s.stderr
        assert not _running(engine, rid)
        assert _gone(pid)
        assert _refuses(here)
        assert not (folder / "forward.pid").exists()
    finally:
        _cleanup(engine, name)


def test_foreground_forward_ends_on_ctrl_c_and_the_run_goes_on(
        ssh_lab: Lab, proj: tuple[Path, str], engine: object) -> None:
    d, name = proj
    env = ssh_lab.env()
    try:
        r = fab("-H", "gpu1", "train", "--port", "8000", "--detach", cwd=d, env=env)
        assert r.returncode == 0, r.stderr
        rid = r.stdout.strip()
        folder = d / "runs" / rid
        pid = _pid(folder)
        os.kill(pid, signal.SIGTERM)  # the background forwarder ends alone, the run goes on
        assert _gone(pid) and _running(engine, rid)
        assert not (folder / "forward.pid").exists()

        taken = socket.create_server(("127.0.0.1", 0))
        busy_port = taken.getsockname()[1]
        try:
            busy = fab("-H", "gpu1", "forward", rid, "--port", f"{busy_port}:8000", cwd=d,
                       env=env)
        finally:
            taken.close()
        assert busy.returncode == 1
        lines = busy.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            f"dlt: error: port {busy_port} on this machine is taken"), lines

        code = ("import sys; from fabric.main import program; sys.argv[0] = 'fab'; "
                "program.run()")
        p = subprocess.Popen([sys.executable, "-c", code, "-H", "gpu1", "forward", rid],
                             cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        try:
            assert p.stderr is not None
            line, deadline = "", time.monotonic() + 60
            m: re.Match[str] | None = None
            while "forwarding until Ctrl-C" not in line:
                assert time.monotonic() < deadline and p.poll() is None, line
                line = p.stderr.readline()
                m = m or URL.search(line)
            assert m
            assert wait_answer(m.group(2)) == 200
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=30)
            assert p.returncode == 0, err
            assert f"forward of {rid} closed; the run goes on" in err
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert _running(engine, rid)
        assert m and _refuses(int(m.group(3)))
        assert fab("-H", "gpu1", "stop", rid, cwd=d, env=env).returncode == 0
    finally:
        _cleanup(engine, name)
