"""The three front ends show one collection, and listing it stays light."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def _tasks(*argv: str, cwd: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    out = subprocess.run(list(argv), cwd=cwd, env=env, text=True, capture_output=True,
                         check=True).stdout
    return sorted(m.group(1) for m in re.finditer(r"^  ([a-z][a-z-]+)\s", out, re.MULTILINE))


def test_inv_fab_and_dlt_list_the_same_dashed_tasks(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text("from dltasks.tasks import ns  # noqa: F401\n")
    (tmp_path / "fabfile.py").write_text("from dltasks.tasks import ns  # noqa: F401\n")
    inv = _tasks(str(BIN / "inv"), "--list", cwd=tmp_path)
    assert inv == _tasks(str(BIN / "fab"), "--list", cwd=tmp_path)
    assert inv == _tasks(sys.executable, "-m", "dltasks", "--list", cwd=tmp_path)
    for name in ("config", "extend-image", "build", "base-image", "train", "shell", "test-gpu",
                 "ps", "logs", "stop", "runs", "setup", "doctor", "install-nvidia-docker",
                 "sync", "fetch"):
        assert name in inv


def test_listing_and_help_import_no_docker_fabric_or_paramiko(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text("from dltasks.tasks import ns  # noqa: F401\n")
    probe = ("import sys, invoke.program as p; sys.argv = ['inv', {args}]\n"
             "try:\n    p.Program(version='x').run()\nexcept SystemExit:\n    pass\n"
             "bad = [m for m in ('docker', 'fabric', 'paramiko') if m in sys.modules]\n"
             "print('HEAVY', bad)\n")
    for args in ("'--list'", "'train', '--help'"):
        out = subprocess.run([sys.executable, "-c", probe.format(args=args)], cwd=tmp_path,
                             text=True, capture_output=True, check=True).stdout
        assert "HEAVY []" in out, out


def test_repo_tasks_and_fabfile_are_the_shared_collection() -> None:
    for f in ("tasks.py", "fabfile.py"):
        assert "from dltasks.tasks import ns" in (ROOT / f).read_text()
