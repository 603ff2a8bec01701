"""Signals for real (issue 21, point 9): a signal ignored when `dlt` starts (``nohup``: SIGHUP)
stays ignored, cold and through the warm start; death by signal N is exit code 128+N."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_warm import (  # noqa: F401 - runtime_dir is a fixture
    containers,
    env_of,
    records,
    runtime_dir,
    start_server,
    went_warm,
)

pytestmark = pytest.mark.usefixtures("base_image")

#: A run long enough to be sent a signal mid-way, that ends by itself with its own code.
SCRIPT = "echo started; sleep 4; echo finished; exit 5"


@pytest.fixture
def proj(project: Path, base_image: str) -> Path:
    (project / ".env").write_text(f"DLT_IMAGE={base_image}\nDLT_GPUS=none\n"
                                  "DLT_TRAIN_CMD=sh -c\n")
    return project


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


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_a_run_under_nohup_is_not_stopped_by_sighup(proj: Path, runtime_dir: str,  # noqa: F811
                                                    warm: bool) -> None:
    """`nohup dlt train` and a hang-up (SIGHUP to dlt, as a closing terminal sends): the run
    goes on to its end and its exit code is dlt's; the record says so."""
    server = start_server(runtime_dir)[1] if warm else None
    env = env_of(runtime_dir, **({} if warm else {"DLT_WARM": "0"}))
    p = subprocess.Popen(["nohup", sys.executable, "-m", "dltasks", "train", "--", SCRIPT],
                         cwd=proj, env=env, text=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _started(p)
        assert _sig_ignored(p.pid, signal.SIGHUP)  # nohup did its part; dlt must keep it
        if server:  # the worker (the server's child serving us) ignores it too
            workers = _children(server.pid)
            assert len(workers) == 1 and _sig_ignored(workers[0], signal.SIGHUP), workers
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
def test_a_warm_worker_killed_by_a_signal_is_128_plus_n(proj: Path, runtime_dir: str,  # noqa: F811
                                                        sig: int) -> None:
    """The worker running our command dies by signal N (the OOM killer's SIGKILL, a stray
    SIGUSR1): the client, which is not its parent, says 128+N, as a shell would."""
    _, server = start_server(runtime_dir)
    p = subprocess.Popen([sys.executable, "-m", "dltasks", "train", "--",
                          "echo started; sleep 60"], cwd=proj, env=env_of(runtime_dir),
                         text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        _started(p)
        workers = _children(server.pid)
        assert len(workers) == 1, workers
        os.kill(workers[0], sig)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 128 + sig, err
        assert "without an exit code" not in err
    finally:
        if p.poll() is None:
            p.kill()
        # the worker had no chance to stop its container: what it left is removed here
        for run in records(proj):
            ids = subprocess.run(["docker", "ps", "-aq", "--filter",
                                  f"label=dltasks.run={run['run_id']}"],
                                 capture_output=True, text=True, check=True).stdout.split()
            if ids:
                subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
    # the server goes on serving, and reaped the worker (no zombie left)
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "dltasks", "train", "--",
                        "exit 3"], cwd=proj, env=env_of(runtime_dir), text=True,
                       capture_output=True, timeout=120)
    assert r.returncode == 3 and went_warm(r), r.stderr[-2000:]
    deadline = time.monotonic() + 30  # the worker said its code just before it exits
    while _children(server.pid):
        assert time.monotonic() < deadline, f"unreaped workers {_children(server.pid)}"
        time.sleep(0.05)
    assert server.poll() is None
