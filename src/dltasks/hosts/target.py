"""Target: WHERE the work happens. An immutable description of one host, and what it holds open.

Task bodies talk only to a Target, so the same body runs on this machine (an
``invoke.Context``, :data:`LOCAL`) and on a remote host (a ``fabric.Connection``,
:data:`REMOTE`, built by :mod:`dltasks.hosts.remote.target`). What a target opens (engine clients,
an SSH connection, a socket forward, an rsync tunnel) lives in its :class:`Resources` and is
closed once, newest first, by one ``ExitStack``: a run that spans several targets closes each
the same way.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from dltasks.engine.client import EngineAddr
from dltasks.engine.endpoint import Endpoint
from dltasks.errors import DltError
from dltasks.hosts.shell import Shell
from dltasks.settings import Settings

if TYPE_CHECKING:
    import docker

    from dltasks.engine.api import Engine

LOCAL: Literal["local"] = "local"
REMOTE: Literal["remote"] = "remote"
T = TypeVar("T")


def is_remote_context(c: Any) -> bool:
    """A fabric Connection (``fab -H``) rather than a local invoke Context."""
    return bool(getattr(c, "host", None)) and hasattr(c, "open")


@dataclass(frozen=True)
class HostCopy:
    """What a remote host said about its copy of the project, before a sync
    (:mod:`dltasks.hosts.remote.synced`)."""

    clock: int      # the host's time (seconds) when asked
    digest: str     # the stamp's digest when the copy is unchanged since that stamp, else ""


class Resources:
    """What a target holds open, closed by one ExitStack (newest first).

    The engine clients are made on first use; a remote target hands in an engine connection
    already under way (``engine_future``), started while it described the host.
    """

    def __init__(self, addr: EngineAddr, engine_future: Future[Engine] | None = None) -> None:
        self.addr = addr
        self.stack = ExitStack()
        self._engine: Engine | None = None
        self._docker: docker.DockerClient | None = None
        self._future = engine_future
        self._kept: dict[str, Any] = {}
        self.stack.callback(self._close_clients)

    def engine_under_way(self, future: Future[Engine] | None) -> None:
        """An engine connection already started (remote targets start it while connecting)."""
        self._future = future

    def engine(self) -> Engine:
        if self._engine is None and self._future is not None:
            future, self._future = self._future, None
            try:
                self._engine = future.result()
            except DltError:  # not there when we connected (setup may have started it since)
                pass
        if self._engine is None:
            from dltasks.engine.client import open_engine

            self._engine = open_engine(self.addr)
        return self._engine

    def docker(self) -> docker.DockerClient:
        if self._docker is None:
            from dltasks.engine.client import connect

            self._docker = connect(self.addr)
        return self._docker

    def keep(self, key: str, make: Callable[[], T], close: Callable[[T], Any]) -> T:
        """One ``make()`` per target and key (an rsync tunnel...), closed with the target."""
        if key not in self._kept:
            self._kept[key] = item = make()
            self.stack.callback(close, item)
        return self._kept[key]  # type: ignore[no-any-return]

    def _close_clients(self) -> None:
        future, self._future = self._future, None
        if self._engine is None and future is not None and future.done() and \
                not future.exception():
            self._engine = future.result()
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        if self._docker is not None:
            self._docker.close()
            self._docker = None

    def close(self) -> None:
        self.stack.close()


@dataclass(frozen=True)
class Target:
    """One host: its name, its shell, its engine (and why that one), and where the project
    lives on it."""

    name: str
    kind: Literal["local", "remote"]
    shell: Shell
    settings: Settings
    #: The engine as resolved on the host (dltasks.engine.endpoint): what `config`/`doctor` show.
    endpoint: Endpoint
    resources: Resources = field(repr=False, compare=False)
    #: The project folder as seen on the target host (the local folder for a local target).
    host_project_dir: str = ""
    #: The login user's home folder on the target host ("" when not asked yet).
    host_home: str = ""
    #: The project folder's real path on the host when it already existed there at connect
    #: time ("" when not, or unknown): lets a sync skip creating and checking it.
    host_project_real: str = ""
    #: For a sync: what the host said of its copy of the project.
    host_copy: HostCopy | None = None
    #: Who we are on the host: the login its runs' user label holds.
    login: str = ""

    @property
    def is_remote(self) -> bool:
        return self.kind == REMOTE

    @property
    def engine_addr(self) -> EngineAddr:
        """How our clients dial the engine (remotely: through the SSH connection)."""
        return self.resources.addr

    @property
    def engine_url(self) -> str:
        return self.resources.addr.url

    @property
    def engine(self) -> Engine:
        """The light engine client (runs, listings, image checks), connected on first use."""
        return self.resources.engine()

    @property
    def docker(self) -> docker.DockerClient:
        """docker-py's client (builds, pulls, imports), connected (and checked) on first use."""
        return self.resources.docker()

    def close(self) -> None:
        self.resources.close()


def local_endpoint(settings: Settings) -> Endpoint:
    """This machine's engine: DLT_DOCKER_HOST, else the docker CLI's own rules."""
    from dltasks.engine.endpoint import local_view, resolve_endpoint

    return resolve_endpoint(settings.docker_host, settings.source("docker_host"), local_view())


def local_engine_addr(settings: Settings, endpoint: Endpoint | None = None) -> EngineAddr:
    """How this machine's clients dial its engine (``endpoint``: :func:`local_endpoint`'s,
    when already resolved)."""
    return EngineAddr.of(endpoint or local_endpoint(settings), settings.engine_timeout)


def local_target(c: Any, settings: Settings) -> Target:
    endpoint = local_endpoint(settings)
    return Target(name="local", kind=LOCAL, shell=Shell(c, sudo_password=settings.sudo_password),
                  settings=settings, endpoint=endpoint,
                  resources=Resources(local_engine_addr(settings, endpoint)),
                  host_project_dir=str(settings.project_dir), login=getpass.getuser())
