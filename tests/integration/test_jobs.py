"""One job across hosts (`fab -H gpu1,gpu2 train --nnodes 2`) and several processes on one host
(`train --nproc 2`): real torchrun, real DDP on gloo in the real torch CPU image, real sshd
hosts on loopback (tests/sshd_harness.py), the real engine.

The two lab hosts are one machine with one engine, so the nodes' host-network containers meet
on 127.0.0.1, with static rendezvous (c10d could not tell two host-network containers of one
machine apart: same host name, same PID 1).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import dlt

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DDP = Path(__file__).resolve().parent.parent / "data" / "ddp" / "train_ddp.py"


def job_project(d: Path, image: str, extra: str = "") -> Path:
    shutil.copy(DDP, d / "train_ddp.py")
    with (d / ".env").open("a") as f:
        f.write(f"DLT_IMAGE={image}\nDLT_GPUS=none\nDLT_TRAIN_CMD=python3 train_ddp.py\n"
                f"DLT_OUTPUT_DIR=outputs\nDLT_STOP_TIMEOUT=2\n{extra}")
    return d


def job_containers(engine: Any) -> list[Any]:
    found: list[Any] = engine.containers.list(
            ignore_removed=True, all=True, filters={"label": "dltasks.node"})
    return found


def remote_outputs(lab: Any, host: str, name: str) -> Path:
    return Path(lab.hosts[host].home) / "dltasks" / name / "outputs"


@pytest.mark.ssh
def test_two_node_ddp_job_trains_as_one_run(torch_image: str, engine: Any, ssh_lab: Any,
                                            remote_project: tuple[Path, str]) -> None:
    from tests.sshd_harness import fab

    d, name = remote_project
    job_project(d, torch_image)
    r = fab("-H", "gpu1,gpu2", "train", "--nnodes", "2", cwd=d, env=ssh_lab.env(), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "[gpu1 rank 0] rank 0 of world 2" in out and "[gpu2 rank 1] rank 1 of world 2" in out
    w0 = json.loads((remote_outputs(ssh_lab, "gpu1", name) / "weights-rank0.json").read_text())
    w1 = json.loads((remote_outputs(ssh_lab, "gpu2", name) / "weights-rank1.json").read_text())
    assert w0["world"] == w1["world"] == 2
    assert w0["weights"] == w1["weights"]          # the gradients were all-reduced
    assert (remote_outputs(ssh_lab, "gpu1", name) / "checkpoint.pt").is_file()   # node 0's
    assert not (remote_outputs(ssh_lab, "gpu2", name) / "checkpoint.pt").exists()
    (record,) = [json.loads(p.read_text()) for p in (d / "runs").glob("*/manifest.json")]
    assert record["exit_code"] == 0 and record["host"] == "gpu1,gpu2"
    assert [n["host"] for n in record["nodes"]] == ["gpu1", "gpu2"]
    assert record["nodes"][0]["image_id"] == record["nodes"][1]["image_id"]
    assert record["nodes"][0]["image_id"].startswith("sha256:")
    assert record["job"]["master_addr"] == "127.0.0.1" and record["job"]["master_port"] >= 29500
    run_line = record["nodes"][1]["docker_run"]
    assert "--network=host" in run_line and "--node-rank=1" in run_line
    assert "--max-restarts=0" in run_line and "GLOO_SOCKET_IFNAME=lo" in run_line
    assert job_containers(engine) == []


@pytest.mark.ssh
@pytest.mark.parametrize("how", ["kill-node-1", "ctrl-c"])
def test_a_failed_node_or_ctrl_c_stops_the_whole_job(
        torch_image: str, engine: Any, ssh_lab: Any, remote_project: tuple[Path, str],
        how: str) -> None:
    d, _ = remote_project
    job_project(d, torch_image, "DDP_SLEEP=300\n")
    (d / "fabfile.py").write_text("from dltasks.tasks import ns  # noqa: F401\n")
    code = "import sys; from fabric.main import program; sys.argv[0] = 'fab'; program.run()"
    p = subprocess.Popen([sys.executable, "-c", code, "-H", "gpu1,gpu2", "train", "--nnodes",
                          "2"], cwd=d, env=ssh_lab.env(), text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None
        waiting = set()
        deadline = time.monotonic() + 180
        while len(waiting) < 2 and time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            if "waiting" in line:
                waiting.add(line.split("]")[0])
        assert len(waiting) == 2, p.stderr.read() if p.poll() is not None else waiting
        t0 = time.monotonic()
        if how == "kill-node-1":
            (node1,) = [c for c in job_containers(engine) if c.labels["dltasks.node"] == "1"]
            node1.kill()
        else:
            p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode != 0
    assert took < 20, took
    assert job_containers(engine) == []
    (record,) = [json.loads(f.read_text()) for f in (d / "runs").glob("*/manifest.json")]
    if how == "kill-node-1":
        assert "dlt: node 1 (gpu2) exited with code 137: stopping the other node(s)" in err
        assert record["failed_first"] == {"rank": 1, "host": "gpu2",
                                          "why": "exited with code 137"}
        assert record["exit_code"] == 137 == p.returncode
    else:
        assert "interrupted, stopping the job on every node" in err
        assert record["status"] == "interrupted" and p.returncode == 130


@pytest.mark.ssh
def test_job_errors_before_anything_starts(torch_image: str, engine: Any, ssh_lab: Any,
                                           remote_project: tuple[Path, str]) -> None:
    from tests.sshd_harness import fab

    d, _ = remote_project
    job_project(d, torch_image)
    r = fab("-H", "gpu1,gpu2", "train", "--nnodes", "3", cwd=d, env=ssh_lab.env())
    assert r.returncode == 1
    assert r.stderr.strip() == ("dlt: error: --nnodes 3 but 2 host(s) in -H: give one host per "
                                "node (fab -H gpu1,gpu2 train --nnodes 2)")
    import socket

    with socket.socket() as s:  # a port taken on node 0 (the lab's hosts are this machine)
        s.bind(("0.0.0.0", 0))
        s.listen(1)
        port = s.getsockname()[1]
        (d / ".env.gpu1").write_text(f"DLT_MASTER_PORT={port}\n")
        r = fab("-H", "gpu1,gpu2", "train", "--nnodes", "2", cwd=d, env=ssh_lab.env())
    assert r.returncode == 1
    assert f"DLT_MASTER_PORT={port} is taken on gpu1" in r.stderr
    (d / ".env.gpu1").unlink()
    (d / ".env").write_text((d / ".env").read_text() + "DLT_IMAGE=dlt-no-such-image:1\n")
    r = fab("-H", "gpu1,gpu2", "train", "--nnodes", "2", cwd=d, env=ssh_lab.env())
    assert r.returncode == 1
    assert "image dlt-no-such-image:1 is on none of the job's hosts (gpu1, gpu2)" in r.stderr
    assert job_containers(engine) == [] and not (d / "runs").exists()


def test_nproc_2_on_one_host_trains_with_torchrun(torch_image: str, project: Path,
                                                  engine: Any) -> None:
    job_project(project, torch_image, "DLT_OUTPUT_DIR=\n")
    (project / "out").mkdir()
    (project / ".env").write_text((project / ".env").read_text() + "OUT_DIR=/workspace/out\n")
    r = dlt("train", "--nproc", "2", cwd=project, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[default0]:rank 0 of world 2" in r.stdout
    assert "[default1]:rank 1 of world 2" in r.stdout
    w = [json.loads((project / "out" / f"weights-rank{i}.json").read_text()) for i in (0, 1)]
    assert w[0]["weights"] == w[1]["weights"]
    record = json.loads(next((project / "runs").glob("*/manifest.json")).read_text())
    assert record["command"][:3] == ["torchrun", "--standalone", "--nnodes=1"]
    assert "--nproc-per-node=2" in record["command"]
    # a command that already starts with torchrun is not wrapped twice
    r = dlt("train", "--nproc", "2", "--dry-run", cwd=project,
            env={"DLT_TRAIN_CMD": "torchrun --nproc-per-node=2 train_ddp.py"})
    line = r.stdout.splitlines()[0]
    assert line.count("torchrun") == 1 and "--no-python" not in line


@pytest.mark.ssh
def test_a_detached_job_is_followed_listed_and_stopped_as_a_whole(
        torch_image: str, engine: Any, ssh_lab: Any, remote_project: tuple[Path, str]) -> None:
    from tests.sshd_harness import fab

    d, _ = remote_project
    job_project(d, torch_image, "DDP_SLEEP=300\n")
    r = fab("-H", "gpu1,gpu2", "train", "--nnodes", "2", "--detach", cwd=d, env=ssh_lab.env())
    assert r.returncode == 0, r.stdout + r.stderr
    job = r.stdout.split()[0]
    assert sorted(c.labels["dltasks.node"] for c in job_containers(engine)) == ["0", "1"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r = fab("-H", "gpu2", "logs", job, "--node", "1", cwd=d, env=ssh_lab.env())
        if "rank 1 waiting" in r.stdout:
            break
        time.sleep(1)
    assert "rank 1 of world 2" in r.stdout and "rank 1 waiting" in r.stdout, r.stderr
    r = fab("-H", "gpu1", "logs", job, cwd=d, env=ssh_lab.env())
    assert r.returncode == 1 and "pick one with --node K" in r.stderr   # one engine, 2 nodes
    r = fab("-H", "gpu1", "ps", cwd=d, env=ssh_lab.env())
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith(job)]
    assert sorted(ln.split()[2] for ln in rows) == ["0/2", "1/2"]
    r = fab("-H", "gpu1", "stop", job, cwd=d, env=ssh_lab.env())
    assert r.returncode == 0, r.stderr
    assert f"stopped job {job}: 2 node container(s) on gpu1, gpu2" in r.stdout
    assert job_containers(engine) == []
    record = json.loads((d / "runs" / job / "manifest.json").read_text())
    assert record["status"] == "stopped" and len(record["nodes"]) == 2


@pytest.fixture
def far_engine(engine: Any, base_image: str) -> Any:
    """A second engine, in a network namespace of its own joined to this one by a veth pair
    (169.254.201.1 here, .2 there): gpu2's engine for the image-copy test. It has the base
    image only."""
    import uuid

    from tests.gpu_engine import gpu_engine_for

    stack = contextlib.ExitStack()
    eng = stack.enter_context(gpu_engine_for(engine, base_image, shared=True))
    tag = uuid.uuid4().hex[:4]
    here, there = f"dlta{tag}", f"dltb{tag}"
    assert eng.proc is not None
    pid = str(eng.proc.pid)

    def ip(*args: str, inside: bool = False) -> None:
        argv = (["nsenter", "-t", pid, "-n"] if inside else []) + ["ip", *args]
        subprocess.run(argv, check=True, capture_output=True)

    try:
        ip("link", "add", here, "type", "veth", "peer", "name", there)
        ip("link", "set", there, "netns", pid)
        ip("addr", "add", "169.254.201.1/30", "dev", here)
        ip("link", "set", here, "up")
        ip("addr", "add", "169.254.201.2/30", "dev", there, inside=True)
        ip("link", "set", there, "up", inside=True)
        ip("link", "set", "lo", "up", inside=True)
        yield eng, here, there
    finally:
        subprocess.run(["ip", "link", "del", here], capture_output=True)
        stack.close()


@pytest.mark.ssh
def test_a_host_without_the_image_gets_it_copied_and_the_job_runs(
        torch_image: str, engine: Any, ssh_lab: Any, remote_project: tuple[Path, str],
        far_engine: Any) -> None:
    from tests.sshd_harness import fab

    eng, here, there = far_engine
    d, name = remote_project
    job_project(d, torch_image)
    (d / ".env.gpu1").write_text(f"DLT_MASTER_ADDR=169.254.201.1\nGLOO_SOCKET_IFNAME={here}\n")
    (d / ".env.gpu2").write_text(f"DLT_DOCKER_HOST={eng.url}\nGLOO_SOCKET_IFNAME={there}\n")
    with pytest.raises(Exception, match="No such image|not found"):
        eng.client.images.get(torch_image)
    r = fab("-H", "gpu1,gpu2", "train", "--nnodes", "2", cwd=d, env=ssh_lab.env(), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"dlt: {torch_image} is not on gpu2: copying it from gpu1" in r.stderr
    assert f"dlt: copied {torch_image} to gpu2: " in r.stderr
    assert eng.client.images.get(torch_image).id == engine.images.get(torch_image).id
    w0 = json.loads((remote_outputs(ssh_lab, "gpu1", name) / "weights-rank0.json").read_text())
    w1 = json.loads((remote_outputs(ssh_lab, "gpu2", name) / "weights-rank1.json").read_text())
    assert w0["weights"] == w1["weights"] and w0["world"] == 2
    (record,) = [json.loads(p.read_text()) for p in (d / "runs").glob("*/manifest.json")]
    assert record["nodes"][0]["image_id"] == record["nodes"][1]["image_id"]


def test_gpus_and_nproc_gpu_on_one_host(torch_image: str, hook_torch_engine: Any,
                                        project: Path) -> None:
    """`--gpu 0,1 --nproc gpu` on the engine with the stand-in NVIDIA hook: the engine gets
    the device request for GPUs 0 and 1, torchrun starts one process per GPU, DDP (gloo, on
    CPU) trains."""
    eng = hook_torch_engine
    job_project(project, torch_image, f"DLT_OUTPUT_DIR=\nOUT_DIR=/workspace\n"
                                      f"DLT_DOCKER_HOST={eng.url}\n")
    r = dlt("train", "--gpu", "0,1", "--nproc", "gpu", cwd=project, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[default1]:rank 1 of world 2" in r.stdout
    w = [json.loads((project / f"weights-rank{i}.json").read_text()) for i in (0, 1)]
    assert w[0]["weights"] == w[1]["weights"]
    record = json.loads(next((project / "runs").glob("*/manifest.json")).read_text())
    assert record["gpus"] == "0,1" and "--nproc-per-node=2" in record["command"]
    assert '--gpus "device=0,1"' in record["docker_run"]
    (call,) = eng.hook_calls(record["run_id"])
    assert call["env"]["NVIDIA_VISIBLE_DEVICES"] == "0,1"


@pytest.mark.ssh
def test_an_unreachable_host_stops_the_job_before_it_starts(
        torch_image: str, engine: Any, ssh_lab: Any, remote_project: tuple[Path, str]) -> None:
    from tests.sshd_harness import fab

    d, _ = remote_project
    job_project(d, torch_image)
    r = fab("-H", "gpu1,dltgpu2@127.0.0.3:1", "train", "--nnodes", "2", cwd=d,
            env=ssh_lab.env())
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dlt: error: cannot reach 127.0.0.3"), lines
    assert job_containers(engine) == [] and not (d / "runs").exists()


@pytest.mark.ssh
def test_a_lost_host_stops_the_other_nodes(torch_image: str, engine: Any, ssh_lab: Any,
                                           remote_project: tuple[Path, str]) -> None:
    d, _ = remote_project
    job_project(d, torch_image, "DDP_SLEEP=300\n")
    (d / "fabfile.py").write_text("from dltasks.tasks import ns  # noqa: F401\n")
    before = set(ssh_lab.sshd_children("gpu2"))
    code = "import sys; from fabric.main import program; sys.argv[0] = 'fab'; program.run()"
    p = subprocess.Popen([sys.executable, "-c", code, "-H", "gpu1,gpu2", "train", "--nnodes",
                          "2"], cwd=d, env={**ssh_lab.env(), "NCCL_DEBUG": "INFO"}, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None
        waiting = 0
        while waiting < 2:
            line = p.stdout.readline()
            assert line, p.stderr.read() if p.stderr else ""
            waiting += "waiting" in line
        ssh_lab.drop_connections("gpu2", before)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 255, err
    assert "dlt: node 1 (gpu2) lost" in err and "fab -H gpu2 stop" in err
    left = job_containers(engine)
    assert [c.labels["dltasks.node"] for c in left] == ["1"]   # out of reach: left running
    (record,) = [json.loads(f.read_text()) for f in (d / "runs").glob("*/manifest.json")]
    assert record["failed_first"]["host"] == "gpu2" and "lost" in record["failed_first"]["why"]
    assert "NCCL_DEBUG=INFO" in record["nodes"][0]["docker_run"]   # NCCL_* pass through
    for c in left:
        c.remove(force=True)


@pytest.mark.ssh
def test_c10d_rendezvous_and_build_mode(torch_image: str, engine: Any, ssh_lab: Any,
                                        remote_project: tuple[Path, str]) -> None:
    """DLT_RENDEZVOUS=c10d gives every node the job id as --rdzv-id (shown by --dry-run: on
    this lab's one machine c10d cannot tell the nodes apart); DLT_JOB_IMAGE=build builds the
    project image on each host instead of copying node 0's, and the job runs."""
    from tests.sshd_harness import fab

    d, _ = remote_project
    job_project(d, torch_image, "DLT_RENDEZVOUS=c10d\n")
    r = fab("-H", "gpu1,gpu2", "train", "--nnodes", "2", "--dry-run", cwd=d, env=ssh_lab.env())
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("docker run")]
    assert len(lines) == 2
    for ln in lines:
        assert "--rdzv-backend=c10d" in ln and "--rdzv-id=" in ln and "--node-rank" not in ln
    text = (d / ".env").read_text().replace(f"DLT_IMAGE={torch_image}\n", "")
    name = f"dlt-jobbuild-{time.monotonic_ns()}"  # its own image name, removed afterwards
    (d / ".env").write_text(text.replace("DLT_RENDEZVOUS=c10d\n", "") +
                            f"DLT_BASE_IMAGE={torch_image}\nDLT_JOB_IMAGE=build\n"
                            f"DLT_PROJECT={name}\n")
    try:
        r = fab("-H", "gpu1,gpu2", "train", "--nnodes", "2", cwd=d, env=ssh_lab.env(),
                timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "copying" not in r.stderr
        (record,) = [json.loads(p.read_text()) for p in (d / "runs").glob("*/manifest.json")]
        assert record["image"].startswith(f"{name}:")
        assert all(n["image_id"].startswith("sha256:") for n in record["nodes"])
    finally:
        for image in engine.images.list(name=name):
            engine.images.remove(image.id, force=True)


def _of_run(client: Any, run_id: str) -> list[Any]:
    found: list[Any] = client.containers.list(ignore_removed=True, all=True,
                                               filters={"label": f"dltasks.run={run_id}"})
    return found


@pytest.mark.ssh
@pytest.mark.parametrize("detach", [True, False], ids=["detached", "attached"])
def test_a_job_whose_second_node_cannot_start_leaves_nothing(
        torch_image: str, hook_torch_engine: Any, ssh_lab: Any,
        remote_project: tuple[Path, str], detach: bool) -> None:
    """`--gpu 0` over gpu1,gpu2, whose engine is one: node 0 starts holding GPU 0, so node
    1's claim of GPU 0 is refused. Node 0 is stopped and removed: nothing runs, nothing holds
    a GPU, and the record says the job failed to start."""
    from tests.gpu_fixtures import make_fake_smi
    from tests.sshd_harness import fab

    eng = hook_torch_engine
    d, _ = remote_project
    smi = make_fake_smi(Path(f"/tmp/dlt-fake-smi-job-{time.monotonic_ns()}"), gpus=2)
    try:
        job_project(d, torch_image, f"DDP_SLEEP=300\nDLT_DOCKER_HOST={eng.url}\n")
        for host in ("gpu1", "gpu2"):
            (d / f".env.{host}").write_text(f"DLT_NVIDIA_SMI={smi}/nvidia-smi\n")
        r = fab("-H", "gpu1,gpu2", "train", "--nnodes", "2", "--gpu", "0",
                *(["--detach"] if detach else []), cwd=d, env=ssh_lab.env(), timeout=300)
    finally:
        subprocess.run(["rm", "-rf", str(smi)], check=False)
    assert r.returncode != 0, r.stdout + r.stderr
    (record,) = [json.loads(p.read_text()) for p in (d / "runs").glob("*/manifest.json")]
    assert (f"dlt: error: --gpu 0 on gpu2: GPU 0 is held by run {record['run_id']} (dltgpu1"
            in r.stderr), r.stderr                   # by node 0, as it should be
    assert record["status"] == "failed to start" and record["ended"]
    assert record["nodes"][0]["container_id"]        # node 0 had started: it was undone
    assert _of_run(eng.client, record["run_id"]) == []
    assert [c for c in eng.client.containers.list(
            ignore_removed=True, all=True, filters={"label": "dltasks.gpus"})
            if c.labels.get("dltasks.run") == record["run_id"]] == []


@pytest.mark.ssh
def test_a_job_without_dlt_image_runs_the_proven_image_on_every_node(
        torch_image: str, base_image: str, engine: Any, ssh_lab: Any,
        remote_project: tuple[Path, str], far_engine: Any) -> None:
    """No DLT_IMAGE: node 0's project image (`<project>:<hash>`) is built on gpu1 and copied
    to gpu2's engine, whose `<project>:latest` is stale (the base image, no torch). Every
    node's container is made from the proven image ID, and the record says that ID."""
    from tests.sshd_harness import fab

    eng, here, there = far_engine
    d, _ = remote_project
    job_project(d, torch_image, "DDP_SLEEP=300\n")
    name = f"dlt-jobproof-{time.monotonic_ns()}"  # its own image name, removed afterwards
    text = (d / ".env").read_text().replace(f"DLT_IMAGE={torch_image}\n", "")
    (d / ".env").write_text(text + f"DLT_BASE_IMAGE={torch_image}\nDLT_PROJECT={name}\n")
    (d / ".env.gpu1").write_text(f"DLT_MASTER_ADDR=169.254.201.1\nGLOO_SOCKET_IFNAME={here}\n")
    (d / ".env.gpu2").write_text(f"DLT_DOCKER_HOST={eng.url}\nGLOO_SOCKET_IFNAME={there}\n")
    stale = eng.client.images.get(base_image)
    stale.tag(name, "latest")
    try:
        r = fab("-H", "gpu1,gpu2", "train", "--nnodes", "2", "--detach", cwd=d,
                env=ssh_lab.env(), timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        (record,) = [json.loads(p.read_text()) for p in (d / "runs").glob("*/manifest.json")]
        job = record["run_id"]
        assert r.stdout.splitlines()[-1] == job
        assert record["image"].startswith(f"{name}:") and record["image"] != f"{name}:latest"
        proven = engine.images.get(record["image"]).id
        assert record["image_id"] == proven != stale.id
        assert [n["image_id"] for n in record["nodes"]] == [proven, proven]
        assert eng.client.images.get(f"{name}:latest").id == stale.id   # left as it was
        (node0,) = _of_run(engine, job)
        (node1,) = _of_run(eng.client, job)
        assert (node0.labels["dltasks.node"], node1.labels["dltasks.node"]) == ("0", "1")
        assert node0.attrs["Image"] == node1.attrs["Image"] == proven
        r = fab("-H", "gpu1", "stop", job, cwd=d, env=ssh_lab.env())
        assert r.returncode == 0, r.stderr
        assert _of_run(engine, job) == [] and _of_run(eng.client, job) == []
    finally:
        for c in engine.containers.list(
                ignore_removed=True, all=True, filters={"label": f"dltasks.project={name}"}):
            c.remove(force=True)
        for image in engine.images.list(name=name):
            engine.images.remove(image.id, force=True)
