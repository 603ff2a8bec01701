"""Seam 2: clients of the target's engine, with connection errors a user can act on.

Two clients share one URL and one way of explaining failures: :func:`open_engine` (our
standard-library client in :mod:`dltasks.engineapi`, for runs and image checks: cheap to
import) and :func:`connect` (docker-py, for builds, pulls and imports).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from .errors import DltError

if TYPE_CHECKING:
    import docker

    from .engineapi import Engine

DEFAULT_URL = "unix:///var/run/docker.sock"


def engine_url(configured: str = "") -> str:
    """The engine URL we will talk to: the setting, else DOCKER_HOST, else the local socket."""
    return configured or os.environ.get("DOCKER_HOST", "") or DEFAULT_URL


def explain(url: str, err: BaseException) -> DltError:
    """Turn a connection failure into one line naming the URL and the fix."""
    text = str(err)
    if "Permission denied" in text or "PermissionError" in text:
        return DltError(f"permission denied on the Docker engine at {url}: add your user to the "
                        "docker group (`sudo usermod -aG docker $USER`, then log in again) or "
                        "run `inv setup`")
    return DltError(f"cannot reach the Docker engine at {url}: start it (`sudo systemctl start "
                    "docker`, or `dockerd &`) or run `inv setup`")


def _import_docker_sdk(url: str) -> None:
    """Import docker-py without paramiko unless ``url`` is ssh://: docker-py imports it (and
    the cryptography libraries) eagerly, about 100 ms of every `dlt train`'s start-up, for a
    transport we never use (remote engines come through our own SSH tunnel)."""
    if url.startswith("ssh://") or "docker" in sys.modules or "paramiko" in sys.modules:
        return
    sys.modules["paramiko"] = None  # type: ignore[assignment]  # makes `import paramiko` fail
    try:
        import docker  # noqa: F401
    finally:
        del sys.modules["paramiko"]  # fabric, when imported later, gets the real one


def connect(url: str = "", *, timeout: int = 120) -> docker.DockerClient:
    """A client for the engine at ``url``; failures surface here, clearly (the client asks the
    engine for its API version on creation, which doubles as the reachability check)."""
    _import_docker_sdk(engine_url(url))
    import docker
    import docker.errors
    import requests.exceptions

    url = engine_url(url)
    try:
        client = docker.DockerClient(base_url=url, timeout=timeout)
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as e:
        raise explain(url, e) from None
    return client


def open_engine(url: str = "", *, timeout: int = 120) -> Engine:
    """Our light client for the engine at ``url``, connected: it asks the engine for its API
    version first, which doubles as the reachability check."""
    from .engineapi import Engine

    url = engine_url(url)
    try:
        return Engine(url, timeout=timeout)
    except (OSError, ValueError) as e:
        raise explain(url, e) from None


def has_nvidia_runtime(engine: Engine) -> bool:
    """Whether the engine lists an "nvidia" runtime (what `nvidia-ctk runtime configure` adds)."""
    info = engine.info()
    return "nvidia" in (info.get("Runtimes") or {})
