"""`notebook` and `tensorboard`: a real Jupyter and a real TensorBoard in dlt-test-lab, reached on
the URL dltasks prints (locally, and on the laptop side of `fab -H gpu1`), ended by `stop` or
Ctrl-C with nothing left running; the token never in a file."""

from __future__ import annotations

import base64
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import dlt, project_containers
from tests.sshd_harness import lab_project
from tests.users import User, throwaway_user

pytestmark = [pytest.mark.docker]

URL = re.compile(r"(http://127\.0\.0\.1:(\d+)(/\S*))")


def _cleanup(engine: Any, project: str) -> None:
    for c in project_containers(engine, project):
        c.remove(force=True)


@pytest.fixture
def lab_proj(project: Path, lab_image: str, engine: Any) -> Iterator[tuple[Path, str]]:
    """A project on dlt-test-lab with an outputs folder; its containers removed afterwards."""
    name = "lab-" + uuid.uuid4().hex[:8]
    (project / ".env").write_text(f"DLT_PROJECT={name}\nDLT_IMAGE={lab_image}\nDLT_GPUS=none\n"
                                  "DLT_OUTPUT_DIR=outputs\nDLT_STOP_TIMEOUT=2\n")
    yield project, name
    _cleanup(engine, name)


@pytest.fixture
def fab_lab_proj(tmp_path: Path, ssh_lab: Any, lab_image: str,
                 engine: Any) -> Iterator[tuple[Path, str]]:
    """A project on dlt-test-lab for `fab -H gpu1` (the sshd lab); its folders there and its
    containers removed afterwards."""
    with lab_project(tmp_path, ssh_lab, f"DLT_IMAGE={lab_image}\nDLT_GPUS=none\n"
                     "DLT_STOP_TIMEOUT=2\n", prefix="lab", engine=engine, fabfile=True) as made:
        yield made


