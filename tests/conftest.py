"""Shared fixtures. Docker-backed tests FAIL (never skip) when CI=true and no engine answers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: Images that `dev/test` makes with `dlt base-image` before pytest runs.
TEST_BASE_IMAGE = os.environ.get("DLTASKS_TEST_BASE_IMAGE", "dlt-test-base:latest")
TEST_TORCH_IMAGE = os.environ.get("DLTASKS_TEST_TORCH_IMAGE", "dlt-test-torch:latest")
TEST_LAB_IMAGE = os.environ.get("DLTASKS_TEST_LAB_IMAGE", "dlt-test-lab:latest")


def _unavailable(why: str) -> None:
    if IN_CI:
        pytest.fail(f"{why} (CI=true: Docker tests must not skip; run dev/test)", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def engine() -> Iterator[object]:
    """A docker-py client for the local engine."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as e:  # noqa: BLE001 - any failure means "no engine"
        _unavailable(f"no Docker engine reachable: {e}")
    yield client
    client.close()


def _image(engine: object, name: str) -> str:
    import docker.errors

    try:
        engine.images.get(name)  # type: ignore[attr-defined]
    except docker.errors.ImageNotFound:
        _unavailable(f"test image {name} missing: run dev/test (it makes it with dlt base-image)")
    return name


@pytest.fixture(scope="session")
def base_image(engine: object) -> str:
    """Debian bookworm minbase with python3 and pip, made locally with no registry."""
    return _image(engine, TEST_BASE_IMAGE)


@pytest.fixture(scope="session")
def torch_image(engine: object) -> str:
    """The test base image plus the CPU torch wheel and PyYAML."""
    return _image(engine, TEST_TORCH_IMAGE)


@pytest.fixture(scope="session")
def lab_image(engine: object) -> str:
    """The torch image's inputs plus jupyterlab and tensorboard (notebook, tensorboard)."""
    return _image(engine, TEST_LAB_IMAGE)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder, made the current folder; DLT_* cleared from the environment."""
    for k in list(os.environ):
        if k.startswith("DLT_"):
            monkeypatch.delenv(k)
    d = tmp_path / "proj"
    d.mkdir()
    monkeypatch.chdir(d)
    return d


def dlt(*args: str, cwd: Path, env: dict[str, str] | None = None,
        input: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the real `dlt` console program (same collection as inv/fab) in ``cwd``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "dltasks", *args], cwd=cwd, env=full_env,
                          text=True, capture_output=True, input=input, timeout=timeout)


def project_containers(engine: Any, name: str) -> list[Any]:
    """Every container of project ``name`` on the engine, running or not."""
    found: list[Any] = engine.containers.list(
        ignore_removed=True, all=True, filters={"label": f"dltasks.project={name}"})
    return found
