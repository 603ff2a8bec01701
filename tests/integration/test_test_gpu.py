"""`dlt test-gpu` and the GPU probe against the real local engine (which has no NVIDIA runtime).

GPU success paths run on a GPU machine (see the issue's closing note); here we check what a
user without a GPU or an NVIDIA runtime sees: one line naming the fix, and nothing left behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dltasks.probe import CONTAINER_PATH, container_command, parse_probe_output, script_path
from tests.conftest import dlt

pytestmark = pytest.mark.docker


def dlt_containers(engine: Any) -> set[str]:
    return {c.id for c in engine.containers.list(ignore_removed=True, all=True,
                                                  filters={"label": "dltasks.kind"})}


def image_project(project: Path, image: str) -> Path:
    (project / ".env").write_text(f"DLT_IMAGE={image}\n", encoding="utf-8")
    return project


def test_test_gpu_without_nvidia_runtime_is_one_line_and_leaves_nothing(
        engine: Any, base_image: str, project: Path) -> None:
    if "nvidia" in (engine.info().get("Runtimes") or {}):
        pytest.skip("this engine has an NVIDIA runtime; the no-runtime path needs one without")
    image_project(project, base_image)
    before = dlt_containers(engine)
    p = dlt("test-gpu", cwd=project)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("dlt: error: ")
    assert "no NVIDIA runtime" in lines[0] and "`dlt install-nvidia-docker`" in lines[0]
    assert "Traceback" not in p.stdout + p.stderr
    assert dlt_containers(engine) == before


def test_test_gpu_with_ids_on_an_engine_without_runtime(engine: Any, base_image: str,
                                                        project: Path) -> None:
    if "nvidia" in (engine.info().get("Runtimes") or {}):
        pytest.skip("this engine has an NVIDIA runtime")
    image_project(project, base_image)
    before = dlt_containers(engine)
    p = dlt("test-gpu", "--gpu", "0", "--gpu", "1", cwd=project)
    assert p.returncode != 0 and "(0,1)" in p.stderr and "install-nvidia-docker" in p.stderr
    assert dlt_containers(engine) == before


@pytest.mark.parametrize("gpu,message", [
    ("abc", "--gpu 'abc' is not a GPU id"),
    ("0,x1", "--gpu 'x1' is not a GPU id"),
    ("none", "test-gpu --gpu none tests nothing"),
    ("all,0", "cannot be combined"),
])
def test_test_gpu_refuses_bad_gpu_before_anything_starts(engine: Any, base_image: str,
                                                         project: Path, gpu: str,
                                                         message: str) -> None:
    image_project(project, base_image)
    before = dlt_containers(engine)
    p = dlt("test-gpu", "--gpu", gpu, cwd=project)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert message in p.stderr
    assert not (project / "runs").exists()  # no run record: nothing was started
    assert dlt_containers(engine) == before


def test_test_gpu_dry_run_mounts_the_probe_and_asks_for_the_gpus(base_image: str,
                                                                 project: Path) -> None:
    image_project(project, base_image)
    p = dlt("test-gpu", "--gpu", "1,2", "--dry-run", cwd=project)
    assert p.returncode == 0, p.stderr
    line = p.stdout.splitlines()[0]
    assert '--gpus "device=1,2"' in line
    assert f"-v {script_path()}:{CONTAINER_PATH}:ro" in line
    assert "--label dltasks.kind=test-gpu" in line
    assert "--expect 2" in line and "CUDA_VISIBLE_DEVICES" not in line


@pytest.mark.parametrize("dlt_gpus,flags", [
    ("none", '--gpus all'), ("auto", '--gpus all'), ("0,3", '--gpus "device=0,3"')])
def test_test_gpu_default_gpus_come_from_dlt_gpus(base_image: str, project: Path,
                                                  dlt_gpus: str, flags: str) -> None:
    image_project(project, base_image)
    p = dlt("test-gpu", "--dry-run", cwd=project, env={"DLT_GPUS": dlt_gpus})
    assert p.returncode == 0, p.stderr
    line = p.stdout.splitlines()[0]
    assert flags in line
    assert f"--expect {2 if ',' in dlt_gpus else 1}" in line


def test_probe_in_an_image_without_gpu_or_torch_diagnoses_no_gpu(engine: Any,
                                                                 base_image: str) -> None:
    """The mounted probe, run exactly as test-gpu runs it, in the GPU-less test image."""
    c = engine.containers.create(
        base_image, ["sh", "-c", container_command(1)], labels={"dltasks.test": "1"},
        volumes={str(script_path()): {"bind": CONTAINER_PATH, "mode": "ro"}})
    try:
        c.start()
        code = c.wait(timeout=120)["StatusCode"]
        out = c.logs(stdout=True, stderr=True).decode()
    finally:
        c.remove(force=True)
    assert code == 1, out
    assert "Traceback" not in out
    assert "nvidia-smi: not found" in out and "libcuda: not found" in out
    assert "ERROR [no-gpu-visible] no NVIDIA GPU is visible here" in out
    report = parse_probe_output(out)
    assert not report.ok and [f.code for f in report.errors] == ["no-gpu-visible"]
    assert report.raw["python"].startswith("3.")
