"""Fixtures shared by the remote-host modules (real sshd on loopback, see tests/sshd_harness)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
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


@pytest.fixture
def loopback_server() -> Iterator[Callable[[bytes | None], int]]:
    """TCP servers on 127.0.0.1 that read what a client sends and answer every connection with
    fixed bytes (``None``: accept and never answer); returns the port. Closed afterwards."""
    servers: list[socket.socket] = []

    def make(answer: bytes | None) -> int:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        servers.append(s)
        held: list[socket.socket] = []

        def serve() -> None:
            while True:
                try:
                    conn, _ = s.accept()
                except OSError:
                    return
                if answer is None:
                    held.append(conn)  # accepted, never answered
                    continue
                try:
                    conn.recv(65536)
                    conn.sendall(answer)
                except OSError:
                    pass
                time.sleep(0.05)
                conn.close()

        threading.Thread(target=serve, daemon=True).start()
        return int(s.getsockname()[1])

    yield make
    for s in servers:
        s.close()


@pytest.fixture(scope="session")
def slurm_lab() -> dict[str, str]:
    """The real two-node Slurm of dev/slurm.sh (started when it does not answer): the
    environment that points the Slurm commands at it."""
    import subprocess

    from tests.sshd_harness import _unavailable

    root = Path(__file__).resolve().parent.parent.parent
    conf = "/tmp/dlt-slurm-lab/slurm.conf"
    r = subprocess.run(["bash", str(root / "dev" / "slurm.sh")], capture_output=True,
                       text=True, timeout=600)
    if r.returncode != 0:
        _unavailable(f"no Slurm lab (dev/slurm.sh): {r.stderr.strip()[-300:]}")
    return {"SLURM_CONF": conf}


@pytest.fixture(scope="session")
def hook_torch_engine(engine: object, torch_image: str) -> Iterator[object]:
    """A private engine with the stand-in NVIDIA hook (tests/gpu_engine.py) holding the torch
    image; its network namespace's loopback is up, so host-network containers meet there."""
    from tests.gpu_engine import gpu_engine_for

    with gpu_engine_for(engine, torch_image, timeout=60, shared=True, loopback_up=True) as eng:
        yield eng
