"""`run -- CMD`: a one-off command in train's container setup, on this machine and through
`fab -H` (real engine, real sshd hosts on loopback).

The words after ``--`` run in the container as argv (quoting intact), paths in them mapped as
train's command is; the exit code is the program's; a record of kind "run" is kept. Under fab
the words are the task's: fabric must never run them on the host itself.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import dlt, project_containers
from tests.sshd_harness import Lab, fab, lab_project

pytestmark = [pytest.mark.docker]


@pytest.fixture
def proj(project: Path, base_image: str, engine: Any) -> Iterator[tuple[Path, str]]:
    name = "runcmd-" + uuid.uuid4().hex[:8]
    (project / ".env").write_text(f"DLT_PROJECT={name}\nDLT_IMAGE={base_image}\n"
                                  "DLT_GPUS=none\nDLT_OUTPUT_DIR=outputs\n")
    (project / "data.txt").write_text("from the project\n")
    yield project, name
    for c in project_containers(engine, name):
        c.remove(force=True)


def _record(d: Path) -> dict[str, Any]:
    (folder,) = (d / "runs").iterdir()
    record: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
    return record


def test_local_run_maps_paths_writes_outputs_and_passes_the_exit_code(
        proj: tuple[Path, str], engine: Any) -> None:
    d, name = proj
    # laptop paths under the project (and its outputs) written in the command: the
    # container's paths at run time; a word with a space stays one word
    code = (f"import sys; text = open('{d}/data.txt').read().strip(); "
            f"open('{d}/outputs/result.txt', 'w').write(text + '|' + sys.argv[1]); "
            "print('argv', sys.argv[1:]); sys.exit(7)")
    r = dlt("run", "--", "python3", "-c", code, "two words", "$HOME", cwd=d)
    assert r.returncode == 7, r.stderr
    assert "argv ['two words', '$HOME']" in r.stdout  # no shell: nothing expanded or split
    assert (d / "outputs" / "result.txt").read_text() == "from the project|two words"
    record = _record(d)
    assert record["kind"] == "run" and record["exit_code"] == 7
    assert record["command"][:2] == ["python3", "-c"]
    assert f"'{d}/" not in record["command"][2] and "'/workspace/data.txt'" in record["command"][2]
    assert "'/outputs/result.txt'" in record["command"][2]
    assert project_containers(engine, name) == []
    listed = dlt("runs", cwd=d)
    assert listed.returncode == 0 and f"{record['run_id']}  run " in listed.stdout


def test_one_quoted_command_line_runs_through_sh(proj: tuple[Path, str]) -> None:
    d, _ = proj
    r = dlt("run", "--", "cat data.txt && echo in $PWD", cwd=d)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-2:] == ["from the project", "in /workspace"]


def test_run_without_a_command_says_how_in_one_line(proj: tuple[Path, str]) -> None:
    d, _ = proj
    for argv in (("run",), ("run", "--")):
        r = dlt(*argv, cwd=d)
        assert r.returncode == 2
        assert r.stderr.strip().splitlines() == [
            "dlt: error: run needs its command: `dlt run -- python3 prepare.py`"]
    assert not (d / "runs").exists()


def test_detached_run_is_listed_by_ps_and_stopped(proj: tuple[Path, str], engine: Any) -> None:
    d, name = proj
    r = dlt("run", "--detach", "--", "sleep", "300", cwd=d)
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.split()[-1]
    (c,) = project_containers(engine, name)
    assert c.labels["dltasks.kind"] == "run" and c.labels["dltasks.run"] == run_id
    ps = dlt("ps", cwd=d)
    assert ps.returncode == 0, ps.stderr
    row = next(ln for ln in ps.stdout.splitlines() if ln.startswith(run_id))
    assert row.split()[1:3] == ["run", "-"] and "running" in row
    s = dlt("stop", run_id, cwd=d)
    assert s.returncode == 0 and f"stopped {run_id}" in s.stdout, s.stderr
    assert project_containers(engine, name) == []
    assert _record(d)["status"] == "stopped"


# --------------------------------------------------------------------------------------------
# through fab -H: the words run in the container on each host, never by fabric on the host


@pytest.fixture
def remote(tmp_path: Path, ssh_lab: Lab, base_image: str,
           engine: Any) -> Iterator[tuple[Path, str]]:
    with lab_project(tmp_path, ssh_lab, f"DLT_IMAGE={base_image}\nDLT_GPUS=none\n"
                     "DLT_OUTPUT_DIR=outputs\n", prefix="rrun", engine=engine) as made:
        yield made


@pytest.mark.ssh
def test_fab_run_runs_the_command_in_the_container_not_on_the_host(
        ssh_lab: Lab, remote: tuple[Path, str], engine: Any) -> None:
    d, name = remote
    mark = "MARK-" + uuid.uuid4().hex[:8]
    host_dir = ssh_lab.hosts["gpu1"].home / "dltasks" / name
    # in the container the working folder is the project's copy on gpu1; on the host the
    # words would run in the login's home folder
    r = fab("-H", "gpu1", "run", "--cmd", f"touch {mark} outputs/{mark}; exit 5",
            cwd=d, env=ssh_lab.env())
    assert r.returncode == 5, r.stdout + r.stderr
    assert (host_dir / mark).is_file() and (host_dir / "outputs" / mark).is_file()
    assert not (ssh_lab.hosts["gpu1"].home / mark).exists()
    record = _record(d)
    assert (record["kind"], record["host"], record["exit_code"]) == ("run", "gpu1", 5)
    assert record["command"] == ["sh", "-c", f"touch {mark} outputs/{mark}; exit 5"]
    assert project_containers(engine, name) == []
    none = fab("-H", "gpu1", "run", cwd=d, env=ssh_lab.env())
    assert none.returncode == 2
    assert none.stderr.strip().splitlines() == [
        "dlt: error: run needs its command: `fab -H gpu1 run --cmd 'python3 prepare.py'`"]


@pytest.mark.ssh
def test_fab_never_runs_words_after_dashes_on_the_host(ssh_lab: Lab,
                                                       remote: tuple[Path, str]) -> None:
    """fabric 3.2 refuses a task with words after -- before any task runs (NothingToDo:
    fabric/fabric#1900); were it to take them, `run` would make them its command and end the
    program (takes_command) before fabric's own call could run them on the host."""
    d, name = remote
    mark = "MARK-" + uuid.uuid4().hex[:8]
    r = fab("-H", "gpu1", "run", "--", "touch", mark, cwd=d, env=ssh_lab.env())
    home = ssh_lab.hosts["gpu1"].home
    assert not (home / mark).exists(), r.stdout + r.stderr
    if r.returncode != 0:  # today's fabric: refused as a whole, nothing ran anywhere
        assert "NothingToDo" in r.stderr and not (d / "runs").exists()
    else:                  # a fabric that passes them on: they ran in the container
        assert (home / "dltasks" / name / mark).is_file()


@pytest.mark.ssh
def test_fab_run_over_two_hosts_runs_on_each(ssh_lab: Lab, remote: tuple[Path, str]) -> None:
    d, name = remote
    mark = "MARK-" + uuid.uuid4().hex[:8]
    r = fab("-H", "gpu1,gpu2", "run", "--cmd", f"touch {mark}", cwd=d, env=ssh_lab.env())
    assert r.returncode == 0, r.stdout + r.stderr
    for alias in ("gpu1", "gpu2"):
        home = ssh_lab.hosts[alias].home
        assert (home / "dltasks" / name / mark).is_file(), alias
        assert not (home / mark).exists(), alias
    records = [json.loads((f / "manifest.json").read_text()) for f in (d / "runs").iterdir()]
    assert sorted((m["host"], m["kind"]) for m in records) == [("gpu1", "run"), ("gpu2", "run")]
