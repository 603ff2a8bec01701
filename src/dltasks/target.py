"""Target: WHERE the work happens. A shell on that host and a Docker client for its engine.

Task bodies talk only to a Target, so the same body runs on this machine (an
``invoke.Context``) and on a remote host (a ``fabric.Connection``, see ``dltasks.remote``).
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import DltError
from .settings import Settings
from .shell import Shell

if TYPE_CHECKING:
    import docker

    from .engineapi import Engine
    from .remote.synced import HostCopy


def is_remote_context(c: Any) -> bool:
    """A fabric Connection (``fab -H``) rather than a local invoke Context."""
    return bool(getattr(c, "host", None)) and hasattr(c, "open")


@dataclass
class Target:
    """One host: its name, its shell, its engine, and where the project lives on it."""

    name: str
    shell: Shell
    settings: Settings
    is_remote: bool = False
    #: The project folder as seen on the target host (the local folder for a local target).
    host_project_dir: str = ""
    #: The login user's home folder on the target host ("" when not asked yet).
    host_home: str = ""
    #: The project folder's real path on the host when it already existed there at connect
    #: time ("" when not, or unknown): lets a sync skip creating and checking it.
    host_project_real: str = ""
    #: For a sync: what the host said of its copy of the project (dltasks.remote.synced).
    host_copy: HostCopy | None = None
    engine_url: str = ""
    _docker: Any = field(default=None, repr=False)
    _engine: Engine | None = field(default=None, repr=False)
    #: An engine connection already under way (remote targets start it while they connect).
    _engine_future: Future[Engine] | None = field(default=None, repr=False)
    _closers: list[Any] = field(default_factory=list, repr=False)

    @property
    def engine(self) -> Engine:
        """The light engine client (runs, listings, image checks), connected on first use."""
        if self._engine is None and self._engine_future is not None:
            future, self._engine_future = self._engine_future, None
            try:
                self._engine = future.result()
            except DltError:  # not there when we connected (setup may have started it since)
                pass
        if self._engine is None:
            from .engine import open_engine

            self._engine = open_engine(self.engine_url)
        return self._engine

    @property
    def docker(self) -> docker.DockerClient:
        """docker-py's client (builds, pulls, imports), connected (and checked) on first use."""
        if self._docker is None:
            from .engine import connect

            self._docker = connect(self.engine_url)
        return self._docker

    def close(self) -> None:
        if self._engine is None and self._engine_future is not None and \
                self._engine_future.done() and not self._engine_future.exception():
            self._engine = self._engine_future.result()
        self._engine_future = None
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        if self._docker is not None:
            self._docker.close()
            self._docker = None
        while self._closers:
            self._closers.pop()()


def local_target(c: Any, settings: Settings) -> Target:
    from .engine import engine_url

    return Target(name="local", shell=Shell(c, sudo_password=settings.sudo_password),
                  settings=settings, host_project_dir=str(settings.project_dir),
                  engine_url=engine_url(settings.docker_host))