class Pty:
    """A program run with a terminal as its stdout and stderr (URLs with secrets are printed
    in full only to a terminal); what it writes is collected as it comes."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        master, slave = pty.openpty()
        # ``env``: the whole environment (the sshd lab's), else ours without DLT_*
        full = env if env is not None else {k: v for k, v in os.environ.items()
                                            if not k.startswith("DLT_")}
        self.proc = subprocess.Popen(argv, cwd=cwd, env=full, stdin=subprocess.DEVNULL,
                                     stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        self._master, self._buf, self._lock = master, b"", threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self._master], [], [], 0.5)
                if not ready:  # the program may have ended: EIO ends the loop once drained
                    continue
                data = os.read(self._master, 65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self._buf += data

    @property
    def text(self) -> str:
        with self._lock:
            return self._buf.decode(errors="replace")

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = pattern.search(self.text)
            if m:
                return m
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern.pattern!r} in: {self.text}")

    def finish(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        os.close(self._master)
        return code


def _pty_dlt(*args: str, cwd: Path) -> Pty:
    return Pty([sys.executable, "-m", "dltasks", *args], cwd)


def _get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _answers(url: str, timeout: float = 90) -> tuple[int, bytes]:
    """The first HTTP answer of ``url`` (the server may still be starting)."""
    end = time.monotonic() + timeout
    while True:
        try:
            return _get(url)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            if time.monotonic() > end:
                raise
            time.sleep(0.3)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
    except OSError:
        return True
    return False


def _wait_refused(port: int, timeout: float = 30) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _refused(port):
            return True
        time.sleep(0.2)
    return False


# --------------------------------------------------------------------------------------------
# a kernel over Jupyter's websocket (RFC 6455, the few frames we need, standard library only)


def _ws_connect(port: int, path: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, f"websocket handshake closed: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def _ws_send(s: socket.socket, text: str) -> None:
    data, mask = text.encode(), os.urandom(4)
    n = len(data)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                            bytes([0x80 | 126]) + n.to_bytes(2, "big") if n < 65536 else
                            bytes([0x80 | 127]) + n.to_bytes(8, "big"))
    s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def _recv_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "websocket closed"
        out += chunk
    return out


def _ws_recv(s: socket.socket) -> str:
    """One whole text message (fragments joined; pings and other control frames skipped)."""
    parts = b""
    while True:
        b0, b1 = _recv_exact(s, 2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(_recv_exact(s, 2), "big")
        elif n == 127:
            n = int.from_bytes(_recv_exact(s, 8), "big")
        payload = _recv_exact(s, n)
        if b0 & 0x0F >= 0x8:  # control frame
            continue
        parts += payload
        if b0 & 0x80:
            return parts.decode()


def _kernel_computes(port: int, token: str, code: str) -> str:
    """Start a kernel through the API, run ``code`` on its shell channel, return its result."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/kernels?token={token}",
                                 data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        kernel = json.loads(r.read())["id"]
    session, msg_id = uuid.uuid4().hex, uuid.uuid4().hex
    s = _ws_connect(port, f"/api/kernels/{kernel}/channels?session_id={session}&token={token}")
    try:
        _ws_send(s, json.dumps({
            "header": {"msg_id": msg_id, "username": "t", "session": session,
                       "msg_type": "execute_request", "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
        end = time.monotonic() + 60
        while time.monotonic() < end:
            msg = json.loads(_ws_recv(s))
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "execute_result":
                return str(msg["content"]["data"]["text/plain"])
            if msg["msg_type"] == "error":
                raise AssertionError(f"the kernel failed: {msg['content']}")
        raise AssertionError("no execute_result within 60s")
    finally:
        s.close()


# --------------------------------------------------------------------------------------------
# notebook, this machine


def _process_gone(pid: int, timeout: float = 30) -> bool:
    """Whether process ``pid`` has ended (or is a zombie) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def _token(url_path: str) -> str:
    m = re.search(r"token=([\w-]+)", url_path)
    assert m, url_path
    return m.group(1)


def test_notebook_detached_answers_with_its_token_runs_a_kernel_and_stop_ends_it(
        lab_proj: tuple[Path, str], engine: Any) -> None:
    d, name = lab_proj
    p = _pty_dlt("notebook", "--detach", cwd=d)
    assert p.finish(timeout=300) == 0, p.text
    url, port, path = URL.search(p.text).groups()  # type: ignore[union-attr]
    assert path.startswith("/lab?token="), url  # the image has Jupyter Lab
    token, host_port = _token(path), int(port)
    run_id = re.search(r"started (\S+) on local", p.text).group(1)  # type: ignore[union-attr]
    # printed once Jupyter answered: the first request finds it up
    assert _get(f"http://127.0.0.1:{host_port}/api/status?token={token}")[0] == 200
    assert _get(f"http://127.0.0.1:{host_port}/api/status")[0] == 403
    assert _get(f"http://127.0.0.1:{host_port}/api/status?token=wrong{token}")[0] == 403
    assert _kernel_computes(host_port, token, "1+1") == "2"
    # published on the host's loopback only; the token in the env alone, masked in the record
    (c,) = project_containers(engine, name)
    binds = c.attrs["HostConfig"]["PortBindings"]["8888/tcp"]
    assert [b["HostIp"] for b in binds] == ["127.0.0.1"]
    assert f"JUPYTER_TOKEN={token}" in c.attrs["Config"]["Env"]
    assert token not in " ".join(c.attrs["Config"]["Cmd"])
    assert token not in c.logs().decode(errors="replace")  # Jupyter prints token=...
    folder = d / "runs" / run_id
    assert "JUPYTER_TOKEN=****" in (folder / "manifest.json").read_text()
    for f in folder.rglob("*"):
        if f.is_file():
            assert token not in f.read_text(errors="replace"), f
    r = dlt("stop", run_id, cwd=d)
    assert r.returncode == 0, r.stderr
    assert project_containers(engine, name) == []
    assert _wait_refused(host_port)


def test_notebook_attached_answers_then_ctrl_c_leaves_nothing_and_no_token_in_the_log(
        lab_proj: tuple[Path, str], engine: Any) -> None:
    d, name = lab_proj
    p = _pty_dlt("notebook", cwd=d)
    try:
        m = p.wait_for(URL, timeout=300)
        token, port = _token(m.group(3)), int(m.group(2))
        assert _answers(f"http://127.0.0.1:{port}/api/status?token={token}")[0] == 200
        p.wait_for(re.compile(r"token=\.\.\."), timeout=60)  # Jupyter's own lines came too
    finally:
        os.killpg(p.proc.pid, signal.SIGINT)
    assert p.finish(timeout=60) == 130, p.text
    assert project_containers(engine, name) == []
    assert _wait_refused(port)
    (folder,) = (d / "runs").iterdir()
    log = (folder / "output.log").read_text()
    assert "Jupyter Server" in log and token not in log
    assert token not in (folder / "manifest.json").read_text()
    assert json.loads((folder / "manifest.json").read_text())["status"] == "interrupted"


def test_notebook_on_an_image_without_jupyter_says_the_fix_and_starts_nothing(
        project: Path, torch_image: str, engine: Any) -> None:
    name = "lab-" + uuid.uuid4().hex[:8]
    (project / ".env").write_text(f"DLT_PROJECT={name}\nDLT_IMAGE={torch_image}\n"
                                  "DLT_GPUS=none\n")
    try:
        r = dlt("notebook", "--detach", cwd=project)
        assert r.returncode == 2, r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert "no Jupyter" in lines[0] and "DLT_PIP_PACKAGES=jupyterlab" in lines[0]
        assert "`dlt extend-image`" in lines[0], lines[0]
        assert r.stdout == ""
        assert project_containers(engine, name) == []
        assert not (project / "runs").exists()  # no record of a run that never was
        t = dlt("tensorboard", cwd=project)
        assert t.returncode != 0 and "DLT_OUTPUT_DIR" in t.stderr, t.stderr
    finally:
        _cleanup(engine, name)


@pytest.fixture(scope="module")
def two_users() -> Iterator[tuple[User, User]]:
    with throwaway_user(groups=("docker",)) as a, throwaway_user(groups=("docker",)) as b:
        yield a, b


def test_two_users_notebooks_on_one_host_get_different_ports(
        two_users: tuple[User, User], lab_image: str, engine: Any) -> None:
    ports, runs = [], []
    try:
        for u in two_users:
            d = u.home / "proj"
            d.mkdir()
            (d / ".env").write_text(f"DLT_IMAGE={lab_image}\nDLT_GPUS=none\n")
            shutil.chown(d, u.name, u.name)
            shutil.chown(d / ".env", u.name, u.name)
            r = u.run("notebook", "--detach", cwd=d, timeout=300)
            assert r.returncode == 0, r.stdout + r.stderr
            m = URL.search(r.stderr)
            assert m and "token=***" in m.group(3), r.stderr  # not a terminal: masked
            ports.append(int(m.group(2)))
            runs.append((u, d, r.stdout.strip().splitlines()[-1]))
        assert ports[0] != ports[1]
        for port in ports:  # both answer (each refuses a request without its token)
            assert _answers(f"http://127.0.0.1:{port}/api/status")[0] == 403
        # B sees A's run (`ps --all`), but neither its forward nor its logs give A's token
        (a, _, a_run), (b, b_dir, _) = runs
        (ca,) = [c for c in engine.containers.list(ignore_removed=True, filters={
            "label": f"dltasks.run={a_run}"})]
        a_token = next(e.split("=", 1)[1] for e in ca.attrs["Config"]["Env"]
                       if e.startswith("JUPYTER_TOKEN="))
        f = b.run("forward", a_run, cwd=b_dir, timeout=120)
        assert f.returncode != 0, f.stdout + f.stderr
        assert f.stderr.strip().splitlines() == [
            next(ln for ln in f.stderr.splitlines() if "is not yours" in ln)], f.stderr
        assert a_token not in f.stdout + f.stderr
        lg = b.run("logs", a_run, cwd=b_dir, timeout=120)
        assert a_token not in lg.stdout + lg.stderr
        st = b.run("stop", a_run, cwd=b_dir, timeout=120)  # a docker-group peer may stop it,
        assert st.returncode == 0, st.stdout + st.stderr    # and is told whose it was
        assert f"stopped {a_run} on local (a run of {a.name})" in st.stdout, st.stdout
        assert a_token not in st.stdout + st.stderr
    finally:
        for u, d, run_id in runs:
            u.run("stop", run_id, cwd=d, timeout=120)
        for c in engine.containers.list(ignore_removed=True, all=True,
                                        filters={"label": "dltasks.kind=notebook"}):
            if any(c.labels.get("dltasks.record", "").startswith(str(u.home))
                   for u in two_users):
                c.remove(force=True)
    assert all(_wait_refused(p) for p in ports)


# --------------------------------------------------------------------------------------------
# tensorboard, this machine

WRITER = """\
import os
from torch.utils.tensorboard import SummaryWriter
w = SummaryWriter(os.path.join("/outputs", os.environ["DLT_RUN_ID"]))
for step in range(3):
    w.add_scalar("loss/train", 1.0 / (step + 1), step)
w.close()
print("wrote events")
"""


def _write_events(d: Path) -> str:
    """A run of the project that writes a TensorBoard event file; its run id."""
    (d / "write_events.py").write_text(WRITER)
    with open(d / ".env", "a") as f:
        f.write("DLT_TRAIN_CMD=python3 write_events.py\n")
    r = dlt("train", cwd=d, timeout=300)
    assert r.returncode == 0 and "wrote events" in r.stdout, r.stdout + r.stderr
    (run_id,) = [p.name for p in (d / "runs").iterdir()]
    assert list((d / "outputs" / run_id).glob("events.out.tfevents.*"))
    return run_id


def _tags_listed(port: int, run: str, tag: str, timeout: float = 90) -> dict[str, Any]:
    """TensorBoard's scalar tags once it lists ``tag`` for ``run`` (it loads files as it goes)."""
    end = time.monotonic() + timeout
    tags: dict[str, Any] = {}
    while time.monotonic() < end:
        code, body = _answers(f"http://127.0.0.1:{port}/data/plugin/scalars/tags")
        tags = json.loads(body) if code == 200 else {}
        if tag in tags.get(run, {}):
            return tags
        time.sleep(0.5)
    raise AssertionError(f"TensorBoard lists no {tag} for {run}: {tags}")


def test_tensorboard_serves_a_runs_events_read_only_and_stop_ends_it(
        lab_proj: tuple[Path, str], engine: Any) -> None:
    d, name = lab_proj
    run_id = _write_events(d)
    r = dlt("tensorboard", "--detach", cwd=d)
    assert r.returncode == 0, r.stdout + r.stderr
    m = URL.search(r.stderr)
    assert m, r.stderr
    port = int(m.group(2))
    tb = r.stdout.strip().splitlines()[-1]
    _tags_listed(port, run_id, "loss/train")
    (c,) = [c for c in project_containers(engine, name)
            if c.labels["dltasks.kind"] == "tensorboard"]
    mounts = c.attrs["HostConfig"]["Mounts"]
    assert mounts and all(mt["ReadOnly"] for mt in mounts), mounts
    assert not c.attrs["HostConfig"].get("DeviceRequests")  # no GPU
    assert [b["HostIp"] for b in c.attrs["HostConfig"]["PortBindings"]["6006/tcp"]] == \
        ["127.0.0.1"]
    # read-only indeed: the container cannot write into the outputs folder
    ran = c.exec_run(["sh", "-c", "touch /outputs/x 2>&1; echo $?"])
    assert ran.output.decode().strip().endswith("1") and not (d / "outputs" / "x").exists()
    assert dlt("stop", tb, cwd=d).returncode == 0
    assert _wait_refused(port)
    assert [c for c in project_containers(engine, name)
            if c.labels["dltasks.kind"] == "tensorboard"] == []


def test_tensorboard_of_named_runs_shows_those_runs_only(
        lab_proj: tuple[Path, str], engine: Any) -> None:
    d, name = lab_proj
    first = _write_events(d)
    r = dlt("train", cwd=d, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (second,) = [p.name for p in (d / "runs").iterdir() if p.name != first]
    r = dlt("tensorboard", "--run", second[:-2], "--detach", cwd=d)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"dlt: TensorBoard serves {second}:/outputs/{second}" in dlt(
        "logs", r.stdout.strip().splitlines()[-1], cwd=d).stdout
    port = int(URL.search(r.stderr).group(2))  # type: ignore[union-attr]
    # --logdir_spec names each run's folder NAME:/outputs/NAME: TensorBoard lists it as
    # "NAME/." (the events lie in the folder itself)
    tags = _tags_listed(port, f"{second}/.", "loss/train")
    assert [k.split("/")[0] for k in tags] == [second], tags   # the first run is not shown
    bad = dlt("tensorboard", "--run", "20991231", cwd=d)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert dlt("stop", r.stdout.strip().splitlines()[-1], cwd=d).returncode == 0


@pytest.mark.ssh
def test_fab_tensorboard_answers_on_the_laptop_port(
        ssh_lab: Any, fab_lab_proj: tuple[Path, str], engine: Any) -> None:
    d, name = fab_lab_proj
    with (d / ".env").open("a") as f:
        f.write("DLT_OUTPUT_DIR=outputs\nDLT_TRAIN_CMD=python3 write_events.py\n")
    (d / "write_events.py").write_text(WRITER)
    env = ssh_lab.env()
    r = subprocess.run([sys.executable, "-c", FAB, "-H", "gpu1", "train"], cwd=d, env=env,
                       text=True, capture_output=True, timeout=300)
    assert r.returncode == 0 and "wrote events" in r.stdout, r.stdout + r.stderr
    (run_id,) = [p.name for p in (d / "runs").iterdir()]
    r = subprocess.run([sys.executable, "-c", FAB, "-H", "gpu1", "tensorboard", "--detach"],
                       cwd=d, env=env, text=True, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    m = URL.search(r.stderr)
    assert m and "on gpu1" in r.stderr, r.stderr
    port = int(m.group(2))
    _tags_listed(port, run_id, "loss/train")   # on the laptop's port, through SSH
    tb = re.search(r"started (\S+) on gpu1", r.stderr).group(1)  # type: ignore[union-attr]
    r = subprocess.run([sys.executable, "-c", FAB, "-H", "gpu1", "stop", tb], cwd=d,
                       env=env, text=True, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert _wait_refused(port)                 # the forward ended with it


# --------------------------------------------------------------------------------------------
# through fab -H gpu1 (a real sshd on loopback; the laptop's port is a forward over SSH)

FAB = "import sys; from fabric.main import program; sys.argv[0] = 'fab'; program.run()"


@pytest.mark.ssh
def test_fab_notebook_answers_on_the_laptop_url_and_ctrl_c_ends_it_and_the_forward(
        ssh_lab: Any, fab_lab_proj: tuple[Path, str], engine: Any) -> None:
    d, name = fab_lab_proj
    p = Pty([sys.executable, "-c", FAB, "-H", "gpu1", "notebook"], d, ssh_lab.env())
    try:
        m = p.wait_for(URL, timeout=300)
        assert "on gpu1" in p.text[m.start():].splitlines()[0], p.text
        token, port = _token(m.group(3)), int(m.group(2))
        assert _answers(f"http://127.0.0.1:{port}/api/status?token={token}")[0] == 200
        assert _get(f"http://127.0.0.1:{port}/api/status")[0] == 403
        assert _kernel_computes(port, token, "1+1") == "2"
        (c,) = project_containers(engine, name)
        assert c.attrs["Config"]["User"] != "0:0"  # the host login's user, as for train
    finally:
        os.killpg(p.proc.pid, signal.SIGINT)
    assert p.finish(timeout=60) == 130, p.text
    assert project_containers(engine, name) == []
    assert _wait_refused(port)  # the forward went with the run
    (folder,) = (d / "runs").iterdir()
    assert token not in (folder / "output.log").read_text()


@pytest.mark.ssh
def test_fab_notebook_detached_answers_on_the_laptop_and_fab_stop_ends_it_and_the_forward(
        ssh_lab: Any, fab_lab_proj: tuple[Path, str], engine: Any) -> None:
    d, name = fab_lab_proj
    p = Pty([sys.executable, "-c", FAB, "-H", "gpu1", "notebook", "--detach"], d,
            ssh_lab.env())
    assert p.finish(timeout=300) == 0, p.text
    m = URL.search(p.text)
    assert m, p.text
    token, port = _token(m.group(3)), int(m.group(2))
    run_id = re.search(r"started (\S+) on gpu1", p.text).group(1)  # type: ignore[union-attr]
    # fab has ended: the background forwarder holds the laptop's port, and the URL was
    # printed once Jupyter answered: the first request finds it up
    assert _get(f"http://127.0.0.1:{port}/api/status?token={token}")[0] == 200
    assert _get(f"http://127.0.0.1:{port}/api/status")[0] == 403
    assert _kernel_computes(port, token, "1+1") == "2"
    pid_file = d / "runs" / run_id / "forward.pid"
    pid = int(pid_file.read_text().split()[0])
    r = subprocess.run([sys.executable, "-c", FAB, "-H", "gpu1", "stop", run_id], cwd=d,
                       env=ssh_lab.env(), text=True, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert project_containers(engine, name) == []
    assert _wait_refused(port)
    assert not pid_file.exists()  # the forwarder went first, with its pid file
    assert _process_gone(pid)
