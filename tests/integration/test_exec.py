"""`exec RUN [--node K] [-- CMD]`: a command inside a running run's container, on the real
engine: a local detached run (files, environment, exit code, a tty, Ctrl-C), a run on a real
sshd host (`fab -H gpu1 exec`), node 1 of a job across two hosts, and the one line once a run
has ended. The Slurm run's case is in test_slurm.py (the Slurm lab)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import dlt

pytestmark = [pytest.mark.docker]


def _containers(engine: Any, run_id: str) -> list[Any]:
    found: list[Any] = engine.containers.list(
        ignore_removed=True, all=True, filters={"label": f"dltasks.run={run_id}"})
    return found


def _processes(engine: Any, run_id: str) -> str:
    """What runs in the run's container now (docker top: the image has no ps)."""
    [c] = _containers(engine, run_id)
    return "\n".join(" ".join(p) for p in c.top()["Processes"])


def _wait_for(cond: Any, what: str, timeout: float = 30) -> None:
    """Until ``cond()`` holds (bounded): processes fork a moment after their output."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.1)


def _dlt_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}


def _exec(d: Path, run_id: str, *args: str, **kw: Any) -> subprocess.Popen[bytes]:
    """`dlt exec RUN ARGS` in the background, its stdout a pipe."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen([sys.executable, "-m", "dltasks", "exec", run_id, *args], cwd=d,
                            env=_dlt_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.fixture
def running(project: Path, base_image: str, engine: Any) -> Iterator[tuple[Path, str]]:
    """A detached run of `sleep 300` (its files and a .env variable); removed afterwards."""
    name = "ex-" + uuid.uuid4().hex[:8]
    (project / ".env").write_text(f"DLT_PROJECT={name}\nDLT_IMAGE={base_image}\n"
                                  "DLT_GPUS=none\nDLT_TRAIN_CMD=sleep 300\n"
                                  "DLT_STOP_TIMEOUT=1\nEXEC_SEES=from-dotenv\n")
    (project / "data.txt").write_text("the run's file\n")
    r = dlt("train", "--detach", cwd=project)
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.split()[-1]
    yield project, run_id
    for c in engine.containers.list(ignore_removed=True, all=True,
                                    filters={"label": f"dltasks.project={name}"}):
        c.remove(force=True)


def test_exec_sees_the_runs_files_env_and_user_and_passes_the_exit_code_back(
        running: tuple[Path, str], engine: Any) -> None:
    d, run_id = running
    script = (f"pwd; id -u; cat data.txt; echo env=$EXEC_SEES; cat {d}/data.txt; exit 3")
    r = dlt("exec", run_id[:-2], "--", "sh", "-c", script, cwd=d)
    assert r.returncode == 3, r.stderr
    lines = r.stdout.splitlines()
    [c] = _containers(engine, run_id)
    user = c.attrs["Config"]["User"] or "0"
    assert lines[0] == c.attrs["Config"]["WorkingDir"] == "/workspace"
    assert lines[1] == user.split(":")[0]          # the run's user, not root by default
    assert lines[2] == "the run's file"
    assert lines[3] == "env=from-dotenv"
    assert lines[4] == "the run's file"            # the laptop path, mapped as train's are
    assert r.stderr == ""
    assert "sleep 300" in _processes(engine, run_id) and c.status == "running"


