"""`fab -H` train on real sshd hosts: paths mapped three ways, several hosts at once.

These drive the lead's train path (tasks/run.py, launch.py) through the remote layer; the
host's project folder (/home/dltgpu1/dltasks/...) really differs from the local one (/tmp/...).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sshd_harness import Lab, fab, lab_project

pytestmark = [pytest.mark.ssh, pytest.mark.docker]


@pytest.fixture
def proj(tmp_path: Path, ssh_lab: Lab, base_image: str) -> Iterator[tuple[Path, str]]:
    with lab_project(tmp_path, ssh_lab, f"DLT_IMAGE={base_image}\nDLT_GPUS=none\n") as made:
        yield made


def _cleanup(engine: object, project: str) -> None:
    for c in engine.containers.list(  # type: ignore[attr-defined]
            ignore_removed=True, all=True, filters={"label": f"dltasks.project={project}"}):
        c.remove(force=True)


def test_remote_train_maps_configs_args_env_three_ways(
        ssh_lab: Lab, proj: tuple[Path, str], engine: object) -> None:
    d, name = proj
    local_data = d.parent / "datasets"
    (local_data / "imgs").mkdir(parents=True)
    host_data = ssh_lab.hosts["gpu1"].home / f"data-{name}"
    (host_data / "imgs").mkdir(parents=True)
    shutil.chown(host_data, "dltgpu1", "dltgpu1")
    (host_data / "imgs" / "on-gpu1.txt").write_text("gpu1's copy\n")
    with (d / ".env").open("a") as f:
        f.write(f"DLT_DATA_DIR={local_data}\nDLT_OUTPUT_DIR=outputs\n"
                f"TRAIN_LIST={local_data}/imgs\n"
                "DLT_TRAIN_CMD=sh -c 'cat config.yaml; echo \"arg=$0\"; echo \"env=$TRAIN_LIST\"; "
                "ls $TRAIN_LIST; pwd'\n")
    (d / ".env.gpu1").write_text(f"DLT_DATA_DIR={host_data}\n")
    (d / "config.yaml").write_text(f"data: {local_data}/imgs\nout: {d}/outputs/ckpt\n")
    try:
        r = fab("-H", "gpu1", "train", "--args", f"{local_data}/imgs/on-gpu1.txt", cwd=d,
                env=ssh_lab.env())
        assert r.returncode == 0, r.stderr
        out = r.stdout
        assert "data: /data/imgs" in out and "out: /outputs/ckpt" in out       # config
        assert "arg=/data/imgs/on-gpu1.txt" in out                             # argument
        assert "env=/data/imgs" in out and "on-gpu1.txt" in out               # env, host data
        assert "/workspace" in out
        assert (d / "config.yaml").read_text().startswith(f"data: {local_data}")  # untouched
        dry = fab("-H", "gpu1", "train", "--dry-run", cwd=d, env=ssh_lab.env())
        assert dry.returncode == 0, dry.stderr
        assert str(host_data) in dry.stdout and str(local_data) in dry.stdout
        assert f"/home/dltgpu1/dltasks/{name}" in dry.stdout
    finally:
        _cleanup(engine, name)


def test_missing_host_paths_listed_before_start(ssh_lab: Lab, proj: tuple[Path, str],
                                                engine: object) -> None:
    d, name = proj
    (d / ".env.gpu1").write_text(f"DLT_DATA_DIR=/home/dltgpu1/data-{name}/nope\n")
    r = fab("-H", "gpu1", "train", cwd=d, env=ssh_lab.env())
    assert r.returncode != 0
    assert f"/home/dltgpu1/data-{name}/nope" in r.stderr and "gpu1" in r.stderr
    assert not engine.containers.list(  # type: ignore[attr-defined]
        ignore_removed=True, all=True, filters={"label": f"dltasks.project={name}"})


def test_two_hosts_detached_runs(ssh_lab: Lab, proj: tuple[Path, str], engine: object) -> None:
    d, name = proj
    with (d / ".env").open("a") as f:
        f.write("DLT_TRAIN_CMD=sh -c 'echo on $DLT_RUN_ID; sleep 2'\n")
    try:
        r = fab("-H", "gpu1,gpu2", "train", "--detach", cwd=d, env=ssh_lab.env())
        assert r.returncode == 0, r.stderr
        ids = [x for x in r.stdout.split() if x.count("-") == 2 and x[:8].isdigit()]
        assert len(ids) == 2 and ids[0] != ids[1]
        hosts = {c.labels["dltasks.host"] for c in engine.containers.list(  # type: ignore[attr-defined]
            ignore_removed=True, all=True, filters={"label": f"dltasks.project={name}"})}
        assert hosts == {"gpu1", "gpu2"}
        assert (Path("/home/dltgpu2/dltasks") / name).is_dir()
        ps = fab("-H", "gpu1,gpu2", "ps", cwd=d, env=ssh_lab.env())
        assert ps.returncode == 0, ps.stderr
        assert "gpu1:" in ps.stdout and "gpu2:" in ps.stdout
        runs = fab("-H", "gpu1,gpu2", "runs", cwd=d, env=ssh_lab.env())
        assert runs.returncode == 0, runs.stderr
        assert "1 run record(s) of gpu1" in runs.stdout and "1 run record(s) of gpu2" in runs.stdout
    finally:
        _cleanup(engine, name)


def test_failed_run_on_one_host_does_not_stop_the_next(ssh_lab: Lab, proj: tuple[Path, str],
                                                       engine: object) -> None:
    d, name = proj
    with (d / ".env").open("a") as f:
        f.write("DLT_TRAIN_CMD=sh -c 'echo ran; exit 3'\n")
    (d / ".env.gpu2").write_text("DLT_TRAIN_CMD=sh -c 'echo ran fine'\n")
    try:
        r = fab("-H", "gpu1,gpu2", "train", cwd=d, env=ssh_lab.env())
        assert r.returncode != 0
        assert "[gpu1] exit code 3" in r.stderr and "failed on 1 host(s): gpu1" in r.stderr
        assert "ran fine" in r.stdout  # gpu2 ran after gpu1's run failed
    finally:
        _cleanup(engine, name)
