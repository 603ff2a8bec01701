"""The spec a run starts: final_spec, one pure step from a plan and what its host told us,
for a single run (as the invoking user and as root), a node of a job, and a Slurm node."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dltasks.engine.spec import LABEL_GPUS, LABEL_NODE, LABEL_NODES, LABEL_USER
from dltasks.errors import DltError
from dltasks.gpu.modes import RUNTIME, GpuAccess
from dltasks.gpu.selection import NONE, GpuSelection
from dltasks.runs.plan import RunPlan, RunRequest, TargetFacts, plan_run
from dltasks.runs.start import NodeRole, StartFacts, final_spec
from dltasks.settings import resolve

RUN_ID, STARTED = "20261126-141502-a3f9", "2026-11-26T14:15:02+00:00"
GOT = GpuAccess(GpuSelection("ids", ("1", "3")), RUNTIME)   # what free:2 became on the host
NO_GPUS = GpuAccess(GpuSelection(NONE))
SHELL = {"NCCL_DEBUG": "INFO", "NCCL_IB_DISABLE": "1"}      # the user's shell: passed in


def make_plan(project: Path, req: RunRequest, *, dotenv: str = "", host: str = "local",
              image: str = "proj:latest") -> RunPlan:
    (project / "main.py").write_text("print('hi')\n")
    (project / ".env").write_text(dotenv)
    s = resolve(project, environ={})
    return plan_run(s, s, TargetFacts(host, str(project), "1234:5678"), req, run_id=RUN_ID,
                    started=STARTED, image=image)


def train(**kw: object) -> RunRequest:
    return RunRequest("train", "python main.py", gpus=GpuSelection("free", count=2), **kw)  # type: ignore[arg-type]


def test_a_single_run_gets_its_gpus_label_and_login(project: Path) -> None:
    plan = make_plan(project, train())
    before = plan.spec
    spec = final_spec(plan, StartFacts(uid_gid="1000:1001", user="alice", access=GOT,
                                       shell_env=SHELL))
    assert spec.labels[LABEL_GPUS] == "1,3"             # the GPUs it got, never free:2
    assert spec.gpus == GOT.selection and spec.gpu_mode == RUNTIME
    assert spec.labels[LABEL_USER] == "alice"
    assert spec.user == "1000:1001"                     # the login's, learned on the host
    assert (spec.env["USER"], spec.env["LOGNAME"]) == ("alice", "alice")
    assert spec.env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert spec.command == ("python", "main.py")        # no --nproc: no launcher
    assert "NCCL_DEBUG" not in spec.env                 # the shell's only reach torchrun runs
    assert spec.network == "" and LABEL_NODE not in spec.labels
    assert plan.spec is before and LABEL_GPUS not in plan.spec.labels   # the plan is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.spec = spec  # type: ignore[misc]


def test_a_single_run_as_root_names_no_user_inside(project: Path) -> None:
    plan = make_plan(project, train(root=True))
    spec = final_spec(plan, StartFacts(uid_gid="1000:1001", user="alice", access=GOT))
    assert spec.user is None
    assert "USER" not in spec.env and "LOGNAME" not in spec.env
    assert spec.labels[LABEL_USER] == "alice"           # whose run it is, for claims and ps
    assert spec.labels[LABEL_GPUS] == "1,3"


def test_a_dry_run_keeps_the_planned_user_and_names_nobody(project: Path) -> None:
    spec = final_spec(make_plan(project, train()), StartFacts(access=GOT))
    assert spec.user == "1234:5678"                     # the plan's (this machine's uid:gid)
    assert LABEL_USER not in spec.labels and "USER" not in spec.env


def test_a_single_run_under_torchrun(project: Path) -> None:
    plan = make_plan(project, train(nproc="gpu"), dotenv="NCCL_DEBUG=WARN\n")
    spec = final_spec(plan, StartFacts(uid_gid="1000:1001", user="alice", access=GOT, cpus=16,
                                       shell_env=SHELL))
    assert spec.command == ("torchrun", "--standalone", "--nnodes=1", "--local-addr=127.0.0.1",
                            "--nproc-per-node=2", "--max-restarts=0", "--tee=3", "--no-python",
                            "python", "main.py")
    assert spec.env["OMP_NUM_THREADS"] == "8"           # 16 CPUs, 2 workers
    assert spec.env["NCCL_IB_DISABLE"] == "1"           # the shell's, passed in
    assert spec.env["NCCL_DEBUG"] == "WARN"             # the project's .env wins over the shell


def test_nproc_gpu_without_gpus_is_one_line_naming_the_host(project: Path) -> None:
    plan = make_plan(project, train(nproc="gpu"), host="gpu1")
    with pytest.raises(DltError) as e:
        final_spec(plan, StartFacts(access=NO_GPUS))
    assert str(e.value).startswith("--nproc gpu on gpu1: the run has no GPUs to count")


def test_node_1_of_a_two_node_job(project: Path) -> None:
    plan = make_plan(project, train(), host="gpu2", dotenv="GLOO_SOCKET_IFNAME=eth9\n")
    role = NodeRole(1, ("gpu1", "gpu2"), "10.0.0.1", 29400, iface="eth0")
    spec = final_spec(plan, StartFacts(uid_gid="1000:1001", user="alice", access=GOT, cpus=8,
                                       image="sha256:abc", shell_env=SHELL, node=role))
    assert spec.image == "sha256:abc"                   # the image ID proven on every node
    assert spec.network == "host"
    assert spec.labels[LABEL_NODE] == "1" and spec.labels[LABEL_NODES] == "gpu1,gpu2"
    assert spec.labels[LABEL_GPUS] == "1,3" and spec.labels[LABEL_USER] == "alice"
    assert spec.env["NCCL_SOCKET_IFNAME"] == "eth0"     # its interface toward node 0
    assert spec.env["GLOO_SOCKET_IFNAME"] == "eth9"     # unless the user named one
    assert spec.env["NCCL_DEBUG"] == "INFO" and spec.env["OMP_NUM_THREADS"] == "4"
    assert (spec.user, spec.env["USER"]) == ("1000:1001", "alice")
    assert spec.command == ("torchrun", "--nnodes=2", "--node-rank=1", "--master-addr=10.0.0.1",
                            "--master-port=29400", "--nproc-per-node=2", "--max-restarts=0",
                            "--tee=3", "--no-python", "python", "main.py")


def test_a_job_node_without_gpus_runs_one_process_and_c10d_names_the_job(project: Path) -> None:
    plan = make_plan(project, train(root=True), host="gpu1")
    role = NodeRole(0, ("gpu1", "gpu2"), "10.0.0.1", 29400, rendezvous="c10d")
    spec = final_spec(plan, StartFacts(uid_gid="1000:1001", user="alice", access=NO_GPUS,
                                       node=role))
    assert spec.command[:5] == ("torchrun", "--nnodes=2", "--rdzv-backend=c10d",
                                "--rdzv-endpoint=10.0.0.1:29400", f"--rdzv-id={RUN_ID}")
    assert "--nproc-per-node=1" in spec.command
    assert spec.labels[LABEL_GPUS] == "none"
    # --root: the container runs as root, so it names no other user inside (as a single run)
    assert spec.user is None and "USER" not in spec.env and "LOGNAME" not in spec.env
    assert "NCCL_SOCKET_IFNAME" not in spec.env        # no interface known: torch's choice


def test_a_slurm_node_runs_as_the_login_with_slurms_gpus(project: Path) -> None:
    plan = make_plan(project, train(nproc="2"))
    spec = final_spec(plan, StartFacts(uid_gid="1000:1001", user="alice", slurm=True))
    assert spec.user == "1000:1001"
    assert LABEL_GPUS not in spec.labels                # the node script labels Slurm's grant
    assert spec.command == ("python", "main.py")        # the batch script starts torchrun
    assert "USER" not in spec.env and LABEL_USER not in spec.labels
    assert spec.network == "" and spec.gpus == plan.spec.gpus
    root = final_spec(make_plan(project, train(root=True)), StartFacts(uid_gid="1000:1001",
                                                                         slurm=True))
    assert root.user is None
