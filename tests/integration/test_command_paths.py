"""Paths in the command itself (DLT_TRAIN_CMD) go through the path map, in every mode.

Each test names the outputs root by its laptop path in DLT_TRAIN_CMD; the file the run writes
there must land in the host's outputs folder (never the container's own filesystem): this
machine, `fab -H gpu1`, a 2-node job over two sshd hosts, and Slurm (the real lab).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import dlt

pytestmark = [pytest.mark.docker]

#: Writes rank<RANK>.txt into the folder named by its first argument.
WRITER = ("import os, pathlib, sys\n"
          "out = pathlib.Path(sys.argv[1])\n"
          "(out / f\"rank{os.environ.get('RANK', '0')}.txt\").write_text(str(out))\n"
          "print('wrote', out)\n")


def _project(d: Path, image: str, outputs: str, extra: str = "") -> None:
    (d / "writer.py").write_text(WRITER)
    with (d / ".env").open("a") as f:
        f.write(f"DLT_IMAGE={image}\nDLT_GPUS=none\nDLT_OUTPUT_DIR={outputs}\n"
                f"DLT_TRAIN_CMD=python3 writer.py {d / 'outputs'}\n{extra}")


def _leftovers(engine: Any, project: str) -> list[Any]:
    found: list[Any] = engine.containers.list(
        ignore_removed=True, all=True, filters={"label": f"dltasks.project={project}"})
    return found


def test_local_run_writes_to_the_outputs_root_named_in_the_command(
        project: Path, base_image: str, engine: Any) -> None:
    _project(project, base_image, "outputs",
             "DLT_PROJECT=cmdpaths\nHF_TOKEN=hf_secret_value_1\n"
             "DLT_SUDO_PASSWORD=sudo-secret-2\n")
    r = dlt("train", cwd=project)
    assert r.returncode == 0, r.stderr
    assert "wrote /outputs" in r.stdout
    assert (project / "outputs" / "rank0.txt").read_text() == "/outputs"
    (folder,) = (project / "runs").iterdir()
    record = json.loads((folder / "manifest.json").read_text())
    assert record["command"] == ["python3", "writer.py", "/outputs"]
    # the run's folder is its user's alone
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert _leftovers(engine, "cmdpaths") == []


def test_the_container_sees_env_files_without_dlt_settings(
        project: Path, base_image: str) -> None:
    (project / ".env").write_text(
        f"DLT_IMAGE={base_image}\nDLT_GPUS=none\n# keep me\nMY_VAR=1\n"
        "DLT_SUDO_PASSWORD=sudo-secret-3\nDLT_TRAIN_CMD=cat .env .env.gpu9\n")
    (project / ".env.gpu9").write_text("DLT_DATA_DIR=/nowhere\nOTHER=2\n")
    r = dlt("train", cwd=project)
    assert r.returncode == 0, r.stderr
    assert "# keep me\nMY_VAR=1\n" in r.stdout and "OTHER=2" in r.stdout
    assert "DLT_" not in r.stdout and "sudo-secret-3" not in r.stdout
    assert "DLT_SUDO_PASSWORD=sudo-secret-3" in (project / ".env").read_text()  # untouched


def test_an_unmapped_path_in_the_command_is_refused_in_one_line(
        project: Path, base_image: str, engine: Any) -> None:
    _project(project, base_image, "outputs", "DLT_PROJECT=cmdrefused\n")
    elsewhere = f"{Path.home()}/dlt-not-mounted"   # a host path: its folder is here
    r = dlt("train", cwd=project, env={"DLT_TRAIN_CMD": f"python3 writer.py {elsewhere}"})
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert f"{elsewhere} (DLT_TRAIN_CMD)" in lines[0] and "--allow-unmapped" in lines[0]
    assert not (project / "runs").exists()
    assert _leftovers(engine, "cmdrefused") == []


@pytest.mark.ssh
def test_remote_run_maps_the_laptop_path_in_the_command(
        ssh_lab: Any, remote_project: tuple[Path, str], base_image: str) -> None:
    from tests.sshd_harness import fab

    d, name = remote_project
    _project(d, base_image, "outputs")
    r = fab("-H", "gpu1", "train", cwd=d, env=ssh_lab.env())
    assert r.returncode == 0, r.stdout + r.stderr
    host_out = Path(ssh_lab.hosts["gpu1"].home) / "dltasks" / name / "outputs"
    assert (host_out / "rank0.txt").read_text() == "/outputs"
    assert not (d / "outputs" / "rank0.txt").exists()  # written on gpu1, not here


@pytest.mark.ssh
@pytest.mark.slow
def test_two_node_job_maps_the_path_in_the_command_on_each_host(
        ssh_lab: Any, remote_project: tuple[Path, str], torch_image: str, engine: Any) -> None:
    from tests.sshd_harness import fab

    d, name = remote_project
    _project(d, torch_image, "outputs", "DLT_STOP_TIMEOUT=2\n")
    r = fab("-H", "gpu1,gpu2", "train", "--nnodes", "2", cwd=d, env=ssh_lab.env(), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for host, rank in (("gpu1", 0), ("gpu2", 1)):
        out = Path(ssh_lab.hosts[host].home) / "dltasks" / name / "outputs"
        assert (out / f"rank{rank}.txt").read_text() == "/outputs", host
    assert engine.containers.list(
            ignore_removed=True, all=True, filters={"label": "dltasks.node"}) == []


@pytest.mark.slow
def test_slurm_run_maps_the_path_in_the_command(
        project: Path, torch_image: str, slurm_lab: dict[str, str], engine: Any) -> None:
    _project(project, torch_image, str(project / "outputs"), "GLOO_SOCKET_IFNAME=lo\n")
    (project / "outputs").mkdir()
    r = dlt("train", "--slurm", "--nodes", "1", cwd=project, env=slurm_lab, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (project / "outputs" / "rank0.txt").read_text() == "/outputs"
    (folder,) = (project / "runs").iterdir()
    assert not os.stat(folder).st_mode & 0o077
