"""Every failure a user can cause or meet is one line, a non-zero exit, and nothing left behind:
against the real engine, or a real socket that misbehaves on purpose (a proxy in front of the
real engine that answers chosen calls itself)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import dlt

pytestmark = pytest.mark.docker

REAL = "/var/run/docker.sock"


def one_line(r: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert r.returncode == code, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stdout + r.stderr, r.stderr
    return lines[0]


def left_by(engine: Any, project: Path) -> list[Any]:
    """The containers of this test's project (every test's project is named proj: another
    test's leftovers are told apart by their record folder)."""
    found = engine.containers.list(
            ignore_removed=True, all=True, filters={"label": "dltasks.project=proj"})
    return [c for c in found
            if c.labels.get("dltasks.record", "").startswith(f"{project}{os.sep}")]


def nothing_left(engine: Any, project: Path) -> None:
    assert not (project / "runs").exists() or not any((project / "runs").iterdir())
    assert left_by(engine, project) == []


class Proxy:
    """A unix socket in front of the real engine: requests matching a rule get the rule's
    answer, everything else goes through (one request per connection, then it closes)."""

    def __init__(self, path: Path, rules: dict[str, bytes]) -> None:
        self.path, self.rules = path, {re.compile(k): v for k, v in rules.items()}
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            m = re.search(rb"content-length:\s*(\d+)", head, re.I)
            while m and len(body) < int(m.group(1)):
                body += conn.recv(65536)
            line = head.split(b"\r\n", 1)[0].decode()
            for rule, answer in self.rules.items():
                if rule.search(line):
                    conn.sendall(answer)
                    return
            head = re.sub(rb"(?im)^connection:.*\r\n", b"", head + b"\r\n") + \
                b"Connection: close\r\n"
            with socket.socket(socket.AF_UNIX) as up:
                up.connect(REAL)
                up.sendall(head + b"\r\n" + body)
                while chunk := up.recv(65536):
                    conn.sendall(chunk)

    def close(self) -> None:
        self.sock.close()


def answer(status: str, message: str) -> bytes:
    body = json.dumps({"message": message}).encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: "
            f"{len(body)}\r\nConnection: close\r\n\r\n").encode() + body


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Callable[[dict[str, str | bytes]], Proxy]]:
    made: list[Proxy] = []

    def make(rules: dict[str, Any]) -> Proxy:
        p = Proxy(tmp_path / f"proxy{len(made)}.sock", rules)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def _env(project: Path, image: str, extra: str = "") -> None:
    (project / ".env").write_text(f"DLT_IMAGE={image}\nDLT_GPUS=none\nDLT_TRAIN_CMD=true\n"
                                  + extra)


def test_image_not_found(engine: Any, project: Path) -> None:
    r = dlt("train", "--image", "nope:1", "--gpu", "none", cwd=project)
    line = one_line(r)
    assert line == ("dlt: error: image nope:1 is not on this machine's engine "
                    "(unix:///var/run/docker.sock): build it with `dlt extend-image`, pull it "
                    "(`docker pull nope:1`), or set DLT_IMAGE to an image it has")
    nothing_left(engine, project)


def test_engine_500_on_ps(proxy: Any, project: Path) -> None:
    p = proxy({r"GET /v[\d.]+/containers/json": answer("500 Internal Server Error", "boom")})
    line = one_line(dlt("ps", cwd=project, env={"DLT_DOCKER_HOST": p.url}))
    assert line == (f"dlt: error: the Docker engine at {p.url} (DLT_DOCKER_HOST from "
                    "environment) failed to GET /containers/json (500: boom): see the engine's "
                    "log (`journalctl -u docker`)")


def test_authorization_plugin_refusing_a_run(engine: Any, proxy: Any, base_image: str,
                                             project: Path) -> None:
    p = proxy({r"POST /v[\d.]+/containers/create": answer(
        "403 Forbidden", "authorization denied by plugin opa-docker-authz: no GPUs for you")})
    _env(project, base_image, f"DLT_DOCKER_HOST={p.url}\n")
    line = one_line(dlt("train", cwd=project))
    assert line == ("dlt: error: the engine on local refused the container: authorization "
                    "denied by plugin opa-docker-authz: no GPUs for you (an authorization "
                    "plugin said no: ask the engine's administrator)")
    record = json.loads(next((project / "runs").glob("*/manifest.json")).read_text())
    assert record["status"] == "failed to start" and "opa-docker-authz" in record["error"]
    assert left_by(engine, project) == []


