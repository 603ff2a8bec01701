"""RunRecord: the one reader and writer of ``runs/<id>/manifest.json``.

Old records (tests/data/records/, written by the code before RunRecord, see its README) read
and write back unchanged; unknown keys are kept; every status round-trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from dltasks.runs.record import (
    STATUSES,
    ConfigEdit,
    FailedFirst,
    GitState,
    JobInfo,
    NodePart,
    PathRow,
    RunRecord,
    RunStatus,
    SlurmInfo,
    list_runs,
    log_file,
    record_file,
    run_dir,
    status_of,
)

OLD = sorted((Path(__file__).parent.parent / "data" / "records").glob("*.json"))
RID = "20261207-045935-fd8f"


def test_there_are_old_records_of_every_kind() -> None:
    names = [p.name for p in OLD]
    for kind in ("single-", "job-", "slurm-"):
        assert sum(n.startswith(kind) for n in names) >= 4, kind


@pytest.mark.parametrize("path", OLD, ids=[p.stem for p in OLD])
def test_an_old_record_reads_and_writes_back_unchanged(path: Path, tmp_path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    rec = RunRecord.from_json(data)
    assert rec.run_id == data["run_id"] and rec.host == data["host"]
    assert rec.exit_code == data["exit_code"] and rec.status == data.get("status")
    assert rec.command == tuple(data["command"]) and rec.git.commit == data["git"]["commit"]
    assert rec.extra == {}                      # every key today's code writes is a field
    assert rec.to_json() == data
    folder = tmp_path / data["run_id"]
    folder.mkdir()
    rec.save(folder, [])
    assert json.loads(record_file(folder).read_text(encoding="utf-8")) == data
    assert RunRecord.load(folder) == rec


def test_old_records_give_typed_parts() -> None:
    by = {p.stem: RunRecord.from_json(json.loads(p.read_text())) for p in OLD}
    job = by["job-exited-failedfirst"]
    assert isinstance(job.job, JobInfo) and job.job.nnodes == 2
    assert job.nodes is not None and [n.rank for n in job.nodes] == [0, 1]
    assert isinstance(job.nodes[1], NodePart) and job.nodes[1].exit_code == 137
    assert isinstance(job.failed_first, FailedFirst) and job.slurm is None
    slurm = by["slurm-completed-imagefile"]
    assert isinstance(slurm.slurm, SlurmInfo) and slurm.slurm.job_id.isdigit()
    assert slurm.slurm.state == "COMPLETED" and slurm.slurm.nodelist == "n[1-2]"
    one = by["single-exited"]
    assert one.path_map and isinstance(one.path_map[0], PathRow)
    assert one.path_map[0].root == "code" and one.job is None and one.nodes is None
    assert by["single-running-shared"].gpus_shared
    assert by["single-no-status"].status is None and by["single-no-status"].ended is None


def test_missing_keys_default_and_unknown_keys_are_kept(tmp_path: Path) -> None:
    rec = RunRecord.from_json({"run_id": RID, "note": {"by": "me"}, "future": [1, 2]})
    assert rec.kind == "" and rec.command == () and rec.exit_code is None
    assert rec.git == GitState(None, False, "") and rec.status is None and rec.slurm is None
    assert rec.extra == {"note": {"by": "me"}, "future": [1, 2]}
    out = rec.but(exit_code=3, status="exited").to_json()
    assert out["note"] == {"by": "me"} and out["future"] == [1, 2] and out["exit_code"] == 3
    assert out["ended"] is None and "slurm" not in out and "job" not in out
    slurm = RunRecord.from_json({"run_id": RID, "slurm": {"job_id": 42, "odd": 1}})
    assert slurm.slurm == SlurmInfo("42")
    assert "state" not in slurm.to_json()["slurm"]  # not known yet: absent, as before


@pytest.mark.parametrize("status", sorted(STATUSES))
def test_every_status_round_trips(status: str, tmp_path: Path) -> None:
    rec = RunRecord(RID, kind="train", status=status_of(status), exit_code=0)
    assert rec.status == status
    folder = run_dir(tmp_path, RID)
    folder.mkdir(parents=True)
    rec.save(folder, [])
    assert RunRecord.load(folder) == rec


def test_status_is_the_literal_and_odd_states_read_as_unknown() -> None:
    assert set(get_args(RunStatus)) == STATUSES
    assert status_of("COMPLETED") == "completed" and status_of("OUT_OF_MEMORY") == "out_of_memory"
    assert status_of("nonsense") == "unknown"
    assert RunRecord.from_json({"run_id": RID, "status": "weird"}).status == "unknown"


def test_a_full_record_round_trips_with_secrets_scrubbed(tmp_path: Path) -> None:
    secret = "hunter2-token-xyz"
    rec = RunRecord(
        RID, kind="train", host="gpu1,gpu2", image="img", image_id="sha256:1",
        image_digests=("img@sha256:2",), git=GitState("abc", True, "diff"),
        command=("python", "t.py"), gpus="0", settings={"DLT_X": {"value": "1", "source": "x"}},
        path_map=(PathRow("code", "/a", "/b", "/workspace"),),
        configs=(ConfigEdit("c.yaml", (("/a/x", "/workspace/x"),)),),
        docker_run=f"docker run -e K={secret} img", detached=True,
        job=JobInfo(2, "10.0.0.1", 29500, "static"),
        nodes=(NodePart(0, "gpu1", exit_code=None),),
        started="2026-12-07T04:59:35+00:00", status="running",
        failed_first=FailedFirst(1, "gpu2", "exited with code 1"), gpu_mode="runtime",
        gpu_mode_why="why", gpus_asked="free:1", gpus_shared=(3,), container_id="c1",
        slurm=SlurmInfo("7", "docker", 2, 1, 1, "#!/bin/sh", "/o", "/r", state="FAILED"))
    folder = run_dir(tmp_path, RID)
    folder.mkdir(parents=True)
    rec.save(folder, [secret])
    text = record_file(folder).read_text(encoding="utf-8")
    assert secret not in text
    back = RunRecord.load(folder)
    assert back == rec.but(docker_run=back.docker_run) and back.docker_run != rec.docker_run
    assert json.loads(text)["nodes"][0]["exit_code"] is None  # a node's unknown end: null
    assert log_file(folder).name != record_file(folder).name


def test_list_runs_gives_records(tmp_path: Path) -> None:
    folder = run_dir(tmp_path, RID)
    folder.mkdir(parents=True)
    RunRecord(RID, host="local", exit_code=0, status="exited").save(folder, [])
    [rec] = list_runs(tmp_path)
    assert isinstance(rec, RunRecord) and rec.status == "exited" and rec.exit_code == 0
