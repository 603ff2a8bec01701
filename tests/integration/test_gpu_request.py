"""`dlt train --gpu 1,2` REACHES THE ENGINE as a GPU device request for devices 1 and 2.

This proves the REQUEST, not GPU access: no GPU is granted here. The tests run the real CLI
against a private dockerd (tests/gpu_engine.py) whose NVIDIA device driver is registered by a
stand-in ``nvidia-container-runtime-hook`` that only records what it was asked. A request for
devices 1,2 thus shows up three ways: NVIDIA_VISIBLE_DEVICES=1,2 inside the container (set by
the engine's driver from the DeviceRequest), one prestart-hook call for that run, and the run
record (gpus "1,2", `docker run --gpus "device=1,2"`). CUDA_VISIBLE_DEVICES must stay unset:
inside the container the granted GPUs are numbered from 0, so host indices there would be wrong.

The shared engine is untouched and keeps refusing GPU requests (the control test checks that).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import dlt
from tests.gpu_engine import GpuEngine, gpu_engine_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def gpu_engine(engine: Any, base_image: str) -> Iterator[GpuEngine]:
    """The private engine with the stand-in GPU driver, the test base image loaded into it."""
    with gpu_engine_for(engine, base_image) as eng:
        yield eng


def gpu_project(project: Path, eng: GpuEngine, image: str, extra: str = "") -> Path:
    """A project that runs `env` in the test image on the private engine."""
    (project / ".env").write_text(f"DLT_IMAGE={image}\nDLT_DOCKER_HOST={eng.url}\n"
                                  f"DLT_TRAIN_CMD=env\n{extra}", encoding="utf-8")
    return project


def container_env(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


def only_record(project: Path) -> dict[str, Any]:
    records = sorted((project / "runs").glob("*/manifest.json"))
    assert len(records) == 1, records
    data: dict[str, Any] = json.loads(records[0].read_text(encoding="utf-8"))
    return data


def run_containers(eng: GpuEngine, run_id: str) -> list[Any]:
    found: list[Any] = eng.client.containers.list(ignore_removed=True, all=True,
                                                  filters={"label": f"dltasks.run={run_id}"})
    return found


@pytest.mark.parametrize("flags,devices,cli", [
    (["--gpu", "1,2"], "1,2", '--gpus "device=1,2"'),
    (["--gpu", "1", "--gpu", "2"], "1,2", '--gpus "device=1,2"'),
    (["--gpu", "0", "--gpu", "1"], "0,1", '--gpus "device=0,1"'),
    (["--gpu", "all"], "all", "--gpus all"),
], ids=["comma-list", "repeated", "repeated-0-1", "all"])
def test_train_gpu_flag_reaches_the_engine_as_a_device_request(
        gpu_engine: GpuEngine, base_image: str, project: Path, flags: list[str], devices: str,
        cli: str) -> None:
    gpu_project(project, gpu_engine, base_image)
    p = dlt("train", *flags, cwd=project, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    env = container_env(p.stdout)
    assert env["NVIDIA_VISIBLE_DEVICES"] == devices          # the engine's driver got the request
    assert "CUDA_VISIBLE_DEVICES" not in env                 # never host indices in the container
    record = only_record(project)
    assert env["DLT_RUN_ID"] == record["run_id"]
    calls = gpu_engine.hook_calls(record["run_id"])
    assert [(c["argv"], c["env"].get("NVIDIA_VISIBLE_DEVICES")) for c in calls] == [
        (["prestart"], devices)]
    assert record["gpus"] == devices and record["exit_code"] == 0
    assert f" {cli} " in record["docker_run"]
    assert run_containers(gpu_engine, record["run_id"]) == []


def test_train_gpu_none_sends_no_device_request(gpu_engine: GpuEngine, base_image: str,
                                                project: Path) -> None:
    gpu_project(project, gpu_engine, base_image)
    p = dlt("train", "--gpu", "none", cwd=project, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    env = container_env(p.stdout)
    assert "NVIDIA_VISIBLE_DEVICES" not in env and "CUDA_VISIBLE_DEVICES" not in env
    record = only_record(project)
    assert env["DLT_RUN_ID"] == record["run_id"]
    assert gpu_engine.hook_calls(record["run_id"]) == []      # the GPU driver was not involved
    assert record["gpus"] == "none" and "--gpus" not in record["docker_run"]


def test_auto_on_an_engine_with_only_the_hook_driver_means_no_gpus(
        gpu_engine: GpuEngine, base_image: str, project: Path) -> None:
    """DLT_GPUS=auto asks for all GPUs only when `docker info` lists an "nvidia" runtime.

    This engine can grant GPU requests through its hook driver but lists no such runtime, so
    auto resolves to none: the run starts without a device request.
    """
    assert "nvidia" not in (gpu_engine.client.info().get("Runtimes") or {})
    gpu_project(project, gpu_engine, base_image, extra="DLT_GPUS=auto\n")
    p = dlt("train", cwd=project, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    env = container_env(p.stdout)
    assert "NVIDIA_VISIBLE_DEVICES" not in env
    record = only_record(project)
    assert record["gpus"] == "none" and "--gpus" not in record["docker_run"]
    assert gpu_engine.hook_calls(record["run_id"]) == []


def test_test_gpu_asks_for_the_devices_and_diagnoses_that_none_is_visible(
        gpu_engine: GpuEngine, base_image: str, project: Path) -> None:
    gpu_project(project, gpu_engine, base_image)
    p = dlt("test-gpu", "--gpu", "1,2", cwd=project, timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("dlt: error: GPU test failed on local: no NVIDIA GPU is visible")
    assert "Traceback" not in p.stdout + p.stderr
    probe = [ln for ln in p.stdout.splitlines() if ln.startswith("DLT_PROBE_JSON ")]
    assert len(probe) == 1, p.stdout
    seen = json.loads(probe[0].split(" ", 1)[1])["env"]
    assert seen.get("NVIDIA_VISIBLE_DEVICES") == "1,2" and "CUDA_VISIBLE_DEVICES" not in seen
    record = only_record(project)
    assert record["kind"] == "test-gpu" and record["gpus"] == "1,2"
    calls = gpu_engine.hook_calls(record["run_id"])
    assert [c["env"].get("NVIDIA_VISIBLE_DEVICES") for c in calls] == ["1,2"]
    assert gpu_engine.client.containers.list(
            ignore_removed=True, all=True, filters={"label": "dltasks.kind"}) == []


def test_control_the_shared_engine_still_refuses_the_same_request(
        engine: Any, gpu_engine: GpuEngine, base_image: str, project: Path) -> None:
    """The same request to the shared engine is refused: the stand-in driver made the difference."""
    if "nvidia" in (engine.info().get("Runtimes") or {}):
        pytest.skip("the shared engine has an NVIDIA runtime; the control needs one without")
    (project / ".env").write_text(f"DLT_IMAGE={base_image}\nDLT_TRAIN_CMD=env\n",
                                  encoding="utf-8")
    p = dlt("train", "--gpu", "1,2", cwd=project, env={"DOCKER_HOST": ""}, timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "no NVIDIA runtime" in p.stderr and "(1,2)" in p.stderr
    record = only_record(project)
    assert record["status"] == "failed to start"
    assert gpu_engine.hook_calls(record["run_id"]) == []
    assert engine.containers.list(ignore_removed=True, all=True,
                                  filters={"label": f"dltasks.run={record['run_id']}"}) == []


def test_a_port_on_an_engine_without_a_bridge_is_refused_before_anything_starts(
        gpu_engine: GpuEngine, base_image: str, project: Path) -> None:
    # dockerd --bridge=none (this private engine; the borrowed GPU hosts' too) gives a
    # container on the default network no network at all and ignores its port bindings
    # without a word: the URL would lead nowhere
    gpu_project(project, gpu_engine, base_image, "DLT_GPUS=none\n")
    r = dlt("train", "--port", "8000", "--detach", cwd=project)
    assert r.returncode == 2, r.stdout + r.stderr
    [line] = r.stderr.strip().splitlines()
    assert "--port 8000" in line and "has no bridge network" in line and "--bridge=none" in line
    assert r.stdout == ""
    assert gpu_engine.client.containers.list(
        ignore_removed=True, all=True, filters={"label": "dltasks.kind"}) == []
    assert not (project / "runs").exists()
