"""`shell`: an interactive terminal in the run's container setup, driven through a real pty."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker


def _read_until(fd: int, needle: bytes, timeout: float = 30) -> bytes:
    buf = b""
    end = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


def test_shell_is_interactive_with_mounts_user_and_exit_code(project: Path, base_image: str,
                                                             engine: object) -> None:
    name = f"sh{os.getpid()}"
    (project / ".env").write_text(f"DLT_PROJECT={name}\nDLT_IMAGE={base_image}\nDLT_GPUS=none\n")
    (project / "marker.txt").write_text("from-the-host")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    parent, child = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "dltasks", "shell"], cwd=project, env=env,
                         stdin=child, stdout=child, stderr=child, close_fds=True)
    os.close(child)
    try:
        assert b"/workspace" in _read_until(parent, b"/workspace")  # the prompt: bash is ready
        os.write(parent, b"echo RESULT $((6*7)) $(id -u) $PWD $(cat marker.txt)\n")
        out = _read_until(parent, b"from-the-host\r\n")
        assert f"RESULT 42 {os.getuid()} /workspace from-the-host".encode() in out, out
        os.write(parent, b"exit 3\n")
        assert p.wait(timeout=30) == 3
    finally:
        if p.poll() is None:
            p.kill()
        os.close(parent)
    left = engine.containers.list(  # type: ignore[attr-defined]
            ignore_removed=True, all=True, filters={"label": f"dltasks.project={name}"})
    assert left == []


def test_shell_reads_piped_stdin_through_the_same_pump(project: Path, base_image: str,
                                                       engine: object) -> None:
    """No terminal: the piped lines reach the container's shell (its tty), their end too."""
    name = f"shp{os.getpid()}"
    (project / ".env").write_text(f"DLT_PROJECT={name}\nDLT_IMAGE={base_image}\nDLT_GPUS=none\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    r = subprocess.run([sys.executable, "-m", "dltasks", "shell"], cwd=project, env=env,
                       input=b"echo hi-$((40+2))\nexit 3\n", capture_output=True, timeout=120)
    assert r.returncode == 3, r.stderr
    assert b"hi-42" in r.stdout, r.stdout
    left = engine.containers.list(  # type: ignore[attr-defined]
            ignore_removed=True, all=True, filters={"label": f"dltasks.project={name}"})
    assert left == []
