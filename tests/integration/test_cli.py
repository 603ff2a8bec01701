"""The three front ends show one collection, and listing it stays light."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


#: What a local `dlt train` must not import: the heavy clients it does not need (runs speak
#: the Engine API through dltasks' own standard-library client).
_NOT_ON_THE_RUN_PATH = ("docker", "requests", "fabric", "paramiko")


@pytest.mark.docker
def test_a_real_dlt_train_imports_nothing_heavy(tmp_path: Path, base_image: str) -> None:
    (tmp_path / ".env").write_text(f"DLT_IMAGE={base_image}\nDLT_GPUS=none\n"
                                   "DLT_TRAIN_CMD=echo ran\n")
    probe = ("import sys\nfrom dltasks.cli import program\n"
             "try:\n    program.run(['dlt', 'train'])\nexcept SystemExit as e:\n"
             "    assert not e.code, e.code\n"
             f"print('HEAVY', [m for m in {_NOT_ON_THE_RUN_PATH!r} if m in sys.modules])\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    r = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, text=True,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "ran\n" in r.stdout and "HEAVY []" in r.stdout, r.stdout + r.stderr


def test_invoke_mock_context_and_yaml_config_files_work_with_dlt(tmp_path: Path) -> None:
    probe = ("import sys, dltasks.cli\n"
             "from invoke import MockContext, Result\n"
             "assert MockContext(run=Result('mocked')).run('x').stdout == 'mocked'\n"
             "import unittest.mock\n"
             "assert isinstance(unittest.mock.Mock(), unittest.mock.Mock)\n"
             "print('OK')\n")
    r = subprocess.run([sys.executable, "-c", probe], text=True, capture_output=True)
    assert r.stdout.strip() == "OK", r.stderr
    # a YAML config file given to dlt is read (invoke's YAML parser)
    (tmp_path / "conf.yaml").write_text("dlt:\n  workdir: /from-yaml-file\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    out = subprocess.run([sys.executable, "-m", "dltasks", "-f", str(tmp_path / "conf.yaml"),
                          "config"], cwd=tmp_path, env=env, text=True, capture_output=True,
                         check=True).stdout
    assert re.search(r"^DLT_WORKDIR\s+/from-yaml-file\s+config$", out, re.MULTILINE), out
