"""A local I/O failure never stops a run (issue 21, point 6), and output.log holds no secret
(point 2): real engine, a real `head -1` on a real pipe, a real full tmpfs under runs/."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, dlt

pytestmark = pytest.mark.docker

SECRET = "hf_Zq8sEcReTvAlUe41"
#: Many lines (about 1.3 MB), then a file in the project, then exit code 3.
LOUD = ("sh -c 'i=0; while [ $i -lt 150000 ]; do echo line $i; i=$((i+1)); done; "
        "echo finished > /workspace/done.txt; exit 3'")


def _env(project: Path, image: str, cmd: str, extra: str = "") -> None:
    (project / ".env").write_text(f"DLT_IMAGE={image}\nDLT_GPUS=none\nDLT_STOP_TIMEOUT=2\n"
                                  f"DLT_TRAIN_CMD={cmd}\n{extra}")


def _record(project: Path) -> dict[str, object]:
    (path,) = (project / "runs").glob("*/manifest.json")
    data: dict[str, object] = json.loads(path.read_text())
    return data


def _left(engine: object, project: Path) -> list[object]:
    found = engine.containers.list(  # type: ignore[attr-defined]
        ignore_removed=True, all=True, filters={"label": "dltasks.project=proj"})
    return [c for c in found
            if c.labels.get("dltasks.record", "").startswith(f"{project}{os.sep}")]


def test_a_closed_stdout_leaves_the_run_to_finish(engine: object, base_image: str,
                                                  project: Path) -> None:
    """`dlt train | head -1`: head leaves after one line; the run goes on to its end."""
    _env(project, base_image, LOUD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    run = subprocess.Popen([sys.executable, "-m", "dltasks", "train"], cwd=project, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.Popen(["head", "-1"], stdin=run.stdout, stdout=subprocess.PIPE)
    assert run.stdout is not None
    run.stdout.close()  # only head reads the pipe: once it exits, our writes get EPIPE
    try:
        first, _ = head.communicate(timeout=300)
        _, err = run.communicate(timeout=300)
    finally:
        for p in (run, head):
            if p.poll() is None:
                p.kill()
    text = err.decode()
    assert first == b"line 0\n"
    assert run.returncode == 3, text
    warnings = [ln for ln in text.splitlines() if ln.startswith("dlt: warning:")]
    assert warnings == ["dlt: warning: cannot write stdout: Broken pipe; the run goes on, its "
                        f"output still goes to runs/{_record(project)['run_id']}/output.log"], text
    assert "Traceback" not in text and "Exception ignored" not in text, text
    assert (project / "done.txt").read_text() == "finished\n"
    m = _record(project)
    assert m["exit_code"] == 3 and m["ended"] and m["status"] == "exited"
    log = (project / "runs" / str(m["run_id"]) / "output.log").read_text().splitlines()
    assert log[0] == "line 0" and log[-1] == "line 149999" and len(log) == 150000
    assert _left(engine, project) == []


@contextlib.contextmanager
def _small_tmpfs(runs: Path) -> Iterator[Path]:
    """``runs`` on a 64 KiB tmpfs: output.log fills it early in the run. Unmounted after."""
    runs.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(runs)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        why = f"cannot mount a tmpfs (root needed): {r.stderr.strip()}"
        if IN_CI:
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    try:
        yield runs
    finally:
        subprocess.run(["umount", "-l", str(runs)], check=True)


@pytest.fixture
def full_runs(project: Path) -> Iterator[Path]:
    with _small_tmpfs(project / "runs") as runs:
        yield runs


def test_a_full_disk_under_runs_leaves_the_run_to_finish(engine: object, base_image: str,
                                                         project: Path, full_runs: Path) -> None:
    _env(project, base_image, LOUD)
    r = dlt("train", cwd=project, timeout=300)
    assert r.returncode == 3, r.stderr[-2000:]
    assert r.stdout.splitlines()[-1] == "line 149999"   # the terminal got it all
    m = _record(project)
    run_id = m["run_id"]
    assert m["exit_code"] == 3 and m["ended"] and m["status"] == "exited"
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("dlt: warning:")]
    assert warnings == [f"dlt: warning: cannot write runs/{run_id}/output.log: No space left "
                        "on device; the run goes on, its output still goes to stdout"], r.stderr
    assert "Traceback" not in r.stderr
    assert (project / "done.txt").read_text() == "finished\n"
    log = full_runs / str(run_id) / "output.log"
    assert log.read_text().startswith("line 0\n") and log.stat().st_size < 64 << 10
    assert sorted(p.name for p in (full_runs / str(run_id)).iterdir()) == \
        ["configs", "manifest.json", "output.log"]   # the room kept for the end was let go
    assert _left(engine, project) == []


def test_output_log_holds_no_secret(engine: object, base_image: str, project: Path) -> None:
    """The run prints its token whole, and in two pieces that reach us in two reads."""
    cmd = ("sh -c 'echo token=$HF_TOKEN; printf \"split=hf_Zq8sEc\"; sleep 0.5; "
           "printf \"ReTvAlUe41 end\\n\"; echo done'")
    _env(project, base_image, cmd, f"HF_TOKEN={SECRET}\n")
    r = dlt("train", cwd=project, timeout=300)
    assert r.returncode == 0, r.stderr
    # the terminal is the user's own: it shows what the user's code printed, unmasked
    assert f"token={SECRET}" in r.stdout and f"split={SECRET} end" in r.stdout
    run_dir = project / "runs" / str(_record(project)["run_id"])
    log = (run_dir / "output.log").read_text()
    assert log == "token=****\nsplit=**** end\ndone\n"
    for f in run_dir.rglob("*"):   # the .env copy the container reads is its user's alone
        if f.is_file() and f != run_dir / "configs" / ".env":
            assert SECRET not in f.read_text(errors="replace"), f
    assert (run_dir / "configs" / ".env").stat().st_mode & 0o077 == 0


@pytest.mark.ssh
def test_the_laptops_full_disk_leaves_a_remote_run_to_finish(
        engine: object, base_image: str, ssh_lab: Any,
        remote_project: tuple[Path, str]) -> None:
    """`fab -H gpu1 train` with this machine's runs/ full: the run on gpu1 goes on to its end,
    its exit code comes back and is recorded here."""
    from tests.sshd_harness import fab

    d, name = remote_project
    with (d / ".env").open("a") as f:
        f.write(f"DLT_IMAGE={base_image}\nDLT_GPUS=none\nDLT_STOP_TIMEOUT=2\n"
                f"DLT_TRAIN_CMD={LOUD}\n")
    with _small_tmpfs(d / "runs") as runs:
        r = fab("-H", "gpu1", "train", cwd=d, env=ssh_lab.env(), timeout=300)
        assert r.returncode == 3, r.stderr[-2000:]
        (path,) = runs.glob("*/manifest.json")
        m = json.loads(path.read_text())
        assert m["exit_code"] == 3 and m["ended"] and m["status"] == "exited"
        assert (f"dlt: warning: cannot write runs/{m['run_id']}/output.log: No space left on "
                "device; the run goes on, its output still goes to stdout") in r.stderr
    assert r.stdout.splitlines()[-1] == "line 149999"
    done = Path(ssh_lab.hosts["gpu1"].home) / "dltasks" / name / "done.txt"
    assert done.read_text() == "finished\n"
