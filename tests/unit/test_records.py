"""Run records: git state from real repositories, run ids, manifests written safely, listing."""

from __future__ import annotations

import re
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dltasks.runs.record import (
    MANIFEST,
    RUNS_DIR,
    GitState,
    git_state,
    list_runs,
    new_run_id,
    read_manifest,
    run_dir,
    write_manifest,
)
from dltasks.settings.masking import MASK


@pytest.fixture(autouse=True)
def _no_outer_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Git must not find a repository above tmp_path, nor read the user's git config."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def git(d: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(d), *args], check=True, capture_output=True,
                          text=True).stdout


def make_repo(d: Path, files: dict[str, str] | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    git(d, "init", "-q")
    git(d, "config", "user.name", "Test")
    git(d, "config", "user.email", "test@example.invalid")
    git(d, "config", "commit.gpgsign", "false")
    for name, text in (files or {}).items():
        (d / name).write_text(text)
    return d


def commit_all(d: Path) -> str:
    git(d, "add", "-A")
    git(d, "commit", "-q", "-m", "c")
    return git(d, "rev-parse", "HEAD").strip()


# --------------------------------------------------------------------------------------------
# git_state


def test_not_a_repository(tmp_path: Path) -> None:
    d = tmp_path / "plain"
    d.mkdir()
    (d / "main.py").write_text("print(1)\n")
    assert git_state(d) == GitState(None, False, "")


def test_missing_folder(tmp_path: Path) -> None:
    assert git_state(tmp_path / "nowhere") == GitState(None, False, "")


def test_repository_without_commits(tmp_path: Path) -> None:
    d = make_repo(tmp_path / "p", {"main.py": "x = 1\n"})
    assert git_state(d).commit is None


def test_clean(tmp_path: Path) -> None:
    d = make_repo(tmp_path / "p", {"main.py": "x = 1\n"})
    head = commit_all(d)
    st = git_state(d)
    assert st == GitState(head, False, "")
    assert re.fullmatch(r"[0-9a-f]{40}", head)


def test_modified_tracked_file_is_dirty_with_its_diff(tmp_path: Path) -> None:
    d = make_repo(tmp_path / "p", {"main.py": "lr = 0.1\n", "other.py": "y = 2\n"})
    head = commit_all(d)
    (d / "main.py").write_text("lr = 0.25\n")
    st = git_state(d)
    assert st.commit == head
    assert st.dirty
    assert "-lr = 0.1" in st.diff and "+lr = 0.25" in st.diff
    assert "other.py" not in st.diff


def test_staged_change_is_in_the_diff(tmp_path: Path) -> None:
    d = make_repo(tmp_path / "p", {"main.py": "a\n"})
    commit_all(d)
    (d / "new.py").write_text("staged = True\n")
    git(d, "add", "new.py")
    st = git_state(d)
    assert st.dirty and "+staged = True" in st.diff


def test_untracked_only_is_dirty(tmp_path: Path) -> None:
    d = make_repo(tmp_path / "p", {"main.py": "a\n"})
    head = commit_all(d)
    (d / "scratch.txt").write_text("notes\n")
    st = git_state(d)
    assert (st.commit, st.dirty) == (head, True)
    assert "notes" not in st.diff  # the diff is of tracked files


def test_detached_head(tmp_path: Path) -> None:
    d = make_repo(tmp_path / "p", {"main.py": "a\n"})
    first = commit_all(d)
    (d / "main.py").write_text("b\n")
    commit_all(d)
    git(d, "checkout", "-q", "--detach", first)
    assert git_state(d) == GitState(first, False, "")


def test_subfolder_of_a_repository(tmp_path: Path) -> None:
    d = make_repo(tmp_path / "p", {"main.py": "a\n"})
    (d / "sub").mkdir()
    (d / "sub" / "f.py").write_text("f\n")
    head = commit_all(d)
    assert git_state(d / "sub").commit == head


# --------------------------------------------------------------------------------------------
# run ids


RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{4}")


def test_run_id_format() -> None:
    now = datetime(2026, 11, 26, 14, 15, 2, tzinfo=timezone.utc)
    rid = new_run_id(now)
    assert RUN_ID.fullmatch(rid)
    assert rid.startswith("20261126-141502-")
    assert RUN_ID.fullmatch(new_run_id())


def test_run_ids_sort_by_time() -> None:
    t0 = datetime(2026, 1, 9, 23, 59, 59, tzinfo=timezone.utc)
    steps = [timedelta(seconds=1), timedelta(minutes=1), timedelta(days=1), timedelta(days=400)]
    times = [t0] + [t0 + s for s in steps]
    ids = [new_run_id(t) for t in times]
    assert sorted(ids) == ids
    assert sorted(reversed(ids)) == ids


def test_run_ids_of_one_second_differ() -> None:
    now = datetime(2026, 11, 26, 14, 15, 2, tzinfo=timezone.utc)
    ids = {new_run_id(now) for _ in range(20)}
    assert len(ids) > 1  # a random suffix (1 in 65536 per pair), not a counter


# --------------------------------------------------------------------------------------------
# manifests


def test_write_manifest_scrubs_and_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / MANIFEST
    secret = "hf_abcdefSECRET123"
    manifest = {"run_id": "r1", "env": {"HF_TOKEN": secret},
                "docker_run": f"docker run -e HF_TOKEN={secret} img", "n": 3}
    write_manifest(path, manifest, [secret])
    text = path.read_text()
    assert secret not in text
    data = read_manifest(path)
    assert data["env"]["HF_TOKEN"] == MASK
    assert data["docker_run"] == f"docker run -e HF_TOKEN={MASK} img"
    assert (data["run_id"], data["n"]) == ("r1", 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST]  # no .tmp left

    # rewriting replaces the whole file (the later write wins, still no leftovers)
    write_manifest(path, {**manifest, "exit_code": 0}, [secret])
    assert read_manifest(path)["exit_code"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST]


def test_write_manifest_keeps_non_json_values_as_text(tmp_path: Path) -> None:
    path = tmp_path / MANIFEST
    write_manifest(path, {"where": tmp_path}, [])
    assert read_manifest(path)["where"] == str(tmp_path)


@pytest.mark.parametrize("secret", ['pa\\ss"word', "pässwörd-1"])
def test_write_manifest_scrubs_secrets_that_json_escapes(tmp_path: Path, secret: str) -> None:
    path = tmp_path / MANIFEST
    write_manifest(path, {"env": {"DB_PASSWORD": secret}}, [secret])
    assert read_manifest(path)["env"]["DB_PASSWORD"] == MASK


def _record(project: Path, run_id: str, **extra: object) -> None:
    d = run_dir(project, run_id)
    d.mkdir(parents=True)
    write_manifest(d / MANIFEST, {"run_id": run_id, **extra}, [])


def test_list_runs_newest_first_and_unreadable_reported(tmp_path: Path) -> None:
    assert list_runs(tmp_path) == []
    ids = [new_run_id(datetime(2026, 11, d, 9, 0, 0, tzinfo=timezone.utc)) for d in (3, 1, 2)]
    for i, rid in enumerate(ids):
        _record(tmp_path, rid, exit_code=i)
    broken = new_run_id(datetime(2026, 11, 4, tzinfo=timezone.utc))
    (run_dir(tmp_path, broken)).mkdir()
    (run_dir(tmp_path, broken) / MANIFEST).write_text('{"run_id": "trunc')
    (tmp_path / RUNS_DIR / "no-manifest").mkdir()  # a folder with no record is skipped
    runs = list_runs(tmp_path)
    assert [r.run_id for r in runs] == [broken, ids[0], ids[2], ids[1]]
    assert runs[0].status == "unreadable manifest"
    assert [r.exit_code for r in runs[1:]] == [0, 2, 1]
