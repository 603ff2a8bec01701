"""Seam 2: clients of the target's engine, with failures a user can act on.

Two clients share one :class:`EngineAddr` (where to dial, with what TLS, and how to name the
engine in messages) and one way of explaining failures (:mod:`dltasks.engine.errors`):
:func:`open_engine` (our standard-library client in :mod:`dltasks.engine.api`, for runs and
image checks: cheap to import) and :func:`connect` (docker-py, for builds, pulls and imports).
Which engine the address points at is decided by :mod:`dltasks.engine.endpoint`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dltasks.engine.endpoint import DEFAULT_URL, Endpoint, Tls
from dltasks.errors import DltError

if TYPE_CHECKING:
    import docker

    from dltasks.engine.api import Engine

__all__ = ["DEFAULT_URL", "EngineAddr", "connect", "open_engine", "try_connect"]


@dataclass(frozen=True)
class EngineAddr:
    """How our clients reach one engine."""

    url: str                    # what we dial (for a remote host: the local end of a forward)
    tls: Tls | None = None
    where: str = ""             # the engine as the user knows it, for messages
    timeout: int = 120          # seconds for one answer (DLT_ENGINE_TIMEOUT)
    #: What a forward saw on the far side when a dial fails ("" when nothing).
    note: Callable[[], str] | None = field(default=None, compare=False)

    @classmethod
    def of(cls, endpoint: Endpoint, timeout: int = 120) -> EngineAddr:
        return cls(endpoint.url, endpoint.tls,
                   f"the Docker engine at {endpoint.url} ({endpoint.source})", timeout)

    @property
    def label(self) -> str:
        return self.where or f"the Docker engine at {self.url}"

    def cli_env(self) -> dict[str, str]:
        """The docker CLI's variables for this engine (for `docker import` in a shell)."""
        env = {"DOCKER_HOST": self.url}
        if self.tls is not None:
            certs = os.path.dirname(self.tls.ca or self.tls.cert)
            env["DOCKER_TLS_VERIFY" if self.tls.verify else "DOCKER_TLS"] = "1"
            if certs:
                env["DOCKER_CERT_PATH"] = certs
        return env


def _addr(addr: EngineAddr | str) -> EngineAddr:
    return addr if isinstance(addr, EngineAddr) else EngineAddr(addr or DEFAULT_URL)


def explain(addr: EngineAddr | str, err: BaseException) -> DltError:
    """A failure of docker-py to reach the engine, as one line naming it and the fix."""
    from dltasks.engine.errors import unreachable

    a = _addr(addr)
    cause: BaseException = err
    while cause.__context__ is not None and not isinstance(cause, OSError):
        cause = cause.__context__  # requests wraps the socket's own error
    if not isinstance(cause, OSError):
        cause = err
    return unreachable(cause, url=a.url, where=a.label, tls=a.tls is not None,
                       note=a.note() if a.note else "")


def connect(addr: EngineAddr | str = "", *, timeout: int = 0) -> docker.DockerClient:
    """A docker-py client for the engine; failures surface here, clearly (the client asks
    the engine for its API version on creation, which doubles as the reachability check)."""
    a = _addr(addr)
    import docker
    import docker.errors
    import requests.exceptions

    kwargs: dict[str, Any] = {}
    url = a.url
    if a.tls is not None:
        import docker.tls

        cert = (a.tls.cert, a.tls.key) if a.tls.cert else None
        verify: bool | str = (a.tls.ca or True) if a.tls.verify else False
        kwargs["tls"] = docker.tls.TLSConfig(client_cert=cert, ca_cert=a.tls.ca or None,
                                             verify=verify)
        url = url.replace("tcp://", "https://", 1)
    try:
        if a.tls is None:
            client = docker.DockerClient(base_url=url, timeout=timeout or a.timeout, **kwargs)
        else:
            # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set by many proxies' setups)
            # override the engine's CA for every call: the engine's TLS is not the web's, so
            # the client must not take such settings from the environment. The version is
            # asked once that is off (docker-py would ask in the constructor).
            client = docker.DockerClient(base_url=url, timeout=timeout or a.timeout,
                                         version="1.24", **kwargs)
            client.api.trust_env = False
            client.api._version = client.api._retrieve_server_version()
    except docker.errors.APIError as e:
        raise DltError(f"{a.label} answered {e.status_code}: {e.explanation}") from None
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as e:
        raise explain(a, e) from None
    return client


def try_connect(addr: EngineAddr | str, *, timeout: int = 30) -> tuple[Any, str]:
    """(docker-py client, "") when the engine answers, else (None, why). Never raises."""
    try:
        return connect(addr, timeout=timeout), ""
    except DltError as e:
        return None, e.message


def open_engine(addr: EngineAddr | str = "", *, timeout: int = 0) -> Engine:
    """Our light client for the engine, connected: it asks the engine for its API version
    first, which doubles as the reachability check."""
    from dltasks.engine.api import Engine

    a = _addr(addr)
    return Engine(a.url, timeout=timeout or a.timeout, tls=a.tls, where=a.label, note=a.note)

