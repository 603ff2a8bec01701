"""RunRecord: the one reader and writer of ``runs/<id>/manifest.json``.

Old records (tests/data/records/, written by the code before RunRecord, see its README) read
and write back unchanged; unknown keys are kept; every status round-trips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest

from dltasks.errors import DltError
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
    assert slurm.slurm == SlurmInfo("42", extra={"odd": 1})
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
        gpu_mode_why="why", gpus_asked="free:1", gpus_shared=("GPU 3: run x",), container_id="c1",
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


# -- a malformed record is one unreadable run, never every reader's traceback -----------------

MALFORMED = {
    "string-for-object": {"job": "two nodes"},
    "number-for-list": {"nodes": 3},
    "string-for-list": {"command": "python t.py"},
    "list-of-strings-for-objects": {"path_map": ["code"]},
    "string-for-git": {"git": "abc"},
    "text-for-a-number": {"nodes": [{"rank": "zero", "host": "gpu1"}]},
    "object-for-text": {"slurm": {"job_id": "7", "script": {"a": 1}}},
    "pair-of-three": {"configs": [{"file": "c.yaml", "replacements": [["a", "b", "c"]]}]},
}


def _write(tmp_path: Path, data: object) -> Path:
    folder = run_dir(tmp_path, RID)
    folder.mkdir(parents=True)
    record_file(folder).write_text(json.dumps(data), encoding="utf-8")
    return folder


@pytest.mark.parametrize("part", MALFORMED.values(), ids=list(MALFORMED))
def test_a_malformed_nested_part_reads_as_one_unreadable_run(part: dict[str, object],
                                                             tmp_path: Path) -> None:
    folder = _write(tmp_path, {"run_id": RID, "host": "local", **part})
    good = "20261207-045936-0000"
    run_dir(tmp_path, good).mkdir()
    RunRecord(good, host="local", exit_code=0, status="exited").save(run_dir(tmp_path, good), [])
    fine, bad = list_runs(tmp_path)
    assert fine.run_id == good and fine.status == "exited"
    [key] = part
    assert bad.run_id == RID and bad.status == "unreadable manifest"
    assert bad.error and bad.error.startswith("unreadable manifest") and key in bad.error
    with pytest.raises(DltError) as e:
        RunRecord.load(folder)
    assert str(record_file(folder)) in str(e.value) and key in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text", ["[1, 2]", '{"run_id": "trunc', ""])
def test_load_of_no_record_is_one_line_naming_the_file(text: str, tmp_path: Path) -> None:
    folder = run_dir(tmp_path, RID)
    folder.mkdir(parents=True)
    record_file(folder).write_text(text, encoding="utf-8")
    with pytest.raises(DltError, match=str(record_file(folder))) as e:
        RunRecord.load(folder)
    assert "\n" not in str(e.value)


def test_partial_nested_parts_read_with_defaults(tmp_path: Path) -> None:
    """What can be read is: a missing key takes its default, null an optional part's absence."""
    rec = RunRecord.from_json({
        "run_id": RID, "job": {}, "nodes": [{}, {"rank": 1}], "failed_first": {},
        "path_map": [{"root": "code"}], "configs": [{}], "slurm": {}, "git": None,
        "gpus_shared": None})
    assert rec.job == JobInfo(-1) and rec.failed_first == FailedFirst(-1, "")
    assert rec.nodes == (NodePart(-1, ""), NodePart(1, ""))
    assert rec.path_map == (PathRow("code", "", "", ""),) and rec.configs == (ConfigEdit(""),)
    assert rec.slurm == SlurmInfo("") and rec.git == GitState(None, False, "")
    assert rec.gpus_shared is None
    folder = _write(tmp_path, rec.to_json())
    assert RunRecord.load(folder) == rec
    assert [r.run_id for r in list_runs(tmp_path)] == [RID]


# -- what this version does not know is written back as it was --------------------------------

def test_unknown_keys_inside_nested_parts_survive_a_resave(tmp_path: Path) -> None:
    data = {
        "run_id": RID, "kind": "train", "note": "mine",
        "git": {"commit": "abc", "dirty": False, "diff": "", "branch": "main"},
        "job": {"nnodes": 2, "xyz": [1]},
        "nodes": [{"rank": 0, "host": "gpu1", "note": "slow disk"}, {"rank": 1, "host": "gpu2"}],
        "failed_first": {"rank": 1, "host": "gpu2", "why": "x", "signal": 9},
        "path_map": [{"root": "code", "local": "/a", "host": "/b", "container": "/w", "ro": 1}],
        "configs": [{"file": "c.yaml", "replacements": [], "format": "yaml"}],
        "slurm": {"job_id": "7", "partition": "gpu"},
        "ended": None, "exit_code": None,
    }
    folder = _write(tmp_path, data)
    rec = RunRecord.load(folder)
    assert rec.slurm is not None and rec.slurm.extra == {"partition": "gpu"}
    assert rec.nodes is not None and rec.nodes[0].extra == {"note": "slow disk"}
    assert rec.job is not None and rec.job.extra == {"xyz": [1]}
    settled = rec.but(ended="2026-12-07T05:00:00+00:00", exit_code=0, status="exited")
    settled.save(folder, [])
    back = json.loads(record_file(folder).read_text(encoding="utf-8"))
    assert back == {**data, "ended": settled.ended, "exit_code": 0, "status": "exited"}
    assert list(back) == [*data, "status"]  # known keys keep their place


def test_a_null_valued_key_survives_a_resave(tmp_path: Path) -> None:
    data = {"run_id": RID, "image_id": None, "docker_run": None, "gpus": None,
            "slurm": {"job_id": "7", "state": None}, "ended": None, "exit_code": None}
    folder = _write(tmp_path, data)
    RunRecord.load(folder).but(exit_code=1).save(folder, [])
    back = json.loads(record_file(folder).read_text(encoding="utf-8"))
    assert back == {**data, "exit_code": 1}
    fresh = RunRecord(RID).to_json()  # a record made here writes no absent None
    assert "image_id" not in fresh and "status" not in fresh and "state" not in (
        RunRecord(RID, slurm=SlurmInfo("7")).to_json()["slurm"])


@pytest.mark.parametrize("said", ["weird", "COMPLETED", "Pending"])
def test_a_status_this_version_does_not_know_survives_a_resave(said: str, tmp_path: Path) -> None:
    folder = _write(tmp_path, {"run_id": RID, "status": said, "ended": None, "exit_code": None})
    rec = RunRecord.load(folder)
    assert rec.status == status_of(said)
    rec.but(ended="2026-12-07T05:00:00+00:00").save(folder, [])
    assert json.loads(record_file(folder).read_text(encoding="utf-8"))["status"] == said
    rec.but(status="stopped").save(folder, [])  # a status set here is the one written
    assert json.loads(record_file(folder).read_text(encoding="utf-8"))["status"] == "stopped"


@pytest.mark.parametrize("path", OLD, ids=[p.stem for p in OLD])
def test_an_old_record_is_written_back_byte_for_byte(path: Path, tmp_path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    folder = _write(tmp_path, {})
    record_file(folder).write_text(text, encoding="utf-8")
    RunRecord.load(folder).save(folder, [])
    assert record_file(folder).read_text(encoding="utf-8") == text
