"""Signals for real (issue 21, point 9): a signal ignored when `dlt` starts (``nohup``: SIGHUP)
stays ignored; death by signal N is exit code 128+N."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("base_image")

#: A run long enough to be sent a signal mid-way, that ends by itself with its own code.
SCRIPT = "echo started; sleep 4; echo finished; exit 5"


@pytest.fixture
def proj(project: Path, base_image: str) -> Path:
    (project / ".env").write_text(f"DLT_IMAGE={base_image}\nDLT_GPUS=none\n"
                                  "DLT_TRAIN_CMD=sh -c\n")
    return project


def env_of() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}


def records(proj: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(proj.glob("runs/*/manifest.json"))]


def containers(proj: Path) -> str:
    """The containers of this test's runs (every test's project is named proj)."""
    ids = [str(r["run_id"]) for r in records(proj)]
    found = [subprocess.run(["docker", "ps", "-aq", "--filter", f"label=dltasks.run={i}"],
                            capture_output=True, text=True, check=True).stdout.strip()
             for i in ids]
    return "\n".join(f for f in found if f)


def _started(p: subprocess.Popen[str]) -> None:
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line == "started\n", (line, p.stderr.read() if p.poll() is not None else "")


def _sig_ignored(pid: int, sig: int) -> bool:
    """Whether the kernel has ``sig`` ignored for ``pid`` (/proc's SigIgn mask)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    raise AssertionError(f"no SigIgn for {pid}")


def test_a_run_under_nohup_is_not_stopped_by_sighup(proj: Path) -> None:
    """`nohup dlt train` and a hang-up (SIGHUP to dlt, as a closing terminal sends): the run
    goes on to its end and its exit code is dlt's; the record says so."""
    env = env_of()
    p = subprocess.Popen(["nohup", sys.executable, "-m", "dltasks", "train", "--", SCRIPT],
                         cwd=proj, env=env, text=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _started(p)
        assert _sig_ignored(p.pid, signal.SIGHUP)  # nohup did its part; dlt must keep it
        os.kill(p.pid, signal.SIGHUP)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 5, err
    assert "finished" in out and "interrupted" not in err, (out, err)
    last = records(proj)[-1]
    assert last["exit_code"] == 5 and last["status"] == "exited", last
    assert not containers(proj)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGUSR1])
def test_a_command_killed_by_a_signal_is_128_plus_n(proj: Path, sig: int) -> None:
    """The command in the container dies by signal N (the OOM killer's SIGKILL, a stray
    SIGUSR1): `dlt train` exits 128+N, as a shell would, the record says so, and nothing is
    left running."""
    r = subprocess.run([sys.executable, "-m", "dltasks", "train", "--",
                        f"echo started; kill -s {signal.Signals(sig).name[3:]} $$; echo after"],
                       cwd=proj, env=env_of(), text=True, capture_output=True, timeout=120)
    assert r.returncode == 128 + sig, r.stderr[-2000:]
    assert r.stdout.startswith("started\n") and "after" not in r.stdout, r.stdout
    assert "without an exit code" not in r.stderr
    last = records(proj)[-1]
    assert last["exit_code"] == 128 + sig, last
    assert not containers(proj)
