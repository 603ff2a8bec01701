"""`train --slurm` on a real Slurm (Debian's 22.05: slurmctld and two slurmd, n1 and n2, on
loopback; dev/slurm.sh), the real torch CPU image: one batch job, one srun step with torchrun
on each node, DDP on gloo, output followed with node and rank prefixes, the record with the job
id and the script; scancel through `stop`; sbatch's refusals and a pending job as one line
each. Runtimes: docker, and pyxis for real (pyxis 0.24 and enroot 4.1.2 built from dev/vendor
into the lab), with the squashfs made by `enroot import dockerd://` from the project image."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import dlt

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DDP = Path(__file__).resolve().parent.parent / "data" / "ddp" / "train_ddp.py"


def slurm_project(d: Path, image: str, extra: str = "") -> Path:
    shutil.copy(DDP, d / "train_ddp.py")
    (d / "outputs").mkdir(exist_ok=True)
    (d / ".env").write_text(f"DLT_IMAGE={image}\nDLT_TRAIN_CMD=python3 train_ddp.py\n"
                            f"DLT_OUTPUT_DIR={d / 'outputs'}\nGLOO_SOCKET_IFNAME=lo\n{extra}")
    return d


def containers_of(engine: Any, run_id: str) -> list[Any]:
    found: list[Any] = engine.containers.list(ignore_removed=True, all=True,
                                              filters={"label": f"dltasks.run={run_id}"})
    return found


def running_containers(engine: Any, run_id: str, n: int) -> list[Any]:
    """The ``n`` running containers of a docker-runtime job, once all are up (120 s at most)."""
    deadline = time.monotonic() + 120
    while (len(up := [c for c in containers_of(engine, run_id) if c.status == "running"])
           < n and time.monotonic() < deadline):
        time.sleep(0.5)
    assert len(up) == n, f"the job's {n} containers did not start in 120 s: {up}"
    return up


def squeue(env: dict[str, str], job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env={**_env(), **env},
                          capture_output=True, text=True).stdout.strip()


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}


@contextmanager
def dlt_running(args: list[str], cwd: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """`dlt ARGS` started in the background (text pipes, a process group of its own, as a
    terminal's foreground job); killed afterwards if still there."""
    p = subprocess.Popen([sys.executable, "-m", "dltasks", *args], cwd=cwd,
                         env={**_env(), **env}, text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def ctrl_c(p: subprocess.Popen[str], timeout: float = 60) -> str:
    """Interrupt it as Ctrl-C would (its whole group); what it said on stderr until it ended."""
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=timeout)
    return err


def only_record(d: Path) -> dict[str, Any]:
    (record,) = [json.loads(p.read_text()) for p in (d / "runs").glob("*/manifest.json")]
    return record


def records(d: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((d / "runs").glob("*/manifest.json"))]


def visible(folder: Path) -> list[str]:
    """The files in an image folder but the makers' lock files (.NAME.lock)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


LAB = Path("/tmp/dlt-slurm-lab")


def enroot_containers(uid: int = 0) -> list[str]:
    """What pyxis left in each lab node's enroot (start.sh keeps them per node and user)."""
    return [str(p) for n in ("n1", "n2")
            for p in (LAB / f"enroot-{n}" / "users" / str(uid) / "data").glob("*")]


@dataclass
class FirstPyxisJob:
    """The module's first pyxis job, the one that made the squashfs."""

    result: subprocess.CompletedProcess[str]
    project: Path
    images: Path       # its DLT_SLURM_IMAGE_DIR


@pytest.fixture(scope="module")
def pyxis_first(tmp_path_factory: pytest.TempPathFactory, torch_image: str,
                slurm_lab: dict[str, str]) -> Iterator[FirstPyxisJob]:
    """A 2-node pyxis job of a project with no squashfs yet: dltasks makes it (about 0.9 GB,
    40 s) in a folder of its own; the module's other pyxis tests use that file."""
    base = tmp_path_factory.mktemp("pyxis")
    project, images = base / "proj", base / "images"
    project.mkdir()
    slurm_project(project, torch_image,
                  f"DLT_SLURM_RUNTIME=pyxis\nDLT_SLURM_IMAGE_DIR={images}\n")
    r = dlt("train", "--slurm", "--nodes", "2", cwd=project, env=slurm_lab, timeout=400)
    yield FirstPyxisJob(r, project, images)
    shutil.rmtree(base, ignore_errors=True)


def test_a_two_node_ddp_job_runs_through_sbatch(torch_image: str, engine: Any, project: Path,
                                                slurm_lab: dict[str, str]) -> None:
    slurm_project(project, torch_image)
    r = dlt("train", "--slurm", "--nodes", "2", cwd=project, env=slurm_lab, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[node 0 rank 0] rank 0 of world 2" in r.stdout
    assert "[node 1 rank 1] rank 1 of world 2" in r.stdout
    w = [json.loads((project / "outputs" / f"weights-rank{i}.json").read_text()) for i in (0, 1)]
    assert w[0]["weights"] == w[1]["weights"] and w[0]["world"] == 2
    assert (project / "outputs" / "checkpoint.pt").is_file()
    record = only_record(project)
    job = record["slurm"]["job_id"]
    assert record["exit_code"] == 0 and record["slurm"]["state"] == "COMPLETED"
    folder = project / "runs" / record["run_id"]
    script = (folder / "job.sbatch").read_text()
    assert script == record["slurm"]["script"]
    assert "#SBATCH --nodes=2" in script and "srun --label --kill-on-bad-exit=1" in script
    assert "scontrol show hostnames" in script and "hostname --ip-address" in script
    node = (folder / "node.sh").read_text()
    assert "trap 'cleanup; exit 143' TERM INT HUP" in node and "SLURM_STEP_GPUS" in node
    assert (folder / f"exit-{job}").read_text().strip() == "0"
    assert containers_of(engine, record["run_id"]) == []
    runs = dlt("runs", cwd=project, env=slurm_lab)
    assert f"slurm:{job} n[1-2] COMPLETED" in runs.stdout, runs.stdout


def test_stop_cancels_the_job_and_the_wrapper_removes_the_containers(
        torch_image: str, engine: Any, project: Path, slurm_lab: dict[str, str]) -> None:
    slurm_project(project, torch_image, "DDP_SLEEP=300\n")
    r = dlt("train", "--slurm", "--nodes", "2", "--detach", cwd=project, env=slurm_lab)
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.split()[0]
    deadline = time.monotonic() + 120
    while len(containers_of(engine, run_id)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sorted(c.labels["dltasks.node"] for c in containers_of(engine, run_id)) == ["0", "1"]
    ps = dlt("ps", cwd=project, env=slurm_lab)
    assert run_id in ps.stdout and "running" in ps.stdout, ps.stdout + ps.stderr
    t0 = time.monotonic()
    r = dlt("stop", run_id, cwd=project, env=slurm_lab)
    assert r.returncode == 0, r.stderr
    job = only_record(project)["slurm"]["job_id"]
    assert f"cancelled Slurm job {job}" in r.stdout
    while containers_of(engine, run_id) and time.monotonic() - t0 < 30:
        time.sleep(0.5)
    assert containers_of(engine, run_id) == []       # the wrapper's trap removed them
    assert squeue(slurm_lab, job) == ""
    record = only_record(project)
    assert record["status"] == "cancelled" and record["slurm"]["state"] == "CANCELLED"
    assert record["exit_code"] == 143      # SIGTERM's, as a stopped container's, never 0


def test_one_failing_rank_ends_the_job_and_the_other_container(
        torch_image: str, engine: Any, project: Path, slurm_lab: dict[str, str]) -> None:
    """Rank 1 exits 3 while rank 0 would sleep for 5 minutes: srun --kill-on-bad-exit ends the
    step, the docker wrapper on n1 removes rank 0's container, and the run fails at once."""
    slurm_project(project, torch_image, "DDP_FAIL_RANK=1\nDDP_SLEEP=300\n")
    t0 = time.monotonic()
    r = dlt("train", "--slurm", "--nodes", "2", cwd=project, env=slurm_lab, timeout=240)
    took = time.monotonic() - t0
    assert r.returncode != 0, r.stdout + r.stderr
    assert "[node 1 rank 1] rank 1 fails" in r.stdout
    assert took < 120, f"the job went on for {took:.0f} s after rank 1 failed"
    record = only_record(project)
    assert record["slurm"]["state"] == "FAILED" and record["exit_code"] == r.returncode
    assert containers_of(engine, record["run_id"]) == []


def test_refusals_are_one_line_and_leave_no_record(torch_image: str, project: Path,
                                                   slurm_lab: dict[str, str]) -> None:
    slurm_project(project, torch_image)
    cases = [
        (["--partition", "nope"], "dlt: error: Slurm on local has no partition 'nope' ("),
        (["--gpus-per-node", "3"], "dlt: error: no node set on local offers 3 GPU(s) per node"),
        (["--sbatch", "=x"], "dlt: error: --sbatch '=x': write KEY=VALUE"),
        (["--partition", "debug\nhostname"], "dlt: error: --partition (or DLT_SLURM_PARTITION) "
         "'debug\\nhostname' holds a control character ('\\n'), which cannot go into a "
         "Slurm batch script: write the value on one line"),
        (["--sbatch", "comment=a\rb"], "dlt: error: --sbatch (or DLT_SLURM_SBATCH) "
         "'comment=a\\rb' holds a control character ('\\r')"),
    ]
    for flags, start in cases:
        r = dlt("train", "--slurm", *flags, cwd=project, env=slurm_lab)
        assert r.returncode == 1
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(start), r.stderr
    r = dlt("train", "--slurm", cwd=project, env={**slurm_lab, "PATH": "/usr/local/bin"})
    assert r.returncode == 1
    assert r.stderr.strip().startswith("dlt: error: no sbatch on local: run --slurm on the "
                                       "cluster's login node"), r.stderr
    assert not (project / "runs").exists() or list((project / "runs").iterdir()) == []
    comma = project / "a,b"
    comma.mkdir()
    slurm_project(comma, torch_image, "DLT_SLURM_RUNTIME=pyxis\n"
                                      f"DLT_SLURM_IMAGE={project / 'proj.sqsh'}\n")
    r = dlt("train", "--slurm", cwd=comma, env=slurm_lab)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        f"dlt: error: the mounted path {str(comma)!r} holds ',', which separates the mounts of "
        "srun --container-mounts: move or link it to a path without ',', or set "
        "DLT_SLURM_RUNTIME=docker"), r.stderr
    assert not (comma / "runs").exists() or list((comma / "runs").iterdir()) == []


def test_a_pending_job_says_why_and_ctrl_c_cancels_it(torch_image: str, project: Path,
                                                      slurm_lab: dict[str, str]) -> None:
    slurm_project(project, torch_image)
    with dlt_running(["train", "--slurm", "--sbatch", "begin=now+3600"], project,
                     slurm_lab) as p:
        assert p.stderr is not None
        seen = ""
        deadline = time.monotonic() + 60
        while "pending (BeginTime)" not in seen and time.monotonic() < deadline:
            seen += p.stderr.readline()
        assert "pending (BeginTime)" in seen, seen
        err = ctrl_c(p)
    assert p.returncode == 130, err
    assert "cancelling Slurm job" in err
    record = only_record(project)
    assert squeue(slurm_lab, record["slurm"]["job_id"]) == ""
    assert record["status"] == "cancelled"


def test_docker_runtime_gives_the_gpus_slurm_granted(torch_image: str, project: Path,
                                                     slurm_lab: dict[str, str],
                                                     hook_torch_engine: Any) -> None:
    """Each node asks for 1 of its 2 GRES GPUs: its container's device request is the GPU
    Slurm granted that step (the stand-in hook engine records it), never all of them, and its
    GPU label (the claim other runs on that host read) names that GPU, never the request."""
    eng = hook_torch_engine
    since = int(time.time()) - 1
    slurm_project(project, torch_image)
    (project / ".env").write_text((project / ".env").read_text().replace(
        f"DLT_OUTPUT_DIR={project / 'outputs'}", "DLT_OUTPUT_DIR=") + "OUT_DIR=/workspace\n")
    r = dlt("train", "--slurm", "--nodes", "2", "--gpus-per-node", "1", "--nproc", "1",
            cwd=project, env={**slurm_lab, "DOCKER_HOST": eng.url}, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    record = only_record(project)
    calls = eng.hook_calls(record["run_id"])
    assert len(calls) == 2
    assert sorted(c["env"]["NVIDIA_VISIBLE_DEVICES"] for c in calls) == ["0", "0"]
    created = eng.client.api.events(
        since=since, until=int(time.time()) + 1, decode=True,
        filters={"type": "container", "event": "create",
                 "label": f"dltasks.run={record['run_id']}"})
    assert [e["Actor"]["Attributes"].get("dltasks.gpus") for e in created] == ["0", "0"]
    w = [json.loads((project / f"weights-rank{i}.json").read_text()) for i in (0, 1)]
    assert w[0]["weights"] == w[1]["weights"]
    assert "#SBATCH --gpus-per-node=1" in record["slurm"]["script"]


def test_logs_follow_streams_a_detached_job_to_its_end(torch_image: str, project: Path,
                                                       slurm_lab: dict[str, str]) -> None:
    slurm_project(project, torch_image)
    r = dlt("train", "--slurm", "--nodes", "2", "--detach", cwd=project, env=slurm_lab)
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.split()[0]
    r = dlt("logs", run_id, "--follow", cwd=project, env=slurm_lab, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "[node 1 rank 1] rank 1 done" in r.stdout and "[node 0 rank 0] rank 0 done" in r.stdout
    record = only_record(project)
    assert record["exit_code"] == 0 and record["status"] == "completed"


def test_a_job_killed_by_its_time_limit_says_so(torch_image: str, project: Path,
                                                 slurm_lab: dict[str, str]) -> None:
    slurm_project(project, torch_image, "DDP_SLEEP=600\n")
    r = dlt("train", "--slurm", "--time", "1", cwd=project, env=slurm_lab, timeout=280)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("dlt: error: Slurm job ") and "hit its time limit (1): ask for " \
        "more with --time" in last, r.stderr
    assert only_record(project)["slurm"]["state"] == "TIMEOUT"


def login_node_job(d: Path, torch_image: str, ssh_lab: Any,
                   extra: str = "") -> subprocess.CompletedProcess[str]:
    """`fab -H gpu1 train --slurm --nodes 2` of the DDP script in project ``d``: gpu1 is the
    lab's login node (its user sees the cluster through /etc/slurm/slurm.conf)."""
    from tests.sshd_harness import fab

    shutil.copy(DDP, d / "train_ddp.py")
    with (d / ".env").open("a") as f:
        f.write(f"DLT_IMAGE={torch_image}\nDLT_TRAIN_CMD=python3 train_ddp.py\n"
                f"DLT_OUTPUT_DIR=outputs\nGLOO_SOCKET_IFNAME=lo\n{extra}")
    r: subprocess.CompletedProcess[str] = fab(
        "-H", "gpu1", "train", "--slurm", "--nodes", "2", cwd=d, env=ssh_lab.env(), timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[node 1 rank 1] rank 1 of world 2" in r.stdout
    return r


@pytest.mark.ssh
def test_submitted_from_a_login_node_over_ssh(torch_image: str, engine: Any, ssh_lab: Any,
                                              remote_project: tuple[Path, str],
                                              slurm_lab: dict[str, str]) -> None:
    """`fab -H gpu1 train --slurm`: the code synced to gpu1 (the lab's login node; its user
    sees the cluster through /etc/slurm/slurm.conf), sbatch run there, as that user."""
    d, name = remote_project
    login_node_job(d, torch_image, ssh_lab)
    out = Path(ssh_lab.hosts["gpu1"].home) / "dltasks" / name / "outputs"
    w = [json.loads((out / f"weights-rank{i}.json").read_text()) for i in (0, 1)]
    assert w[0]["weights"] == w[1]["weights"]
    assert (out / "weights-rank0.json").stat().st_uid == \
        (Path(ssh_lab.hosts["gpu1"].home)).stat().st_uid      # written as gpu1's user
    record = only_record(d)
    assert record["host"] == "gpu1" and record["slurm"]["state"] == "COMPLETED"
    # rsync -a carried the modes: the run's folder there is its user's alone
    there = Path(ssh_lab.hosts["gpu1"].home) / "dltasks" / name / "runs" / record["run_id"]
    assert there.stat().st_mode & 0o777 == 0o700
    assert (there / "container.env").stat().st_mode & 0o777 == 0o600


@pytest.mark.ssh
@pytest.mark.slow
def test_exec_through_a_login_node_streams_bytes_both_ways(
        torch_image: str, engine: Any, ssh_lab: Any, remote_project: tuple[Path, str],
        slurm_lab: dict[str, str]) -> None:
    """`fab -H gpu1 exec RUN --node 1`: srun on the login node over an exec channel of our
    SSH connection: binary output byte for byte, 5 MB of stdin to the end; one SIGINT (no
    tty) ends the command in the container, not the run."""
    import hashlib

    from tests.sshd_harness import fab

    d, _ = remote_project
    shutil.copy(DDP, d / "train_ddp.py")
    with (d / ".env").open("a") as f:
        f.write(f"DLT_IMAGE={torch_image}\nDLT_TRAIN_CMD=python3 train_ddp.py\n"
                "DLT_OUTPUT_DIR=outputs\nGLOO_SOCKET_IFNAME=lo\nDDP_SLEEP=300\n")
    r = fab("-H", "gpu1", "train", "--slurm", "--nodes", "2", "--detach", cwd=d,
            env=ssh_lab.env(), timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    run_id = only_record(d)["run_id"]
    program = "import sys; from fabric.main import program; sys.argv[0] = 'fab'; program.run()"
    exec_ = [sys.executable, "-c", program, "-H", "gpu1", "exec", run_id, "--node", "1"]
    try:
        up = running_containers(engine, run_id, 2)
        [node1] = [c for c in up if c.labels["dltasks.node"] == "1"]
        got = subprocess.run([*exec_, "--cmd", "head -c 300000 /dev/urandom | tee /tmp/r.bin"],
                             cwd=d, env=ssh_lab.env(), capture_output=True, timeout=120)
        assert got.returncode == 0, got.stderr
        kept = node1.exec_run(["cat", "/tmp/r.bin"]).output
        assert len(kept) == 300000
        assert hashlib.sha256(got.stdout).hexdigest() == hashlib.sha256(kept).hexdigest()
        got = subprocess.run([*exec_, "--cmd", "wc -c; exit 5"], cwd=d, env=ssh_lab.env(),
                             capture_output=True, input=b"\0\xff" * 2_500_000, timeout=120)
        assert got.returncode == 5 and got.stdout.split() == [b"5000000"], got.stderr

        def top() -> str:
            return "\n".join(" ".join(p) for p in node1.top()["Processes"])

        p = subprocess.Popen([*exec_, "--cmd", "echo started; exec sleep 272"], cwd=d,
                             env=ssh_lab.env(), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert p.stdout is not None and p.stdout.readline() == b"started\n"
            deadline = time.monotonic() + 30
            while "sleep 272" not in top() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "sleep 272" in top()
            p.send_signal(signal.SIGINT)   # no tty: the channel closes, the marker kill runs
            _, err = p.communicate(timeout=90)
            assert p.returncode == 130, err
            deadline = time.monotonic() + 30
            while "sleep 272" in top() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "sleep 272" not in top(), top()
            assert "train_ddp.py" in top()   # the run goes on
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    finally:
        fab("-H", "gpu1", "stop", run_id, cwd=d, env=ssh_lab.env())
        for c in containers_of(engine, run_id):
            c.remove(force=True)


def client_conf(d: Path, **changes: str) -> dict[str, str]:
    """The lab's slurm.conf with some keys changed, for the client side only (the daemons
    keep theirs): how a login node of another cluster would see it."""
    lines, left = [], dict(changes)
    for line in (LAB / "slurm.conf").read_text().splitlines():
        key = line.partition("=")[0]
        lines.append(f"{key}={left.pop(key)}" if key in left else line)
    lines += [f"{k}={v}" for k, v in left.items()]
    conf = d / f"client-{len(list(d.glob('client-*')))}.conf"
    conf.write_text("\n".join(lines) + "\n")
    return {"SLURM_CONF": str(conf)}


def sacct_state(env: dict[str, str], job: str) -> str:
    return subprocess.run(["sacct", "-n", "-P", "-X", "-j", job, "-o", "State"],
                          env={**_env(), **env}, capture_output=True, text=True).stdout.strip()


def test_the_end_of_a_job_comes_from_sacct_else_scontrol(torch_image: str, project: Path,
                                                         tmp_path: Path,
                                                         slurm_lab: dict[str, str]) -> None:
    """The lab keeps accounting (slurmdbd): once sacct has the job's end, `runs` takes it
    from there, with the nodes it ran on. A client whose cluster keeps none (sacct: disabled)
    gets it from scontrol while Slurm remembers the job. And while Slurm does not answer, a
    run's end stays unknown: nothing is made up."""
    slurm_project(project, torch_image)
    down = client_conf(tmp_path, SlurmctldPort="16999",     # nothing listens there;
                       MessageTimeout="1")                  # say so at once, not in 18 s
    r = dlt("train", "--slurm", "--nodes", "2", "--detach", cwd=project, env=slurm_lab)
    assert r.returncode == 0, r.stderr
    job = only_record(project)["slurm"]["job_id"]
    deadline = time.monotonic() + 120
    while squeue(slurm_lab, job) and time.monotonic() < deadline:
        time.sleep(0.5)
    r = dlt("runs", cwd=project, env=down)
    assert r.returncode == 0, r.stderr
    assert f"slurm:{job} 2 node(s) unknown" in r.stdout, r.stdout
    assert r.stderr.startswith("dlt: Slurm on local did not answer (") and \
        f"the state of job {job} is not known now" in r.stderr, r.stderr
    record = only_record(project)
    assert record["exit_code"] is None and record["status"] == "submitted"   # nothing written
    while sacct_state(slurm_lab, job) != "COMPLETED" and time.monotonic() < deadline:
        time.sleep(0.5)
    r = dlt("runs", cwd=project, env=slurm_lab)
    assert r.returncode == 0, r.stderr
    assert f"slurm:{job} n[1-2] COMPLETED" in r.stdout, r.stdout
    record = only_record(project)
    assert record["exit_code"] == 0 and record["slurm"]["state_from"] == "sacct"
    assert record["slurm"]["nodelist"] == "n[1-2]"

    other = project / "second"
    other.mkdir()
    slurm_project(other, torch_image)
    (other / ".env").write_text((other / ".env").read_text().replace(
        f"DLT_OUTPUT_DIR={project / 'outputs'}", f"DLT_OUTPUT_DIR={other}"))
    no_acct = client_conf(tmp_path, AccountingStorageType="accounting_storage/none")
    r = dlt("train", "--slurm", "--nodes", "2", cwd=other, env=no_acct, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    record = only_record(other)
    assert record["slurm"]["state"] == "COMPLETED"
    assert record["slurm"]["state_from"] == "scontrol" and record["slurm"]["nodelist"] == "n[1-2]"


def test_logs_follow_rides_out_a_controller_that_does_not_answer(
        torch_image: str, project: Path, tmp_path: Path, slurm_lab: dict[str, str]) -> None:
    """`logs --follow` while Slurm does not answer says so once and keeps following (the job
    may well run on) instead of taking the silence for the job's end; Ctrl-C detaches."""
    slurm_project(project, torch_image, "DDP_SLEEP=300\n")
    r = dlt("train", "--slurm", "--detach", cwd=project, env=slurm_lab)
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.split()[0]
    down = client_conf(tmp_path, SlurmctldPort="16999", MessageTimeout="1")
    job = only_record(project)["slurm"]["job_id"]
    with dlt_running(["logs", run_id, "--follow"], project, down) as p:
        assert p.stderr is not None
        line = p.stderr.readline()
        assert line.startswith("dlt: Slurm on local did not answer (") and \
            line.rstrip().endswith(f"still following job {job}"), line
        time.sleep(2)
        assert p.poll() is None                       # still following, not "ended"
        err = ctrl_c(p)
    assert p.returncode == 130 and f"detached from {run_id}; the job goes on" in err, err
    assert only_record(project)["exit_code"] is None
    r = dlt("stop", run_id, cwd=project, env=slurm_lab)
    assert r.returncode == 0, r.stderr
    assert only_record(project)["status"] == "cancelled"


def test_pyxis_runs_the_job_in_a_squashfs_made_from_the_project_image(
        torch_image: str, engine: Any, slurm_lab: dict[str, str],
        pyxis_first: FirstPyxisJob) -> None:
    """DLT_SLURM_RUNTIME=pyxis with no DLT_SLURM_IMAGE: the squashfs is made on the login host
    (here) by `enroot import dockerd://<image ID>`, named by the ID, then `srun
    --container-image --container-mounts --container-workdir` runs DDP across n1 and n2; a
    second job reuses the file; pyxis leaves no container behind."""
    project, images, r = pyxis_first.project, pyxis_first.images, pyxis_first.result
    image_id = engine.images.get(torch_image).id
    for attempt in (1, 2):
        if attempt == 2:
            r = dlt("train", "--slurm", "--nodes", "2", cwd=project, env=slurm_lab, timeout=400)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "[node 0 rank 0] rank 0 of world 2" in r.stdout
        assert "[node 1 rank 1] rank 1 of world 2" in r.stdout
        if attempt == 1:
            made = Path(records(project)[0]["slurm"]["image_file"])
            assert made.parent == images
            assert made.name.endswith(f"-{image_id.split(':')[1][:12]}.sqsh"), made
            assert f"pyxis image: [1/1] enroot makes {made} from {torch_image} ..." in r.stderr
            assert "pyxis image: [1/1] done in " in r.stderr
            first = made.stat().st_mtime_ns
        else:
            assert "enroot makes" not in r.stderr
            assert f"dlt: pyxis image {made} (made earlier from {torch_image}" in r.stderr
            assert made.stat().st_mtime_ns == first
    assert made.read_bytes()[:4] == b"hsqs"                      # a squashfs superblock
    assert visible(images) == [made.name]                # no .part left
    w = [json.loads((project / "outputs" / f"weights-rank{i}.json").read_text()) for i in (0, 1)]
    assert w[0]["weights"] == w[1]["weights"] and w[0]["world"] == 2
    assert (project / "outputs" / "checkpoint.pt").is_file()
    one, two = records(project)
    for record in (one, two):
        assert record["slurm"]["state"] == "COMPLETED" and record["exit_code"] == 0
        assert record["slurm"]["image_file"] == str(made)
        assert record["slurm"]["image_id"] == image_id
        script = record["slurm"]["script"]
        assert f"--container-image={made} " in script
        # the .env the container reads is the copy without DLT_* lines, mounted over it
        dotenv = project / "runs" / record["run_id"] / "configs" / ".env"
        assert f"--container-mounts={project}:/workspace,{project / 'outputs'}:/outputs," \
            f"{dotenv}:/workspace/.env:ro --container-workdir=/workspace" in script
        assert "DLT_" not in dotenv.read_text()
    assert one["slurm"]["image_made"] is True and two["slurm"]["image_made"] is False
    assert enroot_containers() == []


def test_pyxis_job_stopped_and_the_image_as_given(torch_image: str, project: Path,
                                                  slurm_lab: dict[str, str],
                                                  pyxis_first: FirstPyxisJob) -> None:
    """`stop` (scancel) ends a pyxis job and pyxis removes its containers; DLT_SLURM_IMAGE
    goes to --container-image as is (a file here: the one the first test made; a registry
    reference in --dry-run), and nothing is made then."""
    (made,) = pyxis_first.images.glob("*.sqsh")
    slurm_project(project, torch_image, f"DLT_SLURM_RUNTIME=pyxis\nDLT_SLURM_IMAGE={made}\n"
                                        "DDP_SLEEP=300\n")
    r = dlt("train", "--slurm", "--nodes", "2", "--detach", cwd=project, env=slurm_lab)
    assert r.returncode == 0, r.stderr
    assert "enroot" not in r.stderr and "pyxis image" not in r.stderr
    run_id = r.stdout.split()[0]
    record = only_record(project)
    assert f"--container-image={made} " in record["slurm"]["script"]
    deadline = time.monotonic() + 120
    while len(enroot_containers()) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(enroot_containers()) == 2, "pyxis made one container per node"
    r = dlt("stop", run_id, cwd=project, env=slurm_lab)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 60
    while enroot_containers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert enroot_containers() == []
    assert squeue(slurm_lab, record["slurm"]["job_id"]) == ""
    ref = "nvcr.io#nvidia/pytorch:24.05-py3"
    r = dlt("train", "--slurm", "--dry-run", cwd=project,
            env={**slurm_lab, "DLT_SLURM_IMAGE": ref})
    assert r.returncode == 0, r.stderr
    assert f"--container-image='{ref}' " in r.stdout and "would make" not in r.stderr
    # --image names an image on the engine: the file is made from it, DLT_SLURM_IMAGE or not
    r = dlt("train", "--slurm", "--dry-run", "--image", torch_image, cwd=project, env=slurm_lab)
    assert r.returncode == 0, r.stderr
    assert f"dlt: would make {project / 'runs' / '.images'}/" in r.stderr
    assert f"from {torch_image} (enroot)" in r.stderr
    assert f"--container-image={project / 'runs' / '.images'}/" in r.stdout
    r = dlt("train", "--slurm", "--dry-run", "--image", torch_image, cwd=project,
            env={**slurm_lab, "DLT_SLURM_IMAGE_DIR": "~/dlt-images"})
    assert f"dlt: would make {Path.home() / 'dlt-images'}/" in r.stderr, r.stderr
    r = dlt("train", "--slurm", "--dry-run", "--image", torch_image, cwd=project,
            env={**slurm_lab, "DLT_SLURM_IMAGE_DIR": "~bob/images"})
    assert r.returncode == 1 and r.stderr.strip() == (
        "dlt: error: DLT_SLURM_IMAGE_DIR='~bob/images': ~user paths are not supported; write "
        "an absolute path or ~/path"), r.stderr


def _enroot_containers(engine: Any) -> set[str]:
    """The containers enroot made on the engine to export an image (enroot.XXXXXXXXXX)."""
    return {c.name for c in engine.containers.list(ignore_removed=True, all=True)
            if c.name.startswith("enroot.")}


#: In a pyxis container (no PID namespace of its own), the line of the job's process in the
#: same mount namespace as this shell, i.e. the same container: its SLURM_NODEID.
_SAME_CONTAINER = ('me=$(readlink /proc/self/ns/mnt); for p in /proc/[0-9]*; do '
                   '[ "$(readlink $p/ns/mnt 2>/dev/null)" = "$me" ] && '
                   'tr "\\000" " " < $p/cmdline 2>/dev/null | grep -q "train_ddp[.]py" && '
                   'tr "\\000" "\\n" < $p/environ | grep ^SLURM_NODEID= && break; done')


def job_processes(job_id: str, command: str) -> list[int]:
    """The processes of Slurm job ``job_id`` (SLURM_JOB_ID in their environment: the job's
    steps, the overlapping ones of exec too) whose command line starts with ``command``."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            env = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd.startswith(command) and f"SLURM_JOB_ID={job_id}".encode() in env:
            found.append(int(d.name))
    return found


def _processes(command: str) -> list[int]:
    """The processes whose command line starts with ``command``."""
    found = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and (d / "cmdline").read_bytes().replace(
                    b"\0", b" ").decode(errors="replace").startswith(command):
                found.append(int(d.name))
        except OSError:
            continue
    return found


def job_containers(job_id: str, uid: int = 0) -> list[str]:
    """What pyxis keeps in the lab nodes' enroot for job ``job_id`` (pyxis_JOB.STEP)."""
    return [c for c in enroot_containers(uid) if Path(c).name.startswith(f"pyxis_{job_id}.")]


#: A command that ignores SIGINT, SIGTERM and SIGHUP (so do its children): only a SIGKILL
#: ends it; it says when it is up.
def _stubborn(seconds: int) -> str:
    return f"trap '' INT TERM HUP; echo started; exec sleep {seconds}"


def test_exec_joins_a_pyxis_runs_container_and_nothing_is_left(
        torch_image: str, project: Path, slurm_lab: dict[str, str],
        pyxis_first: FirstPyxisJob) -> None:
    """`exec RUN --node 1` of a pyxis run: `srun --overlap --container-name=JOB.STEP:exec`
    joins node 1's container of the job's step (the same mount namespace as its training
    process), in the run's folder, with the run's variables (from the run's 0600 file, not a
    command line: the joined container's own environment does not have them); bytes both
    ways, exit code, a tty; one SIGINT ends even a command that ignores it (the exec's step
    ends), never the run. `stop` with an exec still inside: pyxis removes the unnamed
    containers, nothing runs on, and a later exec says the run ended."""
    import hashlib

    from tests.integration.test_exec import _slurm_exec_with_a_tty_runs_a_shell

    (made,) = pyxis_first.images.glob("*.sqsh")
    slurm_project(project, torch_image, f"DLT_SLURM_RUNTIME=pyxis\nDLT_SLURM_IMAGE={made}\n"
                                        "DDP_SLEEP=300\nEXEC_SEES=pyxis-env\n"
                                        "DLT_STOP_TIMEOUT=2\n")
    r = dlt("train", "--slurm", "--nodes", "2", "--detach", cwd=project, env=slurm_lab)
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.split()[0]
    job = str(only_record(project)["slurm"]["job_id"])
    env = {**_env(), **slurm_lab}
    base = [sys.executable, "-m", "dltasks", "exec", run_id, "--node", "1", "--"]
    late = None
    try:
        deadline = time.monotonic() + 120   # until the step's containers run its processes
        while len(job_processes(job, "python3 train_ddp.py")) < 2 \
                and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(job_processes(job, "python3 train_ddp.py")) == 2
        assert len(job_containers(job)) == 2, "pyxis made one container per node"
        r = dlt("exec", run_id, "--node", "1", "--", "sh", "-c",
                f"{_SAME_CONTAINER}; echo env=$EXEC_SEES; pwd; ls train_ddp*; exit 6",
                cwd=project, env=slurm_lab)
        assert r.returncode == 6, r.stdout + r.stderr
        assert r.stdout.splitlines() == ["SLURM_NODEID=1", "env=pyxis-env", "/workspace",
                                         "train_ddp.py"], r.stdout + r.stderr
        record = only_record(project)
        assert record["slurm"]["container"] == f"dlt-proj-{run_id}"
        assert record["slurm"]["workdir"] == "/workspace"
        assert "pyxis-env" not in record["slurm"]["script"]
        r = dlt("exec", run_id, "--", "sh", "-c", _SAME_CONTAINER, cwd=project, env=slurm_lab)
        assert r.returncode == 0 and r.stdout.strip() == "SLURM_NODEID=0", r.stdout + r.stderr
        assert "has 2 nodes: exec goes into node 0" in r.stderr

        got = subprocess.run([*base, "sh", "-c", "head -c 300000 /dev/urandom | tee r.bin"],
                             cwd=project, env=env, capture_output=True, timeout=120)
        assert got.returncode == 0, got.stderr
        kept = (project / "r.bin").read_bytes()    # the project folder is /workspace
        assert len(kept) == 300000
        assert hashlib.sha256(got.stdout).hexdigest() == hashlib.sha256(kept).hexdigest()
        got = subprocess.run([*base, "wc", "-c"], cwd=project, env=env, capture_output=True,
                             input=b"\0\xff" * 2_500_000, timeout=120)
        assert got.returncode == 0 and got.stdout.split() == [b"5000000"], got.stderr

        p = subprocess.Popen([*base, "sh", "-c", _stubborn(275)], cwd=project, env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        try:
            assert p.stdout is not None and p.stdout.readline() == b"started\n"
            assert job_processes(job, "sleep 275")
            p.send_signal(signal.SIGINT)    # to dlt alone: srun ends its step, all of it
            _, err = p.communicate(timeout=90)
            assert p.returncode == 130, err
            deadline = time.monotonic() + 30
            while job_processes(job, "sleep 275") and time.monotonic() < deadline:
                time.sleep(0.2)
            assert job_processes(job, "sleep 275") == []
            assert len(job_processes(job, "python3 train_ddp.py")) == 2   # the run goes on
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        _slurm_exec_with_a_tty_runs_a_shell(project, run_id, slurm_lab)

        late = subprocess.Popen([*base, "sh", "-c", _stubborn(276)], cwd=project, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert late.stdout is not None and late.stdout.readline() == b"started\n"
        r = dlt("stop", run_id, cwd=project, env=slurm_lab)
        assert r.returncode == 0, r.stderr
        late.communicate(timeout=90)        # the job's end ends the exec's step
        deadline = time.monotonic() + 60
        while (job_containers(job) or job_processes(job, "sleep 276")) \
                and time.monotonic() < deadline:
            time.sleep(0.5)
        assert job_containers(job) == [] and job_processes(job, "sleep 276") == []
        r = dlt("exec", run_id, "--", "true", cwd=project, env=slurm_lab)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
        assert f"run {run_id} ended (exit 143)" in r.stderr, r.stderr
        assert "nothing to exec into" in r.stderr
    finally:
        dlt("stop", run_id, cwd=project, env=slurm_lab)
        if late is not None and late.poll() is None:
            late.kill()
            late.wait()


def test_ctrl_c_while_the_squashfs_is_made_leaves_nothing(torch_image: str, engine: Any,
                                                         project: Path, tmp_path: Path,
                                                         slurm_lab: dict[str, str]) -> None:
    images = tmp_path / "images"
    slurm_project(project, torch_image, f"DLT_SLURM_RUNTIME=pyxis\nDLT_SLURM_IMAGE_DIR={images}\n")
    before = _enroot_containers(engine)  # one an earlier, killed session left is not ours
    with dlt_running(["train", "--slurm"], project, slurm_lab) as p:
        assert p.stderr is not None
        line = p.stderr.readline()
        assert "pyxis image: [1/1] enroot makes" in line, line
        deadline = time.monotonic() + 60   # until enroot is writing the squashfs
        while not list(images.glob("*.part-*")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list(images.glob("*.part-*"))
        err = ctrl_c(p)
    assert p.returncode == 130, err
    assert err.strip().splitlines()[-1] == ("dlt: error: interrupted: the pyxis image was not "
                                            "made (nothing of it is left)"), err
    assert visible(images) == []                         # the part is gone
    assert _enroot_containers(engine) - before == set()  # enroot's export container
    assert not (project / "runs").exists() or list((project / "runs").iterdir()) == []


def test_two_submissions_at_once_make_the_squashfs_once(torch_image: str, tmp_path: Path,
                                                        slurm_lab: dict[str, str]) -> None:
    """Two projects of one image submitted at the same moment (a sweep started in parallel):
    one makes the squashfs, the other waits for it (flock) and uses it."""
    images = tmp_path / "images"
    projects = []
    for name in ("one", "two"):
        d = tmp_path / name / "proj"
        d.mkdir(parents=True)
        projects.append(slurm_project(d, torch_image, "DLT_SLURM_RUNTIME=pyxis\n"
                                                     f"DLT_SLURM_IMAGE_DIR={images}\n"))
    with dlt_running(["train", "--slurm", "--detach"], projects[0], slurm_lab) as a, \
            dlt_running(["train", "--slurm", "--detach"], projects[1], slurm_lab) as b:
        outs = [p.communicate(timeout=300) for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, outs
    said = [err for _, err in outs]
    assert sum("was made meanwhile by another submission; using it" in e for e in said) == 1, said
    (made,) = images.glob("*.sqsh")
    assert list(images.glob("*.part-*")) == []
    jobs = [only_record(d)["slurm"] for d in projects]
    assert sorted(j["image_made"] for j in jobs) == [False, True]
    assert {j["image_file"] for j in jobs} == {str(made)}
    deadline = time.monotonic() + 180
    while any(squeue(slurm_lab, str(j["job_id"])) for j in jobs) and time.monotonic() < deadline:
        time.sleep(1)
    for d in projects:
        r = dlt("runs", cwd=d, env=slurm_lab)
        assert " COMPLETED " in r.stdout, r.stdout + r.stderr


def test_pyxis_and_apptainer_image_refusals_are_one_line(project: Path,
                                                         slurm_lab: dict[str, str]) -> None:
    """No image on the engine to make the file from; no apptainer on the host (this one has
    none): one line each, with the fix, and no record."""
    slurm_project(project, "dlt-no-such-image:1", "DLT_SLURM_RUNTIME=pyxis\n")
    r = dlt("train", "--slurm", cwd=project, env=slurm_lab)
    assert r.returncode == 1
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("dlt: error: no image dlt-no-such-image:1 on local's engine to make "
                           "the pyxis image from (") and "build it there (dlt " \
        "extend-image), or set DLT_SLURM_IMAGE to a .sqsh file or a registry reference" in line
    r = dlt("train", "--slurm", cwd=project, env={**slurm_lab, "DLT_SLURM_RUNTIME": "apptainer"})
    assert r.returncode == 1
    (line,) = r.stderr.strip().splitlines()
    assert line == ("dlt: error: apptainer runs an image file that apptainer makes from the "
                    "project image, and local has no apptainer: install it there, or set "
                    "DLT_SLURM_IMAGE to a .sif file or a docker:// URI")
    assert not (project / "runs").exists() or list((project / "runs").iterdir()) == []


@pytest.mark.ssh
def test_pyxis_from_a_login_node_as_its_user(torch_image: str, ssh_lab: Any,
                                             remote_project: tuple[Path, str],
                                             slurm_lab: dict[str, str]) -> None:
    """`fab -H gpu1 train --slurm` with pyxis: gpu1's user makes the squashfs in the project's
    folder there (runs/.images, on the "shared" filesystem) and pyxis runs the job as that
    user (enroot unprivileged, in a user namespace); outputs are that user's."""
    from tests.sshd_harness import fab

    d, name = remote_project
    r = login_node_job(d, torch_image, ssh_lab, "DLT_SLURM_RUNTIME=pyxis\n")
    home = Path(ssh_lab.hosts["gpu1"].home)
    remote = home / "dltasks" / name
    (made,) = (remote / "runs" / ".images").glob("*.sqsh")
    assert f"pyxis image: [1/1] enroot makes {made} from {torch_image} ..." in r.stderr
    uid = home.stat().st_uid
    assert made.stat().st_uid == uid
    out = remote / "outputs"
    w = [json.loads((out / f"weights-rank{i}.json").read_text()) for i in (0, 1)]
    assert w[0]["weights"] == w[1]["weights"]
    assert (out / "weights-rank0.json").stat().st_uid == uid      # written as gpu1's user
    record = only_record(d)
    assert record["host"] == "gpu1" and record["slurm"]["state"] == "COMPLETED"
    assert record["slurm"]["image_file"] == str(made)
    assert enroot_containers(uid) == []
    _exec_into_a_pyxis_run_from_a_login_node(d, ssh_lab, uid)
    # ~/ in DLT_SLURM_IMAGE_DIR: the login's home there
    r = fab("-H", "gpu1", "train", "--slurm", "--dry-run", cwd=d,
            env={**ssh_lab.env(), "DLT_SLURM_IMAGE_DIR": "~/dlt-images"})
    assert r.returncode == 0, r.stderr
    assert f"dlt: would make {home / 'dlt-images'}/" in r.stderr, r.stderr


def _exec_into_a_pyxis_run_from_a_login_node(d: Path, ssh_lab: Any, uid: int) -> None:
    """`fab -H gpu1 exec RUN --node 1` of a detached pyxis job (the squashfs made above): srun
    on the login node, as its user, joins node 1's container (pyxis in the user's namespace),
    with the run's variables and its exit code; Ctrl-C (no tty: our SSH channel closes, the
    srun there would go on) ends even a command that ignores SIGINT, by scancel of the exec's
    step; after `stop`, nothing in enroot's store."""
    from tests.sshd_harness import fab

    with (d / ".env").open("a") as f:
        f.write("DDP_SLEEP=300\nEXEC_SEES=login-pyxis\nDLT_STOP_TIMEOUT=2\n")
    r = fab("-H", "gpu1", "train", "--slurm", "--nodes", "2", "--detach", cwd=d,
            env=ssh_lab.env(), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    run_id = r.stdout.split()[0]
    job = str(records(d)[-1]["slurm"]["job_id"])
    program = "import sys; from fabric.main import program; sys.argv[0] = 'fab'; program.run()"
    exec_ = [sys.executable, "-c", program, "-H", "gpu1", "exec", run_id, "--node", "1"]
    try:
        deadline = time.monotonic() + 120   # until the step's containers run its processes
        while len(job_processes(job, "python3 train_ddp.py")) < 2 \
                and time.monotonic() < deadline:
            time.sleep(0.5)
        got = fab("-H", "gpu1", "exec", run_id, "--node", "1", "--cmd",
                  f"{_SAME_CONTAINER}; echo env=$EXEC_SEES; id -u; exit 3", cwd=d,
                  env=ssh_lab.env(), timeout=120)
        assert got.returncode == 3, got
        assert got.stdout.splitlines() == ["SLURM_NODEID=1", "env=login-pyxis", str(uid)], got
        p = subprocess.Popen([*exec_, "--cmd", _stubborn(277)], cwd=d, env=ssh_lab.env(),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        try:
            assert p.stdout is not None and p.stdout.readline() == b"started\n"
            p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=90)
            assert p.returncode == 130, err
            deadline = time.monotonic() + 30   # SIGINT is ignored: SIGKILL after 2 s
            while job_processes(job, "sleep 277") and time.monotonic() < deadline:
                time.sleep(0.2)
            assert job_processes(job, "sleep 277") == []
            assert _processes(f"srun --jobid={job} ") == []              # nor srun there
            assert len(job_processes(job, "python3 train_ddp.py")) == 2  # the run goes on
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    finally:
        r = fab("-H", "gpu1", "stop", run_id, cwd=d, env=ssh_lab.env(), timeout=120)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 60
    while job_containers(job, uid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job_containers(job, uid) == []


def test_a_project_whose_path_has_a_space_and_a_percent_runs(torch_image: str, tmp_path: Path,
                                                             slurm_lab: dict[str, str]) -> None:
    """`#SBATCH --output` of a path with a space (quoted as sbatch reads it) and a % (%% in
    sbatch's file name pattern): the job runs, its output file lands in the run's folder and
    the outputs in the project's."""
    d = tmp_path / "my proj 100%"
    d.mkdir()
    slurm_project(d, torch_image)
    r = dlt("train", "--slurm", "--nodes", "2", cwd=d, env=slurm_lab, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[node 1 rank 1] rank 1 of world 2" in r.stdout
    w = [json.loads((d / "outputs" / f"weights-rank{i}.json").read_text()) for i in (0, 1)]
    assert w[0]["weights"] == w[1]["weights"]
    record = only_record(d)
    job, folder = record["slurm"]["job_id"], d / "runs" / record["run_id"]
    assert record["slurm"]["output"] == str(folder / f"slurm-{job}.out")
    assert "rank 0 of world 2" in (folder / f"slurm-{job}.out").read_text()
    assert (folder / f"exit-{job}").read_text().strip() == "0"
    assert f'#SBATCH --output="{str(folder).replace("%", "%%")}/slurm-%j.out"' in \
        record["slurm"]["script"]


ENV_PROBE = """\
import hashlib, json, os, pathlib, time
rank = os.environ["RANK"]
seen = {k: hashlib.sha256(os.environ.get(k, "").encode()).hexdigest()
        for k in ("HF_TOKEN", "DATABASE_URL")}
pathlib.Path(f"seen-{rank}.json").write_text(json.dumps(seen))
print(f"rank {rank} saw its variables", flush=True)
deadline = time.monotonic() + 120   # until the test has looked at ps
while not pathlib.Path("release").exists() and time.monotonic() < deadline:
    time.sleep(0.2)
"""
TOKEN, PASSWORD = "hf_secretvalue6f1d", "pw-9c2e7a"
SECRETS = {"HF_TOKEN": TOKEN, "DATABASE_URL": f"postgres://u:{PASSWORD}@db/x"}


@pytest.mark.parametrize("runtime", ["docker", "pyxis"])
def test_no_secret_on_a_command_line_in_a_readable_file_or_in_the_dry_run(
        torch_image: str, project: Path, slurm_lab: dict[str, str], runtime: str,
        request: pytest.FixtureRequest) -> None:
    """HF_TOKEN and a URL with a password in .env, a job on two nodes (docker: the values
    through `docker run --env-file`; pyxis: sourced by the batch script, handed on by srun,
    in the squashfs the module's first pyxis job made): while the job
    runs, `ps -ww -eo args` (what every user of a node sees, whole lines) never shows a
    value; job.sbatch and node.sh hold none; the values are in runs/<id>/container.env, 0600
    in a 0700 folder, and every file of the run holding one is the user's alone; the
    containers still get them (they write their hashes); `train --slurm --dry-run` prints
    none."""
    import hashlib

    (project / "probe.py").write_text(ENV_PROBE)
    extra = ""
    if runtime == "pyxis":
        (made,) = request.getfixturevalue("pyxis_first").images.glob("*.sqsh")
        extra = f"DLT_SLURM_RUNTIME=pyxis\nDLT_SLURM_IMAGE={made}\n"
    (project / ".env").write_text(f"DLT_IMAGE={torch_image}\nDLT_TRAIN_CMD=python3 probe.py\n"
                                  + extra + "".join(f"{k}={v}\n" for k, v in SECRETS.items()))
    dry = dlt("train", "--slurm", "--nodes", "2", "--dry-run", cwd=project, env=slurm_lab)
    assert dry.returncode == 0, dry.stderr
    assert "HF_TOKEN=****" in dry.stdout and "DATABASE_URL=****" in dry.stdout, dry.stdout
    for text in (dry.stdout, dry.stderr):
        assert TOKEN not in text and PASSWORD not in text
    snapshots: list[str] = []
    with dlt_running(["train", "--slurm", "--nodes", "2"], project, slurm_lab) as p:
        deadline = time.monotonic() + 180
        while len(list(project.glob("seen-*.json"))) < 2 and time.monotonic() < deadline:
            assert p.poll() is None, p.communicate()
            snapshots.append(subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True,
                                            text=True, check=True).stdout)
            time.sleep(0.2)
        for _ in range(5):  # both containers are up: their docker run lines are there now
            snapshots.append(subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True,
                                            text=True, check=True).stdout)
        (project / "release").touch()
        out, err = p.communicate(timeout=120)
    assert p.returncode == 0, out + err
    mark = "docker run" if runtime == "docker" else "--container-image="
    running = [s for s in snapshots if mark in s]
    assert running, f"ps never showed the job's {mark} lines"
    for snap in snapshots:
        assert TOKEN not in snap and PASSWORD not in snap
    for text in (out, err):
        assert TOKEN not in text and PASSWORD not in text
    want = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in SECRETS.items()}
    assert [json.loads((project / f"seen-{i}.json").read_text()) for i in (0, 1)] == [want] * 2
    record = only_record(project)
    folder = project / "runs" / record["run_id"]
    assert folder.stat().st_mode & 0o777 == 0o700
    scripts = ["job.sbatch", "node.sh"] if runtime == "docker" else ["job.sbatch"]
    for name in [*scripts, "container.env"]:
        assert (folder / name).stat().st_mode & 0o777 == 0o600, name
    for name in scripts:
        text = (folder / name).read_text()
        assert TOKEN not in text and PASSWORD not in text and "HF_TOKEN" not in text
    env = (folder / "container.env").read_text()
    assert TOKEN in env and SECRETS["DATABASE_URL"] in env
    for f in folder.rglob("*"):   # a file another user could read (were the folder open)
        if f.is_file() and f.stat().st_mode & 0o044:
            text = f.read_text(errors="replace")
            assert TOKEN not in text and PASSWORD not in text, f
