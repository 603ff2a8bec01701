"""Run ids on a real engine: a hostile label writes nothing, an ambiguous prefix stops nothing,
a Slurm record never wins by prefix, and two users whose projects share a folder name see and
stop only their own runs (another's only by its full id)."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import dlt
from tests.users import User, throwaway_user

pytestmark = pytest.mark.docker

SLEEPER = "sleep 600"


def _write_env(d: Path, image: str, name: str = "") -> None:
    (d / ".env").write_text((f"DLT_PROJECT={name}\n" if name else "") +
                            f"DLT_IMAGE={image}\nDLT_GPUS=none\nDLT_STOP_TIMEOUT=1\n"
                            f"DLT_TRAIN_CMD={SLEEPER}\n")


@pytest.fixture
def proj(project: Path, base_image: str, engine: Any) -> Iterator[Path]:
    """A project of a name no other test uses; its containers removed afterwards."""
    name = f"ids{os.getpid()}-{project.parent.name[-6:]}".lower().replace("_", "-")
    _write_env(project, base_image, name)
    yield project
    for c in engine.containers.list(
            ignore_removed=True, all=True, filters={"label": f"dltasks.project={name}"}):
        c.remove(force=True)


def _name(proj: Path) -> str:
    return (proj / ".env").read_text().split("DLT_PROJECT=")[1].split()[0]


def _detached(proj: Path) -> str:
    r = dlt("train", "--detach", cwd=proj)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip().splitlines()[-1]


def _running(engine: Any, run_id: str) -> list[Any]:
    return engine.containers.list(  # type: ignore[no-any-return]
            ignore_removed=True, filters={"label": f"dltasks.run={run_id}"})


def _one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode != 0, r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


def _next_second(run_id: str) -> None:
    """Wait (bounded) until the clock is past the second ``run_id`` was made in, so the next
    id differs from it before its random part."""
    deadline = time.monotonic() + 5
    while datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S") == run_id[:15]:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_hostile_run_label_leaves_a_decoy_manifest_untouched(
        proj: Path, engine: Any, base_image: str) -> None:
    # what `runs/<label>/manifest.json` reaches for the label ../../x: outside runs/
    decoy = proj / "runs" / ".." / ".." / "x" / "manifest.json"
    decoy.parent.mkdir(parents=True)
    decoy.write_text(json.dumps({"run_id": "../../x", "detached": True, "exit_code": None,
                                 "host": "local", "kind": "train"}) + "\n")
    before = decoy.read_bytes()
    # one real detached record that has not learned its end, so `runs` asks the engine
    real = _detached(proj)
    labels = {"dltasks.run": "../../x", "dltasks.project": _name(proj), "dltasks.kind": "train",
              "dltasks.host": "local", "dltasks.started": "2099-01-01T00:00:00+00:00",
              "dltasks.gpus": "none", "dltasks.user": getpass.getuser(),
              "dltasks.record": str(proj / "runs" / "../../x")}
    hostile = engine.containers.run(base_image, ["sh", "-c", "exit 3"], labels=labels,
                                    detach=True)
    assert hostile.wait(timeout=60)["StatusCode"] == 3   # finished: a record to "settle"
    ps = dlt("ps", cwd=proj)
    assert ps.returncode == 0, ps.stderr
    assert real in ps.stdout and "../../x" not in ps.stdout
    everyone = dlt("ps", "--all", cwd=proj)
    assert everyone.returncode == 0 and "../../x" not in everyone.stdout, everyone.stderr
    runs = dlt("runs", cwd=proj)
    assert runs.returncode == 0, runs.stderr
    assert decoy.read_bytes() == before
    assert sorted(p.name for p in decoy.parent.iterdir()) == ["manifest.json"]
    for bad in ("../../x", "..", "x/../.."):
        assert "not a run id" in _one_line_error(dlt("stop", bad, cwd=proj))
        assert "not a run id" in _one_line_error(dlt("logs", bad, cwd=proj))
    assert hostile.id in [c.id for c in engine.containers.list(
            ignore_removed=True, all=True)]  # untouched too
    assert decoy.read_bytes() == before
    assert dlt("stop", real, cwd=proj).returncode == 0


def test_an_ambiguous_prefix_stops_nothing_and_names_both(proj: Path, engine: Any) -> None:
    first = _detached(proj)
    _next_second(first)
    second = _detached(proj)
    try:
        prefix = os.path.commonprefix([first, second])
        assert prefix and first != second
        line = _one_line_error(dlt("stop", prefix, cwd=proj))
        assert first in line and second in line and "give more of the id" in line
        line = _one_line_error(dlt("logs", prefix, cwd=proj))
        assert first in line and second in line
        assert len(_running(engine, first)) == 1 and len(_running(engine, second)) == 1
        # a prefix that only one of them starts with resolves to it
        r = dlt("stop", second[:15], cwd=proj)
        assert r.returncode == 0 and f"stopped {second}" in r.stdout, r.stderr
        assert _running(engine, second) == [] and len(_running(engine, first)) == 1
    finally:
        for rid in (first, second):
            dlt("stop", rid, cwd=proj)
    assert _running(engine, first) == []


def test_a_slurm_record_does_not_win_by_prefix_over_an_engine_run(
        proj: Path, engine: Any) -> None:
    run_id = _detached(proj)
    # a Slurm run of this project submitted here, sharing the engine run's id up to the
    # seconds (a record file: the resolver must refuse before anything is cancelled)
    slurm_id = run_id[:16] + ("0000" if not run_id.endswith("0000") else "ffff")
    folder = proj / "runs" / slurm_id
    folder.mkdir()
    record = {"run_id": slurm_id, "kind": "train", "host": "local", "exit_code": None,
              "status": "submitted", "detached": True,
              "slurm": {"job_id": "999999", "output": str(folder / "slurm-999999.out"),
                        "run_dir": str(folder)}}
    (folder / "manifest.json").write_text(json.dumps(record, indent=2) + "\n")
    before = (folder / "manifest.json").read_bytes()
    try:
        for task in ("stop", "logs"):
            line = _one_line_error(dlt(task, run_id[:16], cwd=proj))
            assert run_id in line and slurm_id in line and "Slurm job 999999" in line, line
        assert len(_running(engine, run_id)) == 1
        assert (folder / "manifest.json").read_bytes() == before
        assert sorted(p.name for p in folder.iterdir()) == ["manifest.json"]
        # the engine run's own full id still reaches it, past the Slurm record
        r = dlt("stop", run_id, cwd=proj)
        assert r.returncode == 0 and f"stopped {run_id} on local" in r.stdout, r.stderr
        assert _running(engine, run_id) == []
        assert (folder / "manifest.json").read_bytes() == before
    finally:
        dlt("stop", run_id, cwd=proj)


# --------------------------------------------------------------------------------------------
# two users, projects of the same folder name, one engine


@pytest.fixture(scope="module")
def two_users() -> Iterator[tuple[User, User]]:
    with throwaway_user(groups=("docker",)) as a, throwaway_user(groups=("docker",)) as b:
        yield a, b


def _user_project(u: User, image: str) -> Path:
    d = u.home / "proj"
    subprocess.run(["runuser", "-u", u.name, "--", "mkdir", "-p", str(d)], check=True)
    _write_env(d, image)  # DLT_PROJECT unset: both projects are "proj", by their folders
    subprocess.run(["chown", "-R", f"{u.name}:{u.name}", str(d)], check=True)
    return d


def _started(u: User, d: Path) -> str:
    r = u.run("train", "--detach", cwd=d, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip().splitlines()[-1]


def _remove_runs_of(engine: Any, users: tuple[User, User]) -> None:
    for c in engine.containers.list(
            ignore_removed=True, all=True, filters={"label": "dltasks.run"}):
        if any(c.labels.get("dltasks.record", "").startswith(str(u.home)) for u in users):
            c.remove(force=True)


def test_two_users_with_same_named_projects_see_and_stop_only_their_own(
        two_users: tuple[User, User], engine: Any, base_image: str) -> None:
    a, b = two_users
    da, db = _user_project(a, base_image), _user_project(b, base_image)
    try:
        id_a = _started(a, da)
        _next_second(id_a)
        id_b = _started(b, db)
        for u, d, own, other in ((a, da, id_a, id_b), (b, db, id_b, id_a)):
            ps = u.run("ps", cwd=d)
            assert ps.returncode == 0, ps.stderr
            assert own in ps.stdout and other not in ps.stdout, ps.stdout
            assert "not yours" in ps.stdout and "ps --all" in ps.stdout
            every = u.run("ps", "--all", cwd=d)
            row = next(ln for ln in every.stdout.splitlines() if ln.startswith(other))
            assert (b if u is a else a).name in row.split(), every.stdout
            mine = next(ln for ln in every.stdout.splitlines() if ln.startswith(own))
            assert "you" in mine.split()
        # a prefix of b's run, from a: refused, b's run goes on
        for task in ("stop", "logs"):
            r = a.run(task, id_b[:15], cwd=da)
            assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert "no run of yours" in r.stderr and id_b in r.stderr and "full id" in r.stderr
        assert len(_running(engine, id_b)) == 1 and len(_running(engine, id_a)) == 1
        # by its full id it is deliberate (both are in group docker: the engine lets them)
        logs = a.run("logs", id_b, cwd=da)
        assert logs.returncode == 0, logs.stderr
        # exec never enters another's run, not even by its full id: its environment is theirs
        for who in (id_b[:15], id_b):
            r = a.run("exec", who, "--", "sh", "-c", "touch /tmp/entered; env", cwd=da)
            assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
            assert r.stdout == ""
        assert r.returncode == 2
        assert f"run {id_b} is {b.name}'s: exec enters only your own runs" in r.stderr
        [c] = _running(engine, id_b)
        assert c.exec_run(["sh", "-c", "test -e /tmp/entered"]).exit_code == 1
        record_b = db / "runs" / id_b / "manifest.json"
        before = record_b.read_bytes()
        r = a.run("stop", id_b, cwd=da)
        assert r.returncode == 0, r.stderr
        assert f"stopped {id_b} on local (a run of {b.name})" in r.stdout
        assert _running(engine, id_b) == [] and len(_running(engine, id_a)) == 1
        assert record_b.read_bytes() == before          # b's record is b's to write
        assert not (da / "runs" / id_b).exists()        # nothing of b's run in a's folder
        r = a.run("stop", id_a[:15], cwd=da)            # a's own run by a prefix
        assert r.returncode == 0 and f"stopped {id_a}" in r.stdout, r.stderr
        assert _running(engine, id_a) == []
    finally:
        _remove_runs_of(engine, two_users)
