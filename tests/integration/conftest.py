"""Fixtures shared by the remote-host modules (real sshd on loopback, see tests/sshd_harness)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sshd_harness import Lab, fresh_lab


@pytest.fixture
def ssh_lab() -> Lab:
    """gpu1/gpu2/gpu2j up (made once per process), known_hosts holding their real keys."""
    return fresh_lab()


@pytest.fixture
def remote_project(tmp_path: Path, ssh_lab: Lab) -> Iterator[tuple[Path, str]]:
    """A project with a unique remote folder; the remote copies are removed afterwards."""
    d = tmp_path / "proj"
    d.mkdir()
    (d / "main.py").write_text("print('hi')\n")
    name = "t-" + uuid.uuid4().hex[:8]
    (d / ".env").write_text(f"DLT_REMOTE_DIR=~/dltasks/{name}\n")
    yield d, name
    for host in ssh_lab.hosts.values():
        shutil.rmtree(host.home / "dltasks" / name, ignore_errors=True)
