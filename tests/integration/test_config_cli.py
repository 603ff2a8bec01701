"""Settings precedence through the real programs: invoke config file < .env < DLT_* < flags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

INV = Path(sys.executable).parent / "inv"


def _run(*argv: str, cwd: Path,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    full.update(env or {})
    return subprocess.run([str(INV), *argv], cwd=cwd, env=full, text=True, capture_output=True)


def _rows(out: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0].startswith("DLT_"):
            rows[parts[0]] = (" ".join(parts[1:-1]), parts[-1])
    return rows


def test_each_layer_overrides_the_one_below_and_config_says_where(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text("from dltasks.tasks import ns  # noqa: F401\n")
    (tmp_path / "invoke.yaml").write_text(
        "dlt:\n  workdir: /from-config\n  train_cmd: python config.py\n  shm_size: 1g\n"
        "  base_image: config-base:1\n")
    (tmp_path / ".env").write_text("DLT_TRAIN_CMD=python dotenv.py\nDLT_SHM_SIZE=2g\n"
                                   "DLT_BASE_IMAGE=dotenv-base:1\nHF_TOKEN=hf_secret_value\n")
    r = _run("config", cwd=tmp_path, env={"DLT_SHM_SIZE": "3g", "DLT_BASE_IMAGE": "env-base:1"})
    assert r.returncode == 0, r.stderr
    rows = _rows(r.stdout)
    assert rows["DLT_WORKDIR"] == ("/from-config", "config")
    assert rows["DLT_TRAIN_CMD"] == ("python dotenv.py", ".env:1")
    assert rows["DLT_SHM_SIZE"] == ("3g", "environment")
    assert rows["DLT_GPUS"] == ("auto", "default")
    assert "HF_TOKEN=****" in r.stdout and "hf_secret_value" not in r.stdout

    # The top layer: a flag beats the environment (extend-image --print needs no engine).
    p = _run("extend-image", "--print", "--base-image", "flag-base:1", cwd=tmp_path,
             env={"DLT_BASE_IMAGE": "env-base:1"})
    assert p.returncode == 0, p.stderr
    assert "FROM flag-base:1" in p.stdout
    e = _run("extend-image", "--print", cwd=tmp_path, env={"DLT_BASE_IMAGE": "env-base:1"})
    assert "FROM env-base:1" in e.stdout


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text("from dltasks.tasks import ns  # noqa: F401\n")
    cases = [
        ("DLT_TRAIN_CMD=x\nnot a line\n", ".env:2"),
        ("DLT_TRAIN_CMDD=x\n", "did you mean DLT_TRAIN_CMD?"),
        ("DLT_STOP_TIMEOUT=soon\n", "expected a whole number"),
    ]
    for text, needle in cases:
        (tmp_path / ".env").write_text(text)
        r = _run("config", cwd=tmp_path)
        assert r.returncode == 1
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and needle in lines[0], r.stderr
