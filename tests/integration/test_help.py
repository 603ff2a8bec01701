"""`-h` is help on every task, for `dlt`, `inv` and `fab`: it prints the task's help and starts
nothing (issue 21: `dlt train -h` was `--share` and started a run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dltasks.tasks import ns
from tests.conftest import dlt

pytestmark = pytest.mark.docker

BIN = Path(sys.executable).parent


@pytest.fixture
def proj(project: Path, base_image: str) -> Path:
    """A project that WOULD run (a real image, a command that leaves a file) if asked to."""
    name = f"h{os.getpid()}-{project.parent.name[-6:]}".lower().replace("_", "-")
    (project / ".env").write_text(f"DLT_PROJECT={name}\nDLT_IMAGE={base_image}\nDLT_GPUS=none\n"
                                  "DLT_TRAIN_CMD=sh -c 'echo ran > /workspace/ran.txt'\n")
    for f in ("tasks.py", "fabfile.py"):
        (project / f).write_text("from dltasks.tasks import ns  # noqa: F401\n")
    return project


def _ours(engine: object, proj: Path) -> list[object]:
    name = (proj / ".env").read_text().split("DLT_PROJECT=")[1].split()[0]
    return engine.containers.list(  # type: ignore[attr-defined, no-any-return]
        ignore_removed=True, all=True, filters={"label": f"dltasks.project={name}"})


def _assert_help(r: subprocess.CompletedProcess[str], binary: str, task: str) -> None:
    assert r.returncode == 0, (task, r.stdout, r.stderr)
    assert f"Usage: {binary}" in r.stdout and f" {task} " in r.stdout, (task, r.stdout)
    assert "Docstring:" in r.stdout and "Options:" in r.stdout, (task, r.stdout)


@pytest.mark.parametrize("task", sorted(ns.task_names))
def test_dlt_task_h_prints_help_and_starts_nothing(task: str, proj: Path,
                                                   engine: object) -> None:
    for flag in ("-h", "--help"):
        r = dlt(task, flag, cwd=proj, timeout=120)
        _assert_help(r, "dlt", task)
    assert _ours(engine, proj) == []
    assert not (proj / "runs").exists() and not (proj / "ran.txt").exists()


@pytest.mark.parametrize("binary", ["inv", "fab"])
def test_inv_and_fab_train_h_print_help_and_start_nothing(binary: str, proj: Path,
                                                          engine: object) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    for task in ("train", "shell", "test-gpu", "stop", "logs"):
        r = subprocess.run([str(BIN / binary), task, "-h"], cwd=proj, env=env, text=True,
                           capture_output=True, timeout=120)
        _assert_help(r, binary if binary == "fab" else "inv", task)
    assert _ours(engine, proj) == []
    assert not (proj / "runs").exists() and not (proj / "ran.txt").exists()


def test_train_short_flags_still_work(proj: Path, engine: object) -> None:
    """The reviewed short flags do what their long names do: `-d` detaches, `-g` selects."""
    r = dlt("train", "-g", "none", "-d", cwd=proj, timeout=300)
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.strip().splitlines()[-1].split()[-1]
    assert (proj / "runs" / run_id).is_dir(), r.stdout
    try:
        w = dlt("logs", run_id, "-f", cwd=proj, timeout=300)
        assert w.returncode == 0, w.stderr
        assert (proj / "ran.txt").read_text() == "ran\n"
    finally:
        for c in _ours(engine, proj):
            c.remove(force=True)  # type: ignore[attr-defined]
