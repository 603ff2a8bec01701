"""`dlt doctor` against failure states made for real on this machine.

- engine stopped: DLT_DOCKER_HOST at a socket path where nothing listens (the shared engine is
  never stopped), both with no socket file and with a stale one;
- a user outside the docker group: a throwaway system user runs doctor against the real socket;
- an engine without an NVIDIA runtime: the real local engine (a GPU container really fails);
- a tiny /dev/shm: DLT_SHM_SIZE=1m measured inside a real container;
- a stale project image: built for real, then the requirements change.
"""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, dlt

pytestmark = pytest.mark.docker


def _no_probe_left(engine: object) -> None:
    left = engine.containers.list(all=True, filters={"label": "dltasks.probe"})  # type: ignore[attr-defined]
    assert left == [], f"probe containers left behind: {[c.name for c in left]}"


def test_engine_stopped_no_socket(project: Path) -> None:
    sock = project / "nothing.sock"
    t0 = time.monotonic()
    r = dlt("doctor", cwd=project, env={"DLT_DOCKER_HOST": f"unix://{sock}"})
    assert time.monotonic() - t0 < 15
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"ERROR engine        cannot reach the Docker engine at unix://{sock}: no socket " \
           "there (the engine is not running)" in r.stdout
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
    assert "fix: run `inv install-nvidia-docker`" in r.stdout
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
        assert "fix: run `inv extend-image`" in stale.stdout
    finally:
        for img in engine.images.list(name=name):  # type: ignore[attr-defined]
            for tag in img.tags:
                engine.images.remove(tag, noprune=False)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------
# a real user outside the docker group


def _python_tree(dest: Path) -> None:
    """The packages dltasks needs, hard-linked into ``dest`` (the interpreter's own folder is
    under /root, which other users cannot enter; hard links are readable where they land)."""
    for name in ("invoke", "docker", "requests", "urllib3", "idna", "charset_normalizer",
                 "certifi", "dotenv", "yaml"):
        mod = importlib.import_module(name)
        src = Path(mod.__file__ or "").parent
        shutil.copytree(src, dest / name, copy_function=os.link,
                        ignore=shutil.ignore_patterns("__pycache__"))
    site = Path(importlib.import_module("charset_normalizer").__file__ or "").parent.parent
    for compiled in site.glob("*__mypyc*.so"):  # charset_normalizer's compiled helpers
        os.link(compiled, dest / compiled.name)
    shutil.copytree(ROOT / "src" / "dltasks", dest / "dltasks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for p in [dest, *dest.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


@pytest.fixture
def outsider() -> Iterator[tuple[str, Path]]:
    """A throwaway system user (not in docker, no sudo) and a folder it can use."""
    if os.geteuid() != 0 or not shutil.which("runuser") or not shutil.which("useradd"):
        pytest.skip("needs root with runuser and useradd to make a throwaway user")
    user = f"dltno{uuid.uuid4().hex[:6]}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/bash", user],
                   check=True)
    home = Path(tempfile.mkdtemp(prefix="dlt-outsider-", dir="/tmp"))
    try:
        _python_tree(home / "py")
        (home / "proj").mkdir()
        shutil.chown(home / "proj", user)
        home.chmod(0o755)
        yield user, home
    finally:
        subprocess.run(["userdel", user], check=False)
        shutil.rmtree(home, ignore_errors=True)


def _as(user: str, home: Path, *args: str,
        stale_session: bool = False) -> subprocess.CompletedProcess[str]:
    """Run dlt as ``user`` in a fresh login (runuser: groups from /etc/group), or, with
    ``stale_session``, in one that has only the user's primary group (setpriv), as a session
    started before `usermod -aG docker` has."""
    env = ["env", "-i", f"HOME={home / 'proj'}", f"PYTHONPATH={home / 'py'}",
           "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"]
    who = (["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--"]
           if stale_session else ["runuser", "-u", user, "--"])
    return subprocess.run([*who, *env, "/usr/bin/python3", "-m", "dltasks", *args],
                          cwd=home / "proj", text=True, capture_output=True, timeout=120)


def test_user_outside_docker_group(outsider: tuple[str, Path], engine: object) -> None:
    user, home = outsider
    groups = subprocess.run(["id", "-Gn", user], text=True, capture_output=True).stdout.split()
    assert "docker" not in groups
    r = _as(user, home, "doctor")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ERROR engine        permission denied on the Docker socket " \
           "(unix:///var/run/docker.sock)" in r.stdout, r.stdout + r.stderr
    assert f"`sudo usermod -aG docker {user}`, then log out and in again" in r.stdout


def test_setup_without_sudo_rights(outsider: tuple[str, Path], engine: object) -> None:
    """setup as a user with no sudo: the group step fails with the one-line sudo error and
    nothing hangs waiting for a password."""
    user, home = outsider
    r = _as(user, home, "setup", "--no-gpu")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    fix = next(ln for ln in r.stdout.splitlines() if ln.startswith("fix docker group:"))
    assert "no sudo rights on local" in fix and "run as a user in the sudoers, or as root" in fix
    rows = {ln[:18].strip(): ln[18:].split(None, 1) for ln in r.stdout.splitlines()
            if ln[:18].strip() in ("docker engine", "docker group", ".env")}
    assert rows["docker engine"] == ["failed", "permission denied on unix:///var/run/docker.sock"]
    assert rows["docker group"][0] == "failed"
    # .env is still written (it needs no root), and the verdict says it is incomplete
    assert (home / "proj" / ".env").is_file()
    assert r.stdout.splitlines()[-1].startswith("setup incomplete")


def test_user_in_docker_group(outsider: tuple[str, Path], engine: object) -> None:
    """The same throwaway user once added to the docker group: doctor and setup pass the
    engine and group checks, and setup needs no sudo at all (nothing to change)."""
    user, home = outsider
    subprocess.run(["usermod", "-aG", "docker", user], check=True)
    r = _as(user, home, "doctor", "--no-gpu")
    assert "ok    engine        Docker engine" in r.stdout, r.stdout + r.stderr
    s = _as(user, home, "setup", "--no-gpu", "--dry-run")
    assert f"docker group      ok            {user} is in the docker group" in s.stdout, s.stdout


def test_group_added_but_session_predates_it(outsider: tuple[str, Path], engine: object) -> None:
    user, home = outsider
    subprocess.run(["usermod", "-aG", "docker", user], check=True)
    r = _as(user, home, "doctor", "--no-gpu", stale_session=True)
    assert r.returncode == 1
    assert "ERROR engine        permission denied on the Docker socket" in r.stdout, r.stdout
    assert "fix: your account is in the docker group but this login session predates it: " \
           "log out and in again (or run `newgrp docker`)" in r.stdout
    s = _as(user, home, "setup", "--no-gpu", stale_session=True)
    assert s.returncode == 1
    assert f"{user} is in the docker group, but this login predates it" in s.stdout
    assert "==>" not in s.stdout  # nothing to run: no sudo attempted
