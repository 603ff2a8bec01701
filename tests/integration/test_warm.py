"""The warm start for real: a server process, real forks, a real engine and real signals.

A command that went through the server is told apart from a cold one by what the client
imported (``python -X importtime``): a warm client never imports invoke.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dltasks import warm

pytestmark = pytest.mark.usefixtures("base_image")


@pytest.fixture
def runtime_dir() -> Iterator[str]:
    """An XDG_RUNTIME_DIR of the test's own (short: a unix socket's path is), and every
    server started in it stopped at the end."""
    d = tempfile.mkdtemp(prefix="dw-", dir="/tmp")
    yield d
    folder = Path(d, "dltasks-warm")
    for sock in folder.glob("*.sock") if folder.exists() else []:
        pid = server_pid(str(sock))
        if pid and pid != os.getpid():  # a listener of this test itself is not a server
            os.kill(pid, signal.SIGTERM)
    subprocess.run(["rm", "-rf", d], check=False)


def env_of(runtime: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    env.update(XDG_RUNTIME_DIR=runtime, **extra)
    return env


def server_pid(path: str) -> int:
    """The pid of the process listening on ``path`` (0: none), from the kernel."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return int(struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                    12))[0])
    except OSError:
        return 0
    finally:
        s.close()


def start_server(runtime: str, idle: float = 120) -> tuple[str, subprocess.Popen[bytes]]:
    path = warm.socket_path(env_of(runtime))
    assert path, "no private folder for the warm server"
    proc = subprocess.Popen([sys.executable, "-m", "dltasks.warmserver", path, str(idle)],
                            env=env_of(runtime), start_new_session=True)
    deadline = time.monotonic() + 30
    while not server_pid(path):
        assert proc.poll() is None, f"the server exited ({proc.returncode})"
        assert time.monotonic() < deadline, "the server did not listen within 30 s"
        time.sleep(0.05)
    return path, proc


@pytest.fixture
def proj(project: Path, base_image: str) -> Path:
    (project / ".env").write_text(f"DLT_IMAGE={base_image}\nDLT_GPUS=none\n"
                                  "DLT_TRAIN_CMD=sh -c\n")
    return project


def dlt(proj: Path, runtime: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "dltasks", *args],
                          cwd=proj, env=env_of(runtime, **env), text=True, capture_output=True,
                          timeout=300, umask=0o027)


def went_warm(r: subprocess.CompletedProcess[str]) -> bool:
    imported = [ln.rsplit("|", 1)[-1].strip() for ln in r.stderr.splitlines()
                if ln.startswith("import time:")]
    assert "dltasks.warm" in imported, r.stderr[-2000:]
    return "invoke" not in imported


def without_importtime(text: str) -> str:
    return "\n".join(ln for ln in text.splitlines() if not ln.startswith("import time:"))


def records(proj: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(proj.glob("runs/*/manifest.json"))]


def containers(proj: Path) -> str:
    """The containers of this test's runs (every test's project is named proj)."""
    ids = [str(r["run_id"]) for r in records(proj)]
    found = [subprocess.run(["docker", "ps", "-aq", "--filter", f"label=dltasks.run={i}"],
                            capture_output=True, text=True, check=True).stdout.strip()
             for i in ids]
    return "\n".join(f for f in found if f)


SCRIPT = 'echo "out $FOO"; echo err >&2; pwd; exit 7'


def test_a_warm_run_is_the_cold_run(proj: Path, runtime_dir: str) -> None:
    start_server(runtime_dir)
    warm_run = dlt(proj, runtime_dir, "train", "--", SCRIPT, FOO="bar", DLT_ENV="FOO")
    cold_run = dlt(proj, runtime_dir, "train", "--", SCRIPT, FOO="bar", DLT_ENV="FOO",
                   DLT_WARM="0")
    assert went_warm(warm_run) and not went_warm(cold_run)
    for r in (warm_run, cold_run):
        assert r.returncode == 7, r.stderr[-2000:]
        assert r.stdout.splitlines() == ["out bar", "/workspace"]
        assert without_importtime(r.stderr).strip() == "err"
    first, second = records(proj)
    assert first["exit_code"] == second["exit_code"] == 7
    # the worker took the client's umask (027): the record folder is not world-readable
    mode = (proj / "runs" / str(first["run_id"])).stat().st_mode & 0o777
    assert mode & 0o007 == 0, oct(mode)


