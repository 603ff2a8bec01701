"""Run ids: one validator for every id (arguments, labels, records, Slurm), whose run is whose,
and the resolver that turns a RUN argument into one run or a one-line refusal."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from dltasks.errors import DltError
from dltasks.runs.listing import ENGINE, SLURM, Candidate, RunInfo, choose_candidate, owner
from dltasks.runs.record import (
    MANIFEST,
    RUNS_DIR,
    RunRecord,
    check_run_arg,
    check_run_id,
    is_run_id,
    list_runs,
    new_run_id,
    run_dir,
    write_manifest,
)
from dltasks.runs.slurm import slurm_job_id, slurm_records

A = "20261207-101500-ab12"
B = "20261207-101502-cd34"
C = "20261208-090000-0f0f"

HOSTILE = ["../../x", "..", "../20261207-101500-ab12", "20261207-101500-ab12/../../x",
           "/etc", "20261207-101500-AB12", "20261207-101500-ab12 ", "20261207-101500-ab123",
           "", "x", "20261207_101500_ab12", "20261207-101500-ab1\n", "２0261207-101500-ab12"]


# --------------------------------------------------------------------------------------------
# the validator


def test_ids_of_every_kind_of_run_pass() -> None:
    # plain runs, jobs, Slurm runs and test-gpu all take their id from new_run_id
    for when in (datetime(2026, 1, 1, tzinfo=timezone.utc),
                 datetime(2026, 12, 31, 23, 59, 59, tzinfo=timezone.utc), None):
        rid = new_run_id(when)
        assert is_run_id(rid) and check_run_id(rid) == rid and check_run_arg(rid) == rid
    assert is_run_id(A)


@pytest.mark.parametrize("bad", HOSTILE)
def test_anything_else_is_refused_in_one_line(bad: str) -> None:
    assert not is_run_id(bad)
    with pytest.raises(DltError) as e:
        check_run_id(bad, "label dltasks.run")
    assert "\n" not in e.value.message and "label dltasks.run" in e.value.message
    assert "20261126-141502-a3f9" in e.value.message  # what an id looks like


def test_non_strings_are_no_run_ids() -> None:
    for bad in (None, 20261207, ["x"], {"run_id": A}):
        assert not is_run_id(bad)


@pytest.mark.parametrize("prefix", ["2", "2026", "20261207", "20261207-", "20261207-10",
                                    "20261207-101500", "20261207-101500-", "20261207-101500-a",
                                    A])
def test_prefixes_of_an_id_are_accepted_as_arguments(prefix: str) -> None:
    assert check_run_arg(prefix) == prefix


@pytest.mark.parametrize("bad", [h for h in HOSTILE if h not in ("",)] + ["", "abc", "2026-",
                                                                         "20261207-1015000"])
def test_arguments_that_no_id_starts_with_are_refused(bad: str) -> None:
    with pytest.raises(DltError) as e:
        check_run_arg(bad)
    assert "\n" not in e.value.message and "`inv ps`" in e.value.message


@pytest.mark.parametrize("bad", ["../../x", "..", "a/b", "/abs"])
def test_run_dir_builds_no_path_from_an_unchecked_id(tmp_path: Path, bad: str) -> None:
    with pytest.raises(DltError):
        run_dir(tmp_path, bad)
    assert run_dir(tmp_path, A) == tmp_path / RUNS_DIR / A


def test_list_runs_returns_no_record_whose_id_is_not_its_folder(tmp_path: Path) -> None:
    good, liar = run_dir(tmp_path, A), run_dir(tmp_path, B)
    good.mkdir(parents=True)
    liar.mkdir()
    write_manifest(good / MANIFEST, {"run_id": A}, [])
    write_manifest(liar / MANIFEST, {"run_id": "../../x", "slurm": {"job_id": "1"}}, [])
    odd = tmp_path / RUNS_DIR / "notes"  # not a run folder
    odd.mkdir()
    write_manifest(odd / MANIFEST, {"run_id": "notes"}, [])
    runs = list_runs(tmp_path)
    assert [r.run_id for r in runs] == [B, A]
    assert runs[0].slurm is None and runs[0].status == "unreadable manifest"
    assert "../../x" in str(runs[0].error)


def _slurm_record(project: Path, rid: str, job_id: object, host: str = "local") -> None:
    d = run_dir(project, rid)
    d.mkdir(parents=True)
    write_manifest(d / MANIFEST, {"run_id": rid, "host": host, "slurm": {"job_id": job_id}}, [])


def test_slurm_records_keep_only_checked_job_ids_of_that_host(tmp_path: Path) -> None:
    _slurm_record(tmp_path, A, "4242")
    _slurm_record(tmp_path, B, "--user=root")
    _slurm_record(tmp_path, C, "77", host="login1")
    assert [m.run_id for m in slurm_records(tmp_path, "local")] == [A]
    assert [m.run_id for m in slurm_records(tmp_path, "login1")] == [C]
    assert slurm_job_id(RunRecord.from_json({"run_id": A, "slurm": {"job_id": 4242}})) == "4242"
    for bad in ("--user=root", "1 2", "", "12;rm", "１２"):
        with pytest.raises(DltError):
            slurm_job_id(RunRecord.from_json({"run_id": A, "slurm": {"job_id": bad}}))


# --------------------------------------------------------------------------------------------
# whose run


def _info(project: Path, rid: str = A, *, user: str = "alice", host: str = "local",
          record: str | None = None) -> RunInfo:
    rec = str(project / RUNS_DIR / rid) if record is None else record
    return RunInfo(rid, "c" * 64, "proj", "train", "running", None, "", "", host, "img",
                   user=user, record=rec)


def test_yours_is_your_login_and_this_folder(tmp_path: Path) -> None:
    mine, theirs = tmp_path / "alice" / "proj", tmp_path / "bob" / "proj"
    assert owner(_info(mine), "alice", mine, "local") == ""
    # a teammate's project of the same folder name, on the same engine
    assert owner(_info(theirs, user="bob"), "alice", mine, "local") == "bob"
    # the same login, another checkout of the project
    other = owner(_info(theirs, user="alice"), "alice", mine, "local")
    assert other.startswith("alice, from ") and str(theirs / RUNS_DIR) in other
    # this folder's path, someone else's login (the record label alone proves nothing)
    assert owner(_info(mine, user="bob"), "alice", mine, "local") == "bob"
    # no labels that say whose: not yours
    assert owner(_info(mine, user="", record=""), "alice", mine, "local") == "unknown user"


def test_a_container_of_another_host_or_no_user_is_yours_only_with_its_record(
        tmp_path: Path) -> None:
    mine = tmp_path / "proj"
    node = _info(mine, user="dltgpu2", host="gpu2")     # a job's node 1, on a shared engine
    slurm = _info(mine, user="")                        # a Slurm node container: no user label
    assert owner(node, "dltgpu1", mine, "gpu1") == "dltgpu2"
    assert owner(slurm, "alice", mine, "local") == "unknown user"
    d = run_dir(mine, A)
    d.mkdir(parents=True)
    write_manifest(d / MANIFEST, {"run_id": A}, [])
    assert owner(node, "dltgpu1", mine, "gpu1") == ""
    assert owner(slurm, "alice", mine, "local") == ""


def test_a_remote_run_is_recognised_by_the_laptop_path_in_its_record_label(
        tmp_path: Path) -> None:
    laptop = tmp_path / "laptop" / "proj"
    run = _info(laptop, user="dltgpu1", host="gpu1")
    assert owner(run, "dltgpu1", laptop, "gpu1") == ""
    assert owner(run, "dltgpu1", tmp_path / "elsewhere" / "proj", "gpu1") != ""


# --------------------------------------------------------------------------------------------
# the resolver: candidates in, one run or a one-line refusal out


def eng(rid: str, who: str = "", note: str = "running") -> Candidate:
    return Candidate(rid, ENGINE, who, note)


def slu(rid: str, job: int = 42) -> Candidate:
    return Candidate(rid, SLURM, "", f"Slurm job {job}")


def refusal(run: str, cands: list[Candidate], where: str = "local") -> str:
    with pytest.raises(DltError) as e:
        choose_candidate(run, cands, where)
    assert "\n" not in e.value.message
    return e.value.message


def test_exact_id_wins_over_prefix_matches() -> None:
    node1 = replace(eng(A), note="exited")  # a job's second node: the same run
    assert choose_candidate(A, [eng(A), node1, eng(B)], "local") == eng(A)
    assert choose_candidate(B, [eng(A), eng(B)], "local") == eng(B)


def test_a_unique_prefix_of_your_runs_resolves() -> None:
    assert choose_candidate("20261208", [eng(A), eng(B), slu(C)], "local") == slu(C)
    assert choose_candidate("20261207-101502", [eng(A), eng(B)], "local") == eng(B)


def test_an_ambiguous_prefix_is_refused_with_every_candidate() -> None:
    msg = refusal("20261207", [eng(A), eng(B), eng(C)])
    assert A in msg and B in msg and C not in msg and "give more of the id" in msg


def test_a_slurm_record_does_not_win_by_prefix_over_an_engine_run() -> None:
    msg = refusal("20261207", [slu(A, 4242), eng(B)])
    assert A in msg and B in msg and "Slurm job 4242" in msg


def test_slurm_containers_of_a_slurm_run_are_that_run() -> None:
    # the Slurm run's node containers on this engine carry its id: the record decides
    assert choose_candidate(A, [eng(A), slu(A)], "local").source == SLURM
    assert choose_candidate("2026", [eng(A), slu(A)], "local").source == SLURM


def test_another_users_run_only_by_its_full_id() -> None:
    theirs = eng(B, "bob")
    msg = refusal("20261207-1015", [eng(A, "bob"), theirs])
    assert "no run of yours" in msg and A in msg and B in msg and "of bob" in msg
    assert "full id" in msg
    assert choose_candidate(B, [theirs, eng(A)], "gpu1") == theirs
    # a prefix resolves among yours only, however many of others' share it
    assert choose_candidate("20261207", [eng(A), eng(B, "bob")], "local") == eng(A)


def test_an_id_of_two_owners_is_refused() -> None:
    msg = refusal(A, [eng(A, "bob"), eng(A, "carol")])
    assert "bob" in msg and "carol" in msg
    assert choose_candidate(A, [eng(A, "bob"), eng(A)], "local") == eng(A)  # yours first


def test_nothing_matches_says_where_to_look() -> None:
    assert "`inv ps`" in refusal("2025", [eng(A)]) and "`inv runs`" in refusal("2025", [])
    assert "`fab -H gpu1 ps`" in refusal("2025", [eng(A)], "gpu1")


def test_hostile_arguments_are_refused_before_any_candidate_is_looked_at() -> None:
    for bad in ("../../x", "", "2026/..", "*"):
        assert "not a run id" in refusal(bad, [eng(A)])


def test_long_candidate_lists_are_cut() -> None:
    ids = [f"20261207-1015{i:02d}-aaaa" for i in range(10)]
    msg = refusal("20261207", [eng(i) for i in ids])
    assert "10 of your runs" in msg and "and 4 more" in msg