def test_ctrl_c_without_a_tty_ends_the_command_and_nothing_else(
        running: tuple[Path, str], engine: Any) -> None:
    d, run_id = running
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    p = subprocess.Popen([sys.executable, "-m", "dltasks", "exec", run_id, "--", "sh", "-c",
                          "echo started; sleep 123; echo never"], cwd=d, env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert p.stdout is not None
    assert p.stdout.readline() == b"started\n"
    _wait_for(lambda: "sleep 123" in _processes(engine, run_id), "sleep 123 forked")
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert b"never" not in out
    assert "sleep 123" not in _processes(engine, run_id)   # the exec'd process was ended
    assert "sleep 300" in _processes(engine, run_id)       # the run was not


def _tty_shell(d: Path, args: list[str], env: dict[str, str]) -> tuple[int, bytes]:
    """`dlt exec ARGS` (no command: a shell) with a pty as its terminal; once the shell
    prompts, as a person would (what a tty gets before the process in the container reads it
    is lost, with the docker CLI too), it is asked for its tty and exits 4. The exit code and
    all the terminal showed."""
    leader, follower = os.openpty()
    p = subprocess.Popen([sys.executable, "-m", "dltasks", "exec", *args], cwd=d, env=env,
                         stdin=follower, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    seen, typed = b"", False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if not typed and seen.rstrip().endswith((b"#", b"$")):   # the shell prompts
                os.write(leader, b"echo tty-$((40+2)) $(tty); exit 4\n")
                typed = True
            if select.select([leader], [], [], 1)[0]:
                try:
                    data = os.read(leader, 4096)
                except OSError:  # the program ended and its output is read
                    break
                if not data:
                    break
                seen += data
            elif p.poll() is not None:
                break
        return p.wait(timeout=30), seen
    finally:
        os.close(leader)
        with contextlib.suppress(ProcessLookupError):
            p.kill()


def test_exec_with_a_tty_runs_an_interactive_shell(running: tuple[Path, str]) -> None:
    d, run_id = running
    code, seen = _tty_shell(d, [run_id], _dlt_env())
    assert code == 4, seen
    assert b"tty-42 /dev/pts/" in seen, seen    # a real tty in the container


def test_a_run_that_ended_says_so_in_one_line(project: Path, base_image: str,
                                              engine: Any) -> None:
    name = "ex-" + uuid.uuid4().hex[:8]
    (project / ".env").write_text(f"DLT_PROJECT={name}\nDLT_IMAGE={base_image}\n"
                                  "DLT_GPUS=none\nDLT_TRAIN_CMD=sh -c 'exit 7'\n")
    try:
        r = dlt("train", "--detach", cwd=project)
        assert r.returncode == 0, r.stderr
        run_id = r.stdout.split()[-1]
        [c] = _containers(engine, run_id)
        assert c.wait(timeout=60)["StatusCode"] == 7
        r = dlt("exec", run_id, "--", "true", cwd=project)   # its container still there
        assert r.returncode == 2 and r.stdout == ""
        assert r.stderr.startswith(f"dlt: error: run {run_id} ended (exit 7) at 20"), r.stderr
        assert r.stderr.rstrip().endswith(f"`dlt logs {run_id}` shows its output")
        assert len(r.stderr.splitlines()) == 1
        c.remove(force=True)                                  # only its record left
        r = dlt("exec", run_id[:12], cwd=project)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
        assert f"run {run_id} ended (exit" in r.stderr and "nothing to exec into" in r.stderr
        r = dlt("exec", "20991231-000000-0000", cwd=project)   # no such run: the usual line
        assert r.returncode == 1 and "no run '20991231-000000-0000' on local" in r.stderr
    finally:
        for c in engine.containers.list(ignore_removed=True, all=True,
                                        filters={"label": f"dltasks.project={name}"}):
            c.remove(force=True)


@pytest.mark.ssh
def test_fab_exec_into_a_remote_run_and_fabric_runs_nothing_on_the_host(
        ssh_lab: Any, remote_project: tuple[Path, str], base_image: str, engine: Any) -> None:
    from tests.sshd_harness import fab

    d, name = remote_project
    with (d / ".env").open("a") as f:
        f.write(f"DLT_PROJECT={name}\nDLT_IMAGE={base_image}\nDLT_GPUS=none\n"
                "DLT_TRAIN_CMD=sleep 300\nDLT_STOP_TIMEOUT=1\nEXEC_SEES=remote-env\n")
    (d / "data.txt").write_text("synced\n")
    marker = Path("/tmp") / f"dlt-exec-marker-{uuid.uuid4().hex[:8]}"
    try:
        r = fab("-H", "gpu1", "train", "--detach", cwd=d, env=ssh_lab.env())
        assert r.returncode == 0, r.stderr
        run_id = r.stdout.split()[-1]
        # fabric would run the words after -- on gpu1 itself (this machine's /tmp): it must
        # not (fabric 3.2 refuses them with a task: fabric#1900; --cmd is the way under fab)
        r = fab("-H", "gpu1", "exec", run_id, "--", "touch", str(marker), cwd=d,
                env=ssh_lab.env())
        assert r.returncode != 0 and not marker.exists()
        r = fab("-H", "gpu1", "exec", run_id, "--cmd",
                f"touch {marker}; cat data.txt; echo env=$EXEC_SEES; cat {d}/data.txt; exit 5",
                cwd=d, env=ssh_lab.env())
        assert r.returncode == 5, r.stderr
        assert r.stdout.splitlines() == ["synced", "env=remote-env", "synced"], r.stdout
        assert not marker.exists()
        # stdin over SSH: its end reaches the command (the half-close crosses the channel),
        # and output larger than the input does not stall the forward
        fab_line = (f"{sys.executable} -c \"import sys; from fabric.main import program; "
                    f"sys.argv[0] = 'fab'; program.run()\" -H gpu1 exec {run_id} --cmd")
        r = _piped(d, f"printf 'a\\nb\\n' | {fab_line} 'wc -l'", 120, ssh_lab.env())
        assert (r.returncode, r.stdout.strip()) == (0, "2"), r.stderr
        r = _piped(d, f"head -c 2000000 /dev/zero | {fab_line} 'od -v' | wc -l", 180,
                   ssh_lab.env())
        assert r.returncode == 0 and int(r.stdout) == 2000000 // 16 + 1, r.stderr
        [c] = _containers(engine, run_id)
        assert c.labels["dltasks.host"] == "gpu1" and c.status == "running"
        r = fab("-H", "gpu1", "stop", run_id, cwd=d, env=ssh_lab.env())
        assert r.returncode == 0, r.stderr
        r = fab("-H", "gpu1", "exec", run_id, "--cmd", "true", cwd=d, env=ssh_lab.env())
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
        assert f"`fab -H gpu1 logs {run_id}` shows its output" in r.stderr
        assert not marker.exists()
    finally:
        marker.unlink(missing_ok=True)
        for c in engine.containers.list(ignore_removed=True, all=True,
                                        filters={"label": f"dltasks.project={name}"}):
            c.remove(force=True)


@pytest.mark.ssh
@pytest.mark.slow
def test_exec_into_node_1_of_a_job_across_two_hosts(
        ssh_lab: Any, remote_project: tuple[Path, str], torch_image: str, engine: Any) -> None:
    from tests.integration.test_jobs import job_project
    from tests.sshd_harness import fab

    d, name = remote_project
    job_project(d, torch_image, f"DDP_SLEEP=300\nDLT_PROJECT={name}\n")
    try:
        r = fab("-H", "gpu1,gpu2", "train", "--nnodes", "2", "--detach", cwd=d,
                env=ssh_lab.env())
        assert r.returncode == 0, r.stdout + r.stderr
        job = r.stdout.split()[0]
        show = ["--cmd", "tr '\\000' ' ' < /proc/1/cmdline; echo; ls train_ddp.py"]
        r = fab("-H", "gpu1", "exec", job, "--node", "1", *show, cwd=d, env=ssh_lab.env())
        assert r.returncode == 0, r.stderr
        assert "--node-rank=1" in r.stdout and "train_ddp.py\n" in r.stdout, r.stdout
        r = fab("-H", "gpu1", "exec", job, *show, cwd=d, env=ssh_lab.env())
        assert r.returncode == 0, r.stderr
        assert "--node-rank=0" in r.stdout
        assert f"job {job} has 2 nodes: exec goes into node 0 on gpu1" in r.stderr
        r = fab("-H", "gpu1", "exec", job, "--node", "2", *show, cwd=d, env=ssh_lab.env())
        assert r.returncode == 2 and "has nodes 0 to 1 (gpu1, gpu2), not 2" in r.stderr
    finally:
        for c in engine.containers.list(ignore_removed=True, all=True,
                                        filters={"label": f"dltasks.project={name}"}):
            c.remove(force=True)


@pytest.mark.slow
def test_exec_into_a_slurm_docker_runtime_run_on_its_node(
        torch_image: str, engine: Any, project: Path, slurm_lab: dict[str, str]) -> None:
    from tests.integration.test_slurm import containers_of, running_containers, slurm_project

    slurm_project(project, torch_image,
                  "DDP_SLEEP=300\nEXEC_SEES=slurm-env\nDLT_STOP_TIMEOUT=2\n")
    r = dlt("train", "--slurm", "--nodes", "2", "--detach", cwd=project, env=slurm_lab)
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.split()[0]
    try:
        running_containers(engine, run_id, 2)
        r = dlt("exec", run_id, "--node", "1", "--", "sh", "-c",
                "tr '\\000' '\\n' < /proc/1/environ | grep ^SLURM_NODEID=; "
                "echo env=$EXEC_SEES; ls train_ddp.py; exit 6", cwd=project, env=slurm_lab)
        assert r.returncode == 6, r.stdout + r.stderr
        assert r.stdout.splitlines() == ["SLURM_NODEID=1", "env=slurm-env", "train_ddp.py"], \
            r.stdout + r.stderr
        r = dlt("exec", run_id, "--", "sh", "-c", "echo $SLURM_NODEID", cwd=project,
                env=slurm_lab)
        assert r.returncode == 0 and r.stdout.strip() == "0", r.stdout + r.stderr
        assert "has 2 nodes: exec goes into node 0" in r.stderr
        _slurm_exec_streams_bytes_and_ctrl_c_ends_the_command(project, run_id, engine,
                                                             slurm_lab)
        _slurm_exec_with_a_tty_runs_a_shell(project, run_id, slurm_lab)
        r = dlt("stop", run_id, cwd=project, env=slurm_lab)
        assert r.returncode == 0, r.stderr
        r = dlt("exec", run_id, "--", "true", cwd=project, env=slurm_lab)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
        assert f"run {run_id} ended" in r.stderr and "nothing to exec into" in r.stderr
    finally:
        dlt("stop", run_id, cwd=project, env=slurm_lab)
        for c in containers_of(engine, run_id):
            c.remove(force=True)


def _slurm_exec_streams_bytes_and_ctrl_c_ends_the_command(
        project: Path, run_id: str, engine: Any, slurm_lab: dict[str, str]) -> None:
    """Through srun: binary output byte for byte, 5 MB of stdin, and one SIGINT (no tty)
    ending srun and the process docker exec started in node 1's container, not the run."""
    import hashlib

    from tests.integration.test_slurm import containers_of

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DLT_")}, **slurm_lab}
    base = [sys.executable, "-m", "dltasks", "exec", run_id, "--node", "1", "--"]
    [node1] = [c for c in containers_of(engine, run_id) if c.labels["dltasks.node"] == "1"]

    r = subprocess.run([*base, "sh", "-c", "head -c 300000 /dev/urandom | tee /tmp/rand.bin"],
                       cwd=project, env=env, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    kept = node1.exec_run(["cat", "/tmp/rand.bin"]).output
    assert len(kept) == 300000
    assert hashlib.sha256(r.stdout).hexdigest() == hashlib.sha256(kept).hexdigest()

    r = subprocess.run([*base, "wc", "-c"], cwd=project, env=env, capture_output=True,
                       input=b"\0\xff" * 2_500_000, timeout=120)
    assert r.returncode == 0 and r.stdout.split() == [b"5000000"], r.stderr
    r = subprocess.run([*base[:-1], "--no-stdin", "--", "wc", "-c"], cwd=project, env=env,
                       capture_output=True, input=b"not for it", timeout=120)
    assert r.returncode == 0 and r.stdout.split() == [b"0"], r.stderr  # like ssh -n

    def top() -> str:
        return "\n".join(" ".join(p) for p in node1.top()["Processes"])

    p = subprocess.Popen([*base, "sh", "-c", "echo started; exec sleep 271"], cwd=project,
                         env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdout.readline() == b"started\n"
        deadline = time.monotonic() + 30
        while "sleep 271" not in top() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "sleep 271" in top()
        p.send_signal(signal.SIGINT)         # to dlt alone: it passes it on to srun
        _, err = p.communicate(timeout=90)
        assert p.returncode == 130, err
        deadline = time.monotonic() + 30     # the ending step's SIGINT, else its SIGKILL
        while "sleep 271" in top() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "sleep 271" not in top(), top()
        node1.reload()
        assert node1.status == "running"     # the run goes on
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def _slurm_exec_with_a_tty_runs_a_shell(project: Path, run_id: str,
                                        slurm_lab: dict[str, str]) -> None:
    """With a terminal: `srun --pty` and `docker exec -t`, a shell with a real tty."""
    code, seen = _tty_shell(project, [run_id, "--node", "1"], {**_dlt_env(), **slurm_lab})
    assert code == 4, seen
    assert b"tty-42 /dev/pts/" in seen, seen


def _piped(d: Path, line: str, timeout: float,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A shell pipeline around `dlt exec` (DLT is python -m dltasks), bounded."""
    cmd = line.replace("DLT", f"{sys.executable} -m dltasks")
    p = subprocess.Popen(["sh", "-c", cmd], cwd=d, env=env or _dlt_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # a hang: end the whole pipeline, dlt included
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def test_stdin_reaches_the_command_and_its_end_is_passed_on(running: tuple[Path, str]) -> None:
    d, run_id = running
    r = _piped(d, f"printf 'a\\nb\\n' | DLT exec {run_id} -- wc -l", 60)
    assert (r.returncode, r.stdout.strip()) == (0, "2"), r.stderr
    # a closed stdin (`<&-`, cron) reads as /dev/null, not an "unexpected" error
    r = _piped(d, f"DLT exec {run_id} -- wc -l <&-", 60)
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, "0", ""), r.stderr
    # --no-stdin (like ssh -n): a loop reading a file keeps the rest of it
    r = _piped(d, f"printf 'x\\ny\\n' | {{ DLT exec {run_id} --no-stdin -- wc -l; cat; }}", 60)
    assert r.returncode == 0 and r.stdout.split() == ["0", "x", "y"], r.stdout + r.stderr


def test_output_larger_than_input_never_stalls(running: tuple[Path, str]) -> None:
    """od writes ~3.5x what it reads: with one thread sending stdin and reading the output,
    both sides waited on each other for ever after ~300 KB."""
    d, run_id = running
    r = _piped(d, f"head -c 5000000 /dev/zero | DLT exec {run_id} -- od -v | wc -l", 120)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) == 5000000 // 16 + 1          # a line per 16 bytes, then the offset


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_ends_the_command_and_puts_the_terminal_back(
        running: tuple[Path, str], engine: Any, sig: signal.Signals) -> None:
    import termios

    d, run_id = running
    leader, follower = os.openpty()
    before = termios.tcgetattr(follower)
    p = subprocess.Popen([sys.executable, "-m", "dltasks", "exec", run_id, "--", "sleep",
                          "124"], cwd=d, env=_dlt_env(), stdin=follower, stdout=follower,
                         stderr=follower, close_fds=True)
    try:
        _wait_for(lambda: "sleep 124" in _processes(engine, run_id), "sleep 124 started")
        assert termios.tcgetattr(follower) != before             # raw while attached
        p.send_signal(sig)
        assert p.wait(timeout=60) == 128 + sig
        assert termios.tcgetattr(follower) == before             # put back
        assert "sleep 124" not in _processes(engine, run_id)      # the command was ended
        assert "sleep 300" in _processes(engine, run_id)          # the run was not
    finally:
        with contextlib.suppress(ProcessLookupError):
            p.kill()
        os.close(leader)
        os.close(follower)


def test_ctrl_c_ends_a_background_job_ignoring_it_and_not_another_exec(
        running: tuple[Path, str], engine: Any) -> None:
    """A background job of `sh -c` ignores SIGINT: it is KILLed after the grace period. A
    second exec into the same run keeps its processes."""
    d, run_id = running
    other = _exec(d, run_id, "--", "sh", "-c", "echo started; exec sleep 302")
    p = _exec(d, run_id, "--", "sh", "-c", "sleep 201 & echo started; sleep 202; wait")
    try:
        for q in (p, other):
            assert q.stdout is not None and q.stdout.readline() == b"started\n"
        _wait_for(lambda: all(f"sleep {n}" in _processes(engine, run_id)
                              for n in (201, 202, 302)), "the sleeps started")
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 130, err
        assert b"dlt: ending the command (" in err and b"Ctrl-C again kills" in err, err
        left = _processes(engine, run_id)
        assert "sleep 201" not in left and "sleep 202" not in left, left
        assert "sleep 302" in left and "sleep 300" in left, left
        assert other.poll() is None
    finally:
        for q in (p, other):
            with contextlib.suppress(ProcessLookupError):
                q.send_signal(signal.SIGINT)
        other.communicate(timeout=60)
    assert "sleep 302" not in _processes(engine, run_id)


def test_a_paused_run_says_so_not_that_it_ended(running: tuple[Path, str], engine: Any) -> None:
    d, run_id = running
    [c] = _containers(engine, run_id)
    c.pause()
    try:
        r = dlt("exec", run_id, "--", "true", cwd=d)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
        assert f"run {run_id} is paused: nothing to exec into now" in r.stderr, r.stderr
    finally:
        c.unpause()


def test_a_second_ctrl_c_kills_at_once(running: tuple[Path, str], engine: Any) -> None:
    """Processes ignoring SIGINT, a grace period of 120 s: the second Ctrl-C KILLs them
    then, rather than cutting the cleanup short (which left them running)."""
    d, run_id = running
    p = subprocess.Popen([sys.executable, "-m", "dltasks", "exec", run_id, "--", "sh", "-c",
                          "trap '' INT; echo started; sleep 203"], cwd=d,
                         env={**_dlt_env(), "DLT_STOP_TIMEOUT": "120"},
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdout.readline() == b"started\n"
        assert p.stderr is not None
        _wait_for(lambda: "sleep 203" in _processes(engine, run_id), "sleep 203 started")
        p.send_signal(signal.SIGINT)
        line = p.stderr.readline()
        assert line.startswith(b"dlt: ending the command (2 processes; up to 120s"), line
        started = time.monotonic()
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=60) == 130
        assert time.monotonic() - started < 30
        assert "sleep 203" not in _processes(engine, run_id)
    finally:
        with contextlib.suppress(ProcessLookupError):
            p.kill()
        p.communicate()
