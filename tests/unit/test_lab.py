"""notebook/tensorboard's pure parts: their --port, and the read-only plan and token env."""

from __future__ import annotations

from pathlib import Path

import pytest

from dltasks.engine.spec import PortBinding, docker_run_cmdline
from dltasks.errors import DltError
from dltasks.runs.plan import RunRequest
from dltasks.tasks.lab import NOTEBOOK_PORT, _port
from tests.unit.test_runplan import plan, plan_project


def test_port_default_is_the_programs_port_with_a_free_host_port() -> None:
    assert _port(None, NOTEBOOK_PORT, "notebook") == PortBinding(NOTEBOOK_PORT)
    assert _port(["8890:8888"], NOTEBOOK_PORT, "notebook") == PortBinding(8888, 8890)
    assert _port(["8888"], NOTEBOOK_PORT, "notebook") == PortBinding(8888)


@pytest.mark.parametrize("values", [["9999"], ["8890:9999"], ["8888", "6006"]])
def test_port_other_than_the_programs_is_one_line(values: list[str]) -> None:
    with pytest.raises(DltError) as e:
        _port(values, NOTEBOOK_PORT, "notebook")
    assert "--port HOST:8888" in e.value.message and "\n" not in e.value.message


def test_readonly_request_makes_every_mount_read_only(tmp_path: Path) -> None:
    s = plan_project(tmp_path, dotenv="DLT_OUTPUT_DIR=outputs\n")
    rw = plan(s, RunRequest(kind="tensorboard", command="tensorboard"))
    assert any(not m.readonly for m in rw.spec.mounts)
    ro = plan(s, RunRequest(kind="tensorboard", command="tensorboard", readonly=True))
    assert [m.target for m in ro.spec.mounts] == [m.target for m in rw.spec.mounts]
    assert all(m.readonly for m in ro.spec.mounts)


def test_request_env_reaches_the_container_masked_in_the_docker_run_line(
        tmp_path: Path) -> None:
    s = plan_project(tmp_path)
    p = plan(s, RunRequest(kind="notebook", command="jupyter-lab",
                           env=(("JUPYTER_TOKEN", "s3cr3t-token-value"),)))
    assert p.spec.env["JUPYTER_TOKEN"] == "s3cr3t-token-value"
    line = docker_run_cmdline(p.spec)
    assert "s3cr3t-token-value" not in line and "JUPYTER_TOKEN=****" in line
