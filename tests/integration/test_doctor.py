"""`dlt doctor` against failure states made for real on this machine.

- engine stopped: DLT_DOCKER_HOST at a socket path where nothing listens (the shared engine is
  never stopped), both with no socket file and with a stale one;
- a user outside the docker group: a throwaway system user runs doctor against the real socket;
- an engine without an NVIDIA runtime: the real local engine (a GPU container really fails);
- a tiny /dev/shm: DLT_SHM_SIZE=1m measured inside a real container;
- a stale project image: built for real, then the requirements change.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import dlt
from tests.users import User, throwaway_user

pytestmark = pytest.mark.docker


def _no_probe_left(engine: object) -> None:
    left = engine.containers.list(  # type: ignore[attr-defined]
            ignore_removed=True, all=True, filters={"label": "dltasks.probe"})
    assert left == [], f"probe containers left behind: {[c.name for c in left]}"


def test_engine_stopped_no_socket(project: Path) -> None:
    sock = project / "nothing.sock"
    t0 = time.monotonic()
    r = dlt("doctor", cwd=project, env={"DLT_DOCKER_HOST": f"unix://{sock}"})
    assert time.monotonic() - t0 < 15
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"ERROR engine        cannot reach the Docker engine at unix://{sock} " \
           "(DLT_DOCKER_HOST from environment): no socket there (the engine is not running)" \
           in r.stdout
    assert "fix: start it (`sudo " in r.stdout
    assert "Traceback" not in r.stderr
    # nothing else is checked against an engine that is not there
    assert "shm" not in r.stdout and "toolkit" not in r.stdout


def test_engine_stopped_stale_socket(project: Path) -> None:
    path = project / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))  # bound, never listening: what a crashed dockerd leaves behind
    try:
        r = dlt("doctor", "--no-gpu", cwd=project, env={"DLT_DOCKER_HOST": f"unix://{path}"})
    finally:
        s.close()
    assert r.returncode == 1
    assert "connection refused (nothing listens there)" in r.stdout


def test_engine_without_nvidia_runtime(project: Path, engine: object, base_image: str) -> None:
    if "nvidia" in (engine.info().get("Runtimes") or {}):  # type: ignore[attr-defined]
        pytest.skip("this engine has an nvidia runtime; the failure state cannot be made here")
    r = dlt("doctor", cwd=project, env={"DLT_BASE_IMAGE": base_image})
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    toolkit = next(ln for ln in lines if ln.startswith("ERROR toolkit"))
    # the real engine's own error from a real GPU container start
    assert "the engine has no nvidia runtime (a GPU container fails: could not select device " \
           "driver)" in toolkit
    assert "fix: run `dlt install-nvidia-docker`" in r.stdout
    assert any(ln.startswith("ok    engine") for ln in lines)
    _no_probe_left(engine)


def test_no_gpu_skips_gpu_checks_and_passes_here(project: Path, engine: object,
                                                 base_image: str) -> None:
    r = dlt("doctor", "--no-gpu", cwd=project, env={"DLT_BASE_IMAGE": base_image})
    assert "driver" not in r.stdout and "toolkit" not in r.stdout
    assert "ok    shm           /dev/shm is" in r.stdout  # --ipc=host: the host's /dev/shm
    assert "(--ipc=host)" in r.stdout
    # the disk line reports the engine's real root dir and a real df figure
    root = engine.info()["DockerRootDir"]  # type: ignore[attr-defined]
    assert f"free at {root}" in r.stdout
    _no_probe_left(engine)


def test_tiny_shm(project: Path, engine: object, base_image: str) -> None:
    env = {"DLT_BASE_IMAGE": base_image, "DLT_SHM_SIZE": "1m"}
    r = dlt("doctor", "--no-gpu", "--min-shm", "64m", cwd=project, env=env)
    assert "WARN  shm           /dev/shm is 1.0 MiB in a run (--shm-size=1m); want at least " \
           "64.0 MiB" in r.stdout, r.stdout
    assert "fix: set DLT_SHM_SIZE=1g" in r.stdout
    big = dlt("doctor", "--no-gpu", "--min-shm", "64m", cwd=project,
              env={**env, "DLT_SHM_SIZE": "128m"})
    assert "ok    shm           /dev/shm is 128.0 MiB in a run (--shm-size=128m)" in big.stdout
    _no_probe_left(engine)


def test_bad_size_flag_is_one_line(project: Path) -> None:
    r = dlt("doctor", "--min-shm", "lots", cwd=project)
    assert r.returncode == 1
    assert r.stderr.strip() == "dlt: error: not a size: 'lots': write sizes like 512m or 16g"


def test_stale_project_image(project: Path, engine: object, base_image: str) -> None:
    name = f"dlt-doctor-{uuid.uuid4().hex[:8]}"
    env = {"DLT_BASE_IMAGE": base_image, "DLT_PROJECT": name}
    try:
        built = dlt("extend-image", cwd=project, env=env)
        assert built.returncode == 0, built.stdout + built.stderr
        fresh = dlt("doctor", "--no-gpu", cwd=project, env=env)
        assert "ok    image         the project image matches its requirements" in fresh.stdout
        (project / "requirements.txt").write_text("requests==2.32.3\n")
        stale = dlt("doctor", "--no-gpu", cwd=project, env=env)
        assert f"WARN  image         project image not current: {name}:latest was built from " \
               "other inputs" in stale.stdout, stale.stdout
        assert "fix: run `dlt extend-image`" in stale.stdout
    finally:
        for img in engine.images.list(name=name):  # type: ignore[attr-defined]
            for tag in img.tags:
                engine.images.remove(tag, noprune=False)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# a real user outside the docker group


@pytest.fixture
def outsider() -> Iterator[User]:
    """A throwaway system user (not in docker, no sudo) with a project folder."""
    with throwaway_user() as user:
        (user.home / "proj").mkdir()
        shutil.chown(user.home / "proj", user.name)
        yield user


def _as(user: User, *args: str, stale_session: bool = False) -> subprocess.CompletedProcess[str]:
    return user.run(*args, cwd=user.home / "proj", stale_session=stale_session, timeout=120)


def test_user_outside_docker_group(outsider: User, engine: object) -> None:
    user = outsider
    groups = subprocess.run(["id", "-Gn", user.name], text=True, capture_output=True).stdout.split()
    assert "docker" not in groups
    r = _as(user, "doctor")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ERROR engine        permission denied on the Docker socket at " \
           "unix:///var/run/docker.sock (the default socket)" in r.stdout, r.stdout + r.stderr
    assert f"`sudo usermod -aG docker {user.name}`, then log out and in again" in r.stdout


def test_setup_without_sudo_rights(outsider: User, engine: object) -> None:
    """setup as a user with no sudo: the group step fails with the one-line sudo error and
    nothing hangs waiting for a password."""
    user = outsider
    r = _as(user, "setup", "--no-gpu")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    fix = next(ln for ln in r.stdout.splitlines() if ln.startswith("fix docker group:"))
    if shutil.which("sudo"):
        assert "no sudo rights on local" in fix
        assert "run as a user in the sudoers, or as root" in fix
    else:
        assert "sudo is not installed on local: install it, or run as root" in fix
    rows = {ln[:18].strip(): ln[18:].split(None, 1) for ln in r.stdout.splitlines()
            if ln[:18].strip() in ("docker engine", "docker group", ".env")}
    assert rows["docker engine"] == ["failed", "permission denied on unix:///var/run/docker.sock"]
    assert rows["docker group"][0] == "failed"
    # .env is still written (it needs no root), and the verdict says it is incomplete
    assert (user.home / "proj" / ".env").is_file()
    assert r.stdout.splitlines()[-1].startswith("setup incomplete")


def test_user_in_docker_group(outsider: User, engine: object) -> None:
    """The same throwaway user once added to the docker group: doctor and setup pass the
    engine and group checks, and setup needs no sudo at all (nothing to change)."""
    user = outsider
    subprocess.run(["usermod", "-aG", "docker", user.name], check=True)
    r = _as(user, "doctor", "--no-gpu")
    assert "ok    engine        Docker engine" in r.stdout, r.stdout + r.stderr
    s = _as(user, "setup", "--no-gpu", "--dry-run")
    ok = f"docker group      ok            {user.name} is in the docker group"
    assert ok in s.stdout, s.stdout


def test_group_added_but_session_predates_it(outsider: User, engine: object) -> None:
    user = outsider
    subprocess.run(["usermod", "-aG", "docker", user.name], check=True)
    r = _as(user, "doctor", "--no-gpu", stale_session=True)
    assert r.returncode == 1
    assert "ERROR engine        permission denied on the Docker socket" in r.stdout, r.stdout
    assert "fix: your account is in the docker group but this login session predates it: " \
           "log out and in again (or run `newgrp docker`)" in r.stdout
    s = _as(user, "setup", "--no-gpu", stale_session=True)
    assert s.returncode == 1
    assert f"{user.name} is in the docker group, but this login predates it" in s.stdout
    assert "==>" not in s.stdout  # nothing to run: no sudo attempted
