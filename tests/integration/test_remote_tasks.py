"""The other tasks through `fab -H gpu1` on a real sshd host: images, onboarding, GPUs, stop.

gpu1 is a real account (dltgpu1, in group docker, no sudo) behind sshd on 127.0.0.2; its engine
is the local one reached through the SSH connection.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sshd_harness import Lab, fab, lab_project

pytestmark = [pytest.mark.ssh, pytest.mark.docker]


@pytest.fixture
def proj(tmp_path: Path,
         ssh_lab: Lab,
         base_image: str,
         engine: object) -> Iterator[tuple[Path, str]]:
    with lab_project(tmp_path, ssh_lab, f"DLT_BASE_IMAGE={base_image}\nDLT_GPUS=none\n",
                     prefix="rt", engine=engine) as made:
        yield made
    name = made[1]
    for img in engine.images.list(name=name) + engine.images.list(  # type: ignore[attr-defined]
            name=f"{name}-build"):
        for tag in img.tags:
            engine.images.remove(tag, force=True)  # type: ignore[attr-defined]


def _one_error_line(stderr: str) -> str:
    """The one error line (progress lines such as sync's may come before it)."""
    errors = [ln for ln in stderr.splitlines() if ln.startswith("dlt: error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == errors[0], stderr
    return errors[0]


def test_extend_image_and_build_on_the_remote_engine(ssh_lab: Lab, proj: tuple[Path, str],
                                                     engine: object) -> None:
    d, name = proj
    r = fab("-H", "gpu1", "extend-image", cwd=d, env=ssh_lab.env())
    assert r.returncode == 0, r.stdout + r.stderr
    img = engine.images.get(f"{name}:latest")  # type: ignore[attr-defined]
    assert img.labels["dltasks.hash"]
    again = fab("-H", "gpu1", "extend-image", cwd=d, env=ssh_lab.env())
    assert again.returncode == 0 and "up to date" in again.stdout + again.stderr

    (d / "ctx").mkdir()
    (d / "ctx" / "Dockerfile").write_text("ARG WHO=nobody\nFROM dlt-test-base:latest\n"
                                          "ARG WHO\nRUN echo built-by-$WHO > /who\n")
    b = fab("-H", "gpu1", "build", "--path", "ctx", "--tag", f"{name}-build:1",
            "--build-arg", "WHO=gpu1", cwd=d, env=ssh_lab.env())
    assert b.returncode == 0, b.stdout + b.stderr
    out = engine.containers.run(f"{name}-build:1", ["cat", "/who"], remove=True)  # type: ignore[attr-defined]
    assert out.decode().strip() == "built-by-gpu1"


def test_train_detached_then_stop_remotely(ssh_lab: Lab, proj: tuple[Path, str],
                                           engine: object) -> None:
    d, name = proj
    with (d / ".env").open("a") as f:
        f.write("DLT_IMAGE=dlt-test-base:latest\nDLT_TRAIN_CMD=sleep 300\n")
    r = fab("-H", "gpu1", "train", "--detach", cwd=d, env=ssh_lab.env())
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.split()[-1]
    running = engine.containers.list(  # type: ignore[attr-defined]
            ignore_removed=True, filters={"label": f"dltasks.run={run_id}"})
    assert len(running) == 1 and running[0].labels["dltasks.host"] == "gpu1"
    s = fab("-H", "gpu1", "stop", run_id, cwd=d, env=ssh_lab.env())
    assert s.returncode == 0, s.stderr
    assert f"stopped {run_id} on gpu1" in s.stdout
    assert engine.containers.list(  # type: ignore[attr-defined]
        ignore_removed=True, all=True, filters={"label": f"dltasks.run={run_id}"}) == []


def test_gpu_tasks_on_a_host_without_gpus_say_why_in_one_line(ssh_lab: Lab,
                                                              proj: tuple[Path, str]) -> None:
    d, _ = proj
    t = fab("-H", "gpu1", "test-gpu", "--image", "dlt-test-base:latest", cwd=d, env=ssh_lab.env())
    assert t.returncode != 0
    assert "fab -H gpu1 install-nvidia-docker" in _one_error_line(t.stderr)
    plan = fab("-H", "gpu1", "install-nvidia-docker", "--dry-run", cwd=d, env=ssh_lab.env())
    assert plan.returncode == 0, plan.stderr
    assert "nvidia-ctk runtime configure --runtime=docker" in plan.stdout
    assert "a real run stops before these: no working NVIDIA driver on gpu1" in plan.stdout
    i = fab("-H", "gpu1", "install-nvidia-docker", cwd=d, env=ssh_lab.env())  # stops before changes
    assert i.returncode != 0
    assert "no working NVIDIA driver on gpu1" in _one_error_line(i.stderr)


def test_doctor_and_setup_plan_run_through_the_host_shell(ssh_lab: Lab,
                                                          proj: tuple[Path, str]) -> None:
    d, _ = proj
    doc = fab("-H", "gpu1", "doctor", "--no-gpu", cwd=d, env=ssh_lab.env())
    assert "Traceback" not in doc.stderr
    assert "ok    engine" in doc.stdout, doc.stdout + doc.stderr
    plan = fab("-H", "gpu1", "setup", "--no-gpu", "--dry-run", cwd=d, env=ssh_lab.env())
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "dltgpu1 is in the docker group" in plan.stdout


def test_base_image_without_sudo_rights_on_the_host_is_one_line(ssh_lab: Lab,
                                                                proj: tuple[Path, str]) -> None:
    d, name = proj
    r = fab("-H", "gpu1", "base-image", "--name", f"{name}-base:1", cwd=d, env=ssh_lab.env())
    assert r.returncode != 0
    line = _one_error_line(r.stderr)
    assert "sudo" in line and "on gpu1" in line


def test_shell_on_the_remote_host_is_interactive(ssh_lab: Lab, proj: tuple[Path, str],
                                                 engine: object) -> None:
    """`fab -H gpu1 shell` through a real pty: the host's project folder at /workspace, the
    host login's uid, the exit code back, nothing left behind."""
    import os
    import pty
    import subprocess
    import sys

    from tests.integration.test_shell import _read_until

    d, name = proj
    with (d / ".env").open("a") as f:
        f.write("DLT_IMAGE=dlt-test-base:latest\n")
    (d / "marker.txt").write_text("synced-to-gpu1")
    (d / "fabfile.py").write_text("from dltasks.tasks import ns  # noqa: F401\n")
    code = "import sys; from fabric.main import program; sys.argv[0] = 'fab'; program.run()"
    parent, child = pty.openpty()
    p = subprocess.Popen([sys.executable, "-c", code, "-H", "gpu1", "shell"], cwd=d,
                         env=ssh_lab.env(), stdin=child, stdout=child, stderr=child, close_fds=True)
    os.close(child)
    try:
        assert b"/workspace" in _read_until(parent, b"/workspace", timeout=60)
        os.write(parent, b"echo RESULT $(id -u) $(cat marker.txt)\n")
        out = _read_until(parent, b"synced-to-gpu1\r\n")
        uid = subprocess.run(["id", "-u", "dltgpu1"], capture_output=True, text=True).stdout
        assert f"RESULT {uid.strip()} synced-to-gpu1".encode() in out, out
        os.write(parent, b"exit 4\n")
        assert p.wait(timeout=30) == 4
    finally:
        if p.poll() is None:
            p.kill()
        os.close(parent)
    assert engine.containers.list(  # type: ignore[attr-defined]
        ignore_removed=True, all=True, filters={"label": f"dltasks.project={name}"}) == []


def test_the_remote_users_docker_context_chooses_the_engine(proj: tuple[Path, str],
                                                            ssh_lab: Lab) -> None:
    """gpu1's own ~/.docker/config.json names a context: the run's engine is that one, as for
    `docker ps` run there; .env.gpu1 overrides it."""
    import json
    import os
    import tempfile

    from dltasks.engine.endpoint import context_id

    d, _ = proj
    home = ssh_lab.hosts["gpu1"].home
    uid, gid = os.stat(home).st_uid, os.stat(home).st_gid
    via = Path(tempfile.mkdtemp(prefix="dlt-ctx-", dir="/tmp"))
    via.chmod(0o755)
    (via / "docker.sock").symlink_to("/var/run/docker.sock")
    meta = home / ".docker" / "contexts" / "meta" / context_id("labbox")
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps(
        {"Name": "labbox", "Metadata": {},
         "Endpoints": {"docker": {"Host": f"unix://{via}/docker.sock"}}}))
    (home / ".docker" / "config.json").write_text(json.dumps({"currentContext": "labbox"}))
    for p in [home / ".docker", *(home / ".docker").rglob("*")]:
        os.chown(p, uid, gid)
    try:
        cfg = fab("-H", "gpu1", "config", cwd=d, env=ssh_lab.env())
        assert f"engine: unix://{via}/docker.sock (context labbox from currentContext of " \
               "~/.docker/config.json) on gpu1" in cfg.stdout, cfg.stdout + cfg.stderr
        assert fab("-H", "gpu1", "ps", cwd=d, env=ssh_lab.env()).returncode == 0
        (via / "docker.sock").unlink()  # the context's engine goes away: said so, by name
        r = fab("-H", "gpu1", "ps", cwd=d, env=ssh_lab.env())
        assert r.returncode == 1
        assert _one_error_line(r.stderr) == (
            f"dlt: error: cannot reach the Docker engine on gpu1: no socket at "
            f"unix://{via}/docker.sock there: start the engine there (`fab -H gpu1 setup`), "
            "or point DLT_DOCKER_HOST in .env.gpu1 at it")
        (d / ".env.gpu1").write_text("DLT_DOCKER_HOST=unix:///var/run/docker.sock\n")
        cfg = fab("-H", "gpu1", "config", cwd=d, env=ssh_lab.env())
        assert "engine: unix:///var/run/docker.sock (DLT_DOCKER_HOST from .env.gpu1:1) on " \
               "gpu1" in cfg.stdout, cfg.stdout
        assert fab("-H", "gpu1", "ps", cwd=d, env=ssh_lab.env()).returncode == 0
    finally:
        shutil.rmtree(home / ".docker", ignore_errors=True)
        shutil.rmtree(via, ignore_errors=True)
