"""`context HOST`: a docker context reaching a host's engine over ssh (real sshd lab, the real
docker CLI, which runs the system ``ssh`` and ``docker system dial-stdio`` on the host).

OpenSSH reads ``~/.ssh/config`` from the password database, not $HOME, so the client side is
an ``ssh`` first on PATH that runs the real one with the lab's config, key and known_hosts
(as :meth:`tests.sshd_harness.Lab.ssh_argv` does). DOCKER_CONFIG is a temporary folder: the
real user's docker contexts are never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import dlt
from tests.sshd_harness import Lab, fab, lab_project

pytestmark = [pytest.mark.ssh, pytest.mark.docker]


@pytest.fixture
def client(tmp_path: Path, ssh_lab: Lab) -> dict[str, str]:
    """The lab's client environment with the lab's ssh on PATH and a private DOCKER_CONFIG."""
    if shutil.which("docker") is None:
        pytest.fail("the docker CLI is not installed (it makes the contexts under test)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = shutil.which("ssh") or "/usr/bin/ssh"
    lab_ssh = ssh_lab.ssh_argv("gpu1")[1:-3]  # -F, -i, known_hosts (BatchMode: ours to set)
    (bin_dir / "ssh").write_text("#!/bin/sh\nexec " + " ".join([real, *lab_ssh]) + ' "$@"\n')
    (bin_dir / "ssh").chmod(0o755)
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    return ssh_lab.env(PATH=f"{bin_dir}:{os.environ['PATH']}", DOCKER_CONFIG=str(docker_config))


def _docker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], env=env, text=True, capture_output=True,
                          timeout=120)


@pytest.fixture
def proj(tmp_path: Path, ssh_lab: Lab, base_image: str,
         engine: Any) -> Iterator[tuple[Path, str]]:
    with lab_project(tmp_path, ssh_lab, f"DLT_IMAGE={base_image}\nDLT_GPUS=none\n"
                     "DLT_TRAIN_CMD=sleep 300\n", prefix="ctx", engine=engine) as made:
        yield made


def test_context_reaches_the_hosts_engine_and_updates_idempotently(
        ssh_lab: Lab, client: dict[str, str], proj: tuple[Path, str]) -> None:
    d, name = proj
    g1 = ssh_lab.hosts["gpu1"]
    url = f"ssh://{g1.user}@gpu1:{g1.port}"
    r = dlt("context", "gpu1", cwd=d, env=client)
    assert r.returncode == 0, r.stderr
    assert f"docker context gpu1 created: {url}" in r.stdout
    assert "docker --context gpu1 ps" in r.stdout and "Attach to Running Container" in r.stdout
    assert _docker(client, "context", "show").stdout.strip() == "default"  # never `use`d

    started = fab("-H", "gpu1", "train", "--detach", cwd=d, env=ssh_lab.env())
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.split()[-1]
    ps = _docker(client, "--context", "gpu1", "ps", "--filter", f"label=dltasks.run={run_id}",
                 "--format", "{{.Names}} {{.Label \"dltasks.host\"}}")
    assert ps.returncode == 0, ps.stderr
    assert ps.stdout.split() == [f"dlt-{name}-{run_id}", "gpu1"]

    # the user's own description of the context: running `context` again never rewrites it
    described = _docker(client, "context", "update", "gpu1", "--description", "my gpu box")
    assert described.returncode == 0, described.stderr
    again = dlt("context", "gpu1", cwd=d, env=client)
    assert again.returncode == 0 and f"docker context gpu1 up to date: {url}" in again.stdout
    described = _docker(client, "context", "ls", "--format", "{{.Name}}={{.Description}}")
    assert "gpu1=my gpu box" in described.stdout.splitlines(), described.stdout
    through_fab = fab("-H", "gpu1", "context", cwd=d, env=client)
    assert through_fab.returncode == 0, through_fab.stderr
    assert f"docker context gpu1 up to date: {url}" in through_fab.stdout
    listed = _docker(client, "context", "ls", "--format", "{{.Name}}").stdout.split()
    assert sorted(listed) == ["default", "gpu1"]

    # inv, and fab with no -H, take the host as --host (invoke's parser has no optional
    # positional word); without it, one line naming both ways
    (d / "tasks.py").write_text("from dltasks.tasks import ns  # noqa: F401\n")
    by_inv = subprocess.run([sys.executable, "-m", "invoke", "context", "--host", "gpu1"],
                            cwd=d, env=client, text=True, capture_output=True, timeout=300)
    assert by_inv.returncode == 0 and f"gpu1 up to date: {url}" in by_inv.stdout, by_inv.stderr
    by_fab = fab("context", "--host", "gpu1", cwd=d, env=client)
    assert by_fab.returncode == 0 and f"gpu1 up to date: {url}" in by_fab.stdout, by_fab.stderr
    bare = fab("context", cwd=d, env=client)
    assert bare.returncode == 2
    assert bare.stderr.strip().splitlines() == [
        "dlt: error: context needs a host: `fab context --host HOST` (or `fab -H HOST context`)"]


def test_a_context_pointing_elsewhere_is_refused_without_force(
        client: dict[str, str], proj: tuple[Path, str], ssh_lab: Lab) -> None:
    d, _ = proj
    made = _docker(client, "context", "create", "mine", "--docker",
                   "host=ssh://someone@elsewhere.invalid")
    assert made.returncode == 0, made.stderr
    r = dlt("context", "gpu1", "--name", "mine", cwd=d, env=client)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "dlt: error: docker context mine exists and points at ssh://someone@elsewhere.invalid, "
        f"not ssh://dltgpu1@gpu1:{ssh_lab.hosts['gpu1'].port}: pass --name OTHER, or --force "
        "to point it at gpu1"]
    host = "{{.Endpoints.docker.Host}}"
    assert _docker(client, "context", "inspect", "mine", "--format", host).stdout.strip() == \
        "ssh://someone@elsewhere.invalid"
    forced = dlt("context", "gpu1", "--name", "mine", "--force", cwd=d, env=client)
    assert forced.returncode == 0 and "docker context mine updated" in forced.stdout
    assert _docker(client, "--context", "mine", "version", "--format",
                   "{{.Server.Version}}").stdout.strip()


def test_a_host_ssh_cannot_reach_leaves_no_context(client: dict[str, str],
                                                   proj: tuple[Path, str]) -> None:
    d, _ = proj
    r = dlt("context", "dlt-no-such-host.invalid", cwd=d, env=client)
    assert r.returncode == 1
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("dlt: error: ssh to dlt-no-such-host.invalid (ssh://"), line
    assert "`dlt context dlt-no-such-host.invalid` again" in line
    listed = _docker(client, "context", "ls", "--format", "{{.Name}}").stdout.split()
    assert listed == ["default"]