def test_nothing_listening(project: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # bound once, now closed: nothing listens there
    line = one_line(dlt("ps", cwd=project, env={"DOCKER_HOST": f"tcp://127.0.0.1:{port}"}))
    assert line.startswith(f"dlt: error: cannot reach the Docker engine at tcp://127.0.0.1:"
                           f"{port} (DOCKER_HOST): nothing listens there (connection refused)")


def test_a_peer_that_is_not_http(project: Path, loopback_server: Any) -> None:
    port = loopback_server(b"SSH-2.0-OpenSSH_9.2p1\r\n")
    line = one_line(dlt("ps", cwd=project, env={"DOCKER_HOST": f"tcp://127.0.0.1:{port}"}))
    assert "does not answer like a Docker engine (it sent b'SSH-2.0-OpenSSH_9.2p1" in line
    assert "check the port in DOCKER_HOST" in line


def test_an_engine_that_never_answers(project: Path, loopback_server: Any) -> None:
    port = loopback_server(None)
    t0 = time.monotonic()
    line = one_line(dlt("ps", cwd=project, env={"DOCKER_HOST": f"tcp://127.0.0.1:{port}",
                                                 "DLT_ENGINE_TIMEOUT": "2"}))
    assert time.monotonic() - t0 < 20
    assert line == (f"dlt: error: cannot reach the Docker engine at tcp://127.0.0.1:{port} "
                    "(DOCKER_HOST): no answer within 2s: check the address and port, and "
                    "whether a firewall drops the connection")


def test_unforeseen_error_is_one_line_and_a_log(tmp_path: Path, monkeypatch: Any) -> None:
    """An error nobody foresaw (here: a task body that raises RuntimeError)."""
    from invoke import Context, Exit

    from dltasks.tasks._common import dlt_task

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    @dlt_task
    def boom(c: Any) -> None:
        raise RuntimeError("the flux capacitor\nsecond line")

    with pytest.raises(Exit) as e:
        boom.body(Context())
    log = tmp_path / "dltasks" / "error.log"
    assert e.value.code == 1
    assert str(e.value.message) == ("dlt: error: unexpected error: RuntimeError: the flux "
                                    f"capacitor (the traceback is in {log}; please report it)")
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "the flux capacitor" in text


def test_dlt_run_id_in_the_environment_is_not_a_bad_setting(project: Path) -> None:
    r = dlt("config", cwd=project, env={"DLT_RUN_ID": "20261201-000000-abcd"})
    assert r.returncode == 0, r.stderr


def test_arguments_after_dashes_from_program_run(project: Path, base_image: str) -> None:
    _env(project, base_image)
    code = ("from dltasks.cli import program; program.run(['dlt', 'train', '--dry-run', '--', "
            "'--lr', 'a b'], exit=False)")
    r = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True,
                       text=True, env={k: v for k, v in os.environ.items()
                                       if not k.startswith("DLT_")})
    assert r.returncode == 0, r.stderr
    assert "true --lr 'a b'" in r.stdout, r.stdout


def test_detached_record_learns_its_end(engine: Any, base_image: str, project: Path) -> None:
    _env(project, base_image)
    (project / ".env").write_text(f"DLT_IMAGE={base_image}\nDLT_GPUS=none\n"
                                  "DLT_TRAIN_CMD=sh -c 'exit 3'\n")
    r = dlt("train", "--detach", cwd=project)
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.strip().splitlines()[-1]
    path = project / "runs" / run_id / "manifest.json"
    deadline = time.monotonic() + 30
    while engine.containers.list(
            ignore_removed=True, filters={"label": f"dltasks.run={run_id}"}) and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    assert json.loads(path.read_text())["exit_code"] is None
    runs = dlt("runs", cwd=project)
    assert runs.returncode == 0, runs.stderr
    m = json.loads(path.read_text())
    assert m["exit_code"] == 3 and m["ended"] and m["status"] == "exited"
    assert re.search(rf"{run_id}\s+train\s+local\s+3\s", runs.stdout), runs.stdout
    assert dlt("stop", run_id, cwd=project).returncode == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_train_stopped_by_a_signal_leaves_nothing(engine: Any, base_image: str, project: Path,
                                                  sig: int) -> None:
    (project / ".env").write_text(f"DLT_IMAGE={base_image}\nDLT_GPUS=none\nDLT_STOP_TIMEOUT=2\n"
                                  "DLT_TRAIN_CMD=sh -c 'echo started; sleep 60'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    p = subprocess.Popen([sys.executable, "-m", "dltasks", "train"], cwd=project, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "started"
        assert len(left_by(engine, project)) == 1  # what the check below would see
        p.send_signal(sig)
        assert p.wait(timeout=30) == 130
    finally:
        p.kill()
    assert left_by(engine, project) == []
    m = json.loads(next((project / "runs").glob("*/manifest.json")).read_text())
    assert m["status"] == "interrupted" and m["exit_code"] == 130


def test_shell_hung_up_leaves_nothing(engine: Any, base_image: str, project: Path) -> None:
    """The terminal closes under `dlt shell` (SIGHUP): the container is stopped and removed."""
    import pty

    (project / ".env").write_text(f"DLT_IMAGE={base_image}\nDLT_GPUS=none\nDLT_STOP_TIMEOUT=2\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    pid, fd = pty.fork()
    if pid == 0:  # the child: dlt shell on the pty
        os.chdir(project)
        os.execve(sys.executable, [sys.executable, "-m", "dltasks", "shell", "--cmd", "sh"], env)
    try:
        deadline = time.monotonic() + 30
        while not engine.containers.list(
                ignore_removed=True, filters={"label": "dltasks.kind=shell"}) and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        assert engine.containers.list(ignore_removed=True, filters={"label": "dltasks.kind=shell"})
        os.kill(pid, signal.SIGHUP)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 130
    finally:
        os.close(fd)
    assert engine.containers.list(
            ignore_removed=True, all=True, filters={"label": "dltasks.kind=shell"}) == []