def test_no_server_the_command_runs_cold_and_starts_one(proj: Path, runtime_dir: str) -> None:
    first = dlt(proj, runtime_dir, "train", "--", "echo one")
    assert first.returncode == 0 and first.stdout == "one\n", first.stderr[-2000:]
    assert not went_warm(first)
    path = warm.socket_path(env_of(runtime_dir))
    assert path
    deadline = time.monotonic() + 30
    while not server_pid(path):
        assert time.monotonic() < deadline, "no server started within 30 s"
        time.sleep(0.1)
    second = dlt(proj, runtime_dir, "train", "--", "echo two")
    assert second.returncode == 0 and second.stdout == "two\n", second.stderr[-2000:]
    assert went_warm(second)


def test_other_tasks_and_dlt_warm_0_stay_cold(proj: Path, runtime_dir: str) -> None:
    start_server(runtime_dir)
    r = dlt(proj, runtime_dir, "--list")
    assert r.returncode == 0 and "train" in r.stdout
    assert not went_warm(r)
    assert went_warm(dlt(proj, runtime_dir, "runs"))


def running(proj: Path, runtime: str, script: str) -> subprocess.Popen[str]:
    """``dlt train -- SCRIPT`` through the warm server, started in a session of its own (a
    signal to its group is what a terminal's Ctrl-C is); returns once the run printed."""
    p = subprocess.Popen([sys.executable, "-m", "dltasks", "train", "--", script], cwd=proj,
                         env=env_of(runtime), text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line == "started\n", (line, p.stderr.read() if p.poll() is not None else "")
    return p


def test_ctrl_c_stops_the_run(proj: Path, runtime_dir: str) -> None:
    start_server(runtime_dir)
    p = running(proj, runtime_dir, "echo started; sleep 60")
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted, stopping the run" in err
    assert not containers(proj)
    assert records(proj)[-1]["status"] == "interrupted"


def test_a_killed_client_is_a_closed_terminal(proj: Path, runtime_dir: str) -> None:
    """SIGKILL leaves the client no time to pass anything on: the worker sees the connection
    close and takes it as SIGHUP (a terminal gone), which stops and removes the container."""
    start_server(runtime_dir)
    p = running(proj, runtime_dir, "echo started; sleep 60")
    p.kill()
    p.communicate(timeout=30)
    deadline = time.monotonic() + 60
    while containers(proj):
        assert time.monotonic() < deadline, "the container outlived its client by 60 s"
        time.sleep(0.2)
    deadline = time.monotonic() + 30
    while records(proj)[-1].get("status") == "running" or "ended" not in records(proj)[-1]:
        assert time.monotonic() < deadline, records(proj)[-1]
        time.sleep(0.2)
    assert records(proj)[-1]["exit_code"] == 130


def test_a_server_gone_before_forking_means_a_cold_run(proj: Path, runtime_dir: str) -> None:
    """Something listens on the socket but closes each connection unanswered (a server
    killed mid-way): nothing ran, so the command runs cold, once."""
    path = warm.socket_path(env_of(runtime_dir))
    assert path
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)
    listener.settimeout(30)  # the thread ends even if no client comes
    seen = []

    def refuse() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        seen.append(conn.recv(1 << 16))
        conn.close()

    t = threading.Thread(target=refuse, daemon=True)
    t.start()
    try:
        r = dlt(proj, runtime_dir, "train", "--", "echo once; exit 3")
    finally:
        t.join(10)
        listener.close()
    assert seen and seen[0], "the client did not ask the listener"
    assert r.returncode == 3 and r.stdout == "once\n", r.stderr[-2000:]
    assert not went_warm(r)
    assert len(records(proj)) == 1


def test_an_idle_server_leaves_and_takes_its_socket(runtime_dir: str) -> None:
    path, proc = start_server(runtime_dir, idle=1)
    assert proc.wait(timeout=30) == 0
    assert not os.path.exists(path)


def test_a_gpu_run_asks_the_driver_once_started_before_the_parse(
        project: Path, base_image: str, runtime_dir: str, tmp_path: Path) -> None:
    """A warm `train --gpu 0` starts its GPU facts script before invoke parses the command
    (dltasks.tasks.run.start_early) and the run takes that script over: nvidia-smi is asked
    once per run (its two queries), not twice. No GPUs asked for: not asked at all. A command
    that fails before it gets to the facts drops the script: waited for at exit, nothing of it
    left in TMPDIR."""
    from tests.gpu_fixtures import FAKE_SMI, gpu_line, make_driver

    root = make_driver(tmp_path / "driver", "debian", gpus=2)
    smi_dir = tmp_path / "smi"
    smi_dir.mkdir()
    (smi_dir / "gpus.csv").write_text("".join(gpu_line(i) + "\n" for i in range(2)))
    (smi_dir / "apps.csv").write_text("")
    smi = smi_dir / "nvidia-smi"
    smi.write_text(FAKE_SMI.replace("#!/bin/sh\n", '#!/bin/sh\necho "$1" >> "$(dirname "$0")/'
                                    'calls"\n', 1))
    smi.chmod(0o755)
    calls = smi_dir / "calls"
    (project / ".env").write_text(f"DLT_IMAGE={base_image}\nDLT_GPUS=none\nDLT_TRAIN_CMD=true\n"
                                  f"DLT_DRIVER_ROOT={root}\nDLT_CDI_SPEC_DIRS={root}/no-cdi\n"
                                  f"DLT_NVIDIA_SMI={smi}\n")
    temp = tmp_path / "temp"
    temp.mkdir()

    def asked() -> list[str]:
        return calls.read_text().split() if calls.exists() else []

    start_server(runtime_dir)
    r = dlt(project, runtime_dir, "train", "--gpu", "0", TMPDIR=str(temp))
    assert r.returncode == 0, without_importtime(r.stderr)[-2000:]
    assert went_warm(r)
    assert sorted(asked()) == ["--query-compute-apps=gpu_uuid,pid,process_name,used_memory",
                               "--query-gpu=index,uuid,name,pci.bus_id,memory.used,"
                               "memory.total,utilization.gpu,temperature.gpu,mig.mode.current"]
    record = records(project)[-1]
    assert (record["gpus"], record["gpu_mode"], record["exit_code"]) == ("0", "direct", 0)
    r = dlt(project, runtime_dir, "train", TMPDIR=str(temp))  # DLT_GPUS=none
    assert r.returncode == 0 and went_warm(r), without_importtime(r.stderr)[-2000:]
    assert len(asked()) == 2
    r = dlt(project, runtime_dir, "train", "--gpu", "0", "--no-such-flag", TMPDIR=str(temp))
    assert r.returncode != 0 and "--no-such-flag" in without_importtime(r.stderr)
    assert went_warm(r)
    assert len(asked()) == 4  # started early, then dropped when the parse failed
    assert list(temp.iterdir()) == []


def _state(pid: int) -> str:
    """The kernel's state letter of ``pid`` (T: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_ctrl_z_stops_the_client_and_holds_the_output_until_fg(proj: Path,
                                                                runtime_dir: str) -> None:
    """SIGTSTP (a terminal's Ctrl-Z) stops the client as a job, and the worker writes nothing
    meanwhile (the run goes on in its container); SIGCONT (`fg`, `bg`) lets the output go on;
    Ctrl-C then stops the run as ever. The client is in a process group of its own in our
    session, as a shell puts a job (one in an orphaned group would not stop)."""
    import fcntl
    import select

    start_server(runtime_dir)
    p = subprocess.Popen([sys.executable, "-m", "dltasks", "train", "--",
                          "echo started; i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done"],
                         cwd=proj, env=env_of(runtime_dir), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, process_group=0)
    assert p.stdout is not None
    out = p.stdout.fileno()
    fcntl.fcntl(out, fcntl.F_SETFL, fcntl.fcntl(out, fcntl.F_GETFL) | os.O_NONBLOCK)

    def read_for(seconds: float, until: bytes = b"") -> bytes:
        """What the client printed within ``seconds`` (or until it printed ``until``)."""
        got, deadline = b"", time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not (until and until in got):
            if select.select([out], [], [], left)[0]:
                chunk = os.read(out, 1 << 16)
                if not chunk:
                    break
                got += chunk
        return got

    try:
        first = read_for(60, until=b"started\n")
        assert first.startswith(b"started\n"), (first, p.poll())
        os.kill(p.pid, signal.SIGTSTP)
        deadline = time.monotonic() + 10
        while _state(p.pid) != "T":
            assert time.monotonic() < deadline, "the client did not stop"
            time.sleep(0.05)
        deadline = time.monotonic() + 20  # what was on its way before the hold, however slow
        while read_for(0.5):
            assert time.monotonic() < deadline, "the worker kept writing while its client " \
                "was stopped"
        assert read_for(1.5) == b"", "the worker wrote while its client was stopped"
        os.kill(p.pid, signal.SIGCONT)
        resumed = read_for(3)
        assert resumed.count(b"\n") >= 5, resumed
        assert _state(p.pid) != "T"
        os.killpg(p.pid, signal.SIGINT)
        assert p.wait(timeout=60) == 130
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert not containers(proj)
    assert records(proj)[-1]["status"] == "interrupted"
