"""Target: WHERE the work happens. An immutable description of one host, and what it holds open.

Task bodies talk only to a Target, so the same body runs on this machine (a
:class:`LocalTarget`, made from an ``invoke.Context``) and on a remote host (a
:class:`~dltasks.hosts.remote.target.RemoteTarget`, made from a ``fabric.Connection``), as
invoke's ``Local`` and fabric's ``Remote`` runners share one ``Runner``. The kind is decided
once, in :func:`open_target`; everything that differs by kind (syncing the project, liveness,
the GPU lock, starting a program, who we are there, how to name the host in a message) is a
method of the target, so no caller asks which kind it holds.

What a target opens (engine clients, an SSH connection, a socket forward, an rsync tunnel)
lives in its :class:`Resources` and is closed once, newest first, by one ``ExitStack``: a run
that spans several targets closes each the same way.
"""

from __future__ import annotations

import getpass
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dltasks.engine.client import DEFAULT_URL, EngineAddr
from dltasks.engine.endpoint import Endpoint
from dltasks.errors import ConnectionLost, DltError
from dltasks.hosts.shell import CmdResult, Shell, local_attached, local_start, quote
from dltasks.settings import Settings

if TYPE_CHECKING:
    import docker

    from dltasks.engine.api import Engine

T = TypeVar("T")


def ssh_host_of(c: Any) -> str | None:
    """The host the user named for this context (``fab -H gpu1``: "gpu1", as typed, not the
    HostName it resolves to); None for an invoke Context (this machine)."""
    if not (getattr(c, "host", None) and hasattr(c, "open")):
        return None
    return str(getattr(c, "original_host", None) or c.host)


@dataclass(frozen=True)
class HostLogin:
    """Who runs on the host, and how many CPUs it has (:meth:`Target.prepare`)."""

    uid_gid: str
    user: str
    cpus: int


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
class Target(ABC):
    """One host: its name, its shell, its engine (and why that one), and where the project
    lives on it. :class:`LocalTarget` and ``RemoteTarget`` answer what differs by kind."""

    name: str
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
    #: The program the user runs (dlt, inv or fab): how messages spell our commands here.
    program: str = "inv"

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

    def run_script(self, script: str, *args: str, check: bool = False) -> CmdResult:
        """Run the shell program ``script`` on the host (``sh -c script _ args...``)."""
        return self.shell.run(quote(["sh", "-c", script, "_", *args]), check=check)

    # What differs by kind: each kind answers.

    @property
    @abstractmethod
    def syncs_project(self) -> bool:
        """Whether the host works on its own copy of the project, sent by
        :meth:`sync_project` (so a path has a side here and a side on the host)."""

    @abstractmethod
    def sync_project(self, settings: Settings | None = None, **options: Any) -> Any:
        """Bring the host's copy of the project up to date (``options``: those of
        :func:`dltasks.hosts.remote.sync.sync_project`); None where there is no copy."""

    @abstractmethod
    def is_alive(self) -> bool:
        """Whether the way to the host still works (a remote one: the SSH connection; a dead
        one ends the forwarded engine's streams with a plain EOF, like a finished run)."""

    def check_alive(self, run_id: str = "") -> None:
        """A one-line DltError when the way to the host was lost. Called after a log stream
        or an attached run ends: runs outlive the connection, so it says how to reattach."""
        if not self.is_alive():
            again = (f"; the run goes on there: reattach with `{self.task_command('logs')} "
                     f"{run_id} --follow`") if run_id else ""
            raise ConnectionLost(f"lost the SSH connection to {self.name}{again}", code=255)

    @abstractmethod
    def hold_gpu_lock(self, timeout: float,
                      waiting: Callable[[], None]) -> AbstractContextManager[str]:
        """The host's GPU lock (:mod:`dltasks.gpu.lock`), held while in the block; yields
        the lock file's path on the host. ``waiting`` is called once when another holds it."""

    @abstractmethod
    def forward_port(self, host_port: int, local_port: int = 0) -> AbstractContextManager[int]:
        """Make ``host_port`` of the host's loopback reachable on this machine's loopback while
        in the block; yields the port here. This machine: the same port. A remote host: a port
        here forwarded over the SSH connection (``local_port``, else the same number when free
        here, else any free one); leaving the block ends the forward, never the run."""

    @property
    @abstractmethod
    def forwards_need_a_process(self) -> bool:
        """Whether a detached run's port forwards need a process of their own that outlives
        this program (a remote host: they ride our SSH connection, which ends with us);
        this machine's published ports are reachable as they are."""

    @abstractmethod
    def start(self, argv: Sequence[str]) -> Callable[[], CmdResult]:
        """Start ``argv`` on the host now; call the result for its output."""

    @abstractmethod
    def run_attached(self, argv: Sequence[str], *, tty: bool, use_stdin: bool = True) -> int:
        """Run ``argv`` on the host with our stdin, stdout and stderr as its own, byte for byte
        and as they come (a command the user works in: `exec` on Slurm); its exit code.
        ``tty``: we have a terminal (remotely: a pty there). Ctrl-C without a terminal,
        SIGTERM or SIGHUP end it here and raise :class:`~dltasks.hosts.shell.CutShort`:
        what it started elsewhere (a container's process) is the caller's to end."""

    @abstractmethod
    def prepare(self, must_exist: Sequence[str],
                make_dirs: Sequence[str]) -> tuple[HostLogin, list[str]]:
        """Who runs on the host, and which of ``must_exist`` are missing there; the folders
        ``make_dirs`` are made when nothing is missing. One round trip at most."""

    def who(self) -> HostLogin:
        """Who runs on the host (uid:gid, login) and its CPU count."""
        return self.prepare((), ())[0]

    @abstractmethod
    def copy_of(self, path: Path, name: str) -> str:
        """The path on the host of a file with ``path``'s content (this machine's file is
        itself; a remote host gets ``~/.cache/dltasks/NAME-HASH.SUFFIX``)."""

    @abstractmethod
    def peer_address(self) -> str:
        """The address on which this machine reaches the host."""

    @property
    @abstractmethod
    def own_uid_gid(self) -> str:
        """The uid:gid runs take there when known without asking the host, else ""."""

    @property
    @abstractmethod
    def home_dir(self) -> str:
        """The login's home folder on the host ("" when not asked yet)."""

    @property
    @abstractmethod
    def on_host(self) -> str:
        """Where, as words after a line about this host's things: " on gpu1"; "" here."""

    @property
    @abstractmethod
    def engine_where(self) -> str:
        """The host's engine in a message: "gpu1", "this machine's engine (URL)"."""

    @abstractmethod
    def task_command(self, task: str) -> str:
        """The command that runs ``task`` against this host: `inv TASK`, `fab -H gpu1 TASK`."""

    @property
    @abstractmethod
    def engine_is_hosts_own(self) -> bool:
        """Whether the engine our runs go to is the host's own (ours to install and start)
        rather than one elsewhere that DLT_DOCKER_HOST points at."""

    @property
    @abstractmethod
    def engine_addr_on_host(self) -> EngineAddr:
        """How a program ON the host (its docker CLI) dials the engine."""


class LocalTarget(Target):
    """This machine, through an invoke Context: nothing to sync, always alive, the GPU lock an
    ``fcntl.flock``, programs started as children."""

    @property
    def syncs_project(self) -> bool:
        return False

    def sync_project(self, settings: Settings | None = None, **options: Any) -> None:
        return None  # the project is here already

    def is_alive(self) -> bool:
        return True

    def hold_gpu_lock(self, timeout: float,
                      waiting: Callable[[], None]) -> AbstractContextManager[str]:
        from dltasks.gpu.lock import local_lock

        return local_lock(timeout, waiting, self.name)

    def forward_port(self, host_port: int, local_port: int = 0) -> AbstractContextManager[int]:
        from contextlib import nullcontext

        from dltasks.engine.endpoint import engine_elsewhere

        # the engine publishes on ITS host's loopback: with DOCKER_CONTEXT/DOCKER_HOST/
        # DLT_DOCKER_HOST naming another machine's engine, 127.0.0.1:PORT here is not it
        there = engine_elsewhere(self.endpoint.url)
        if there:
            raise DltError(f"port {host_port} is published on {there}'s loopback, not this "
                           f"machine's: this machine's engine is {self.endpoint.describe()}; "
                           f"for a remote host use `fab -H {there} ...` (it forwards the port "
                           "here), or unset what points at that engine")
        return nullcontext(host_port)  # published on this machine's loopback already

    @property
    def forwards_need_a_process(self) -> bool:
        return False

    def start(self, argv: Sequence[str]) -> Callable[[], CmdResult]:
        pending = local_start(argv)
        return lambda: pending.result()

    def run_attached(self, argv: Sequence[str], *, tty: bool, use_stdin: bool = True) -> int:
        # our terminal stays the program's: `srun --pty` makes it raw itself
        return local_attached(argv, stop_s=self.settings.stop_timeout, use_stdin=use_stdin)

    def prepare(self, must_exist: Sequence[str],
                make_dirs: Sequence[str]) -> tuple[HostLogin, list[str]]:
        who = HostLogin(self.own_uid_gid, getpass.getuser(), os.cpu_count() or 1)
        missing = [p for p in must_exist if not os.path.exists(p)]
        if not missing:
            for d in make_dirs:
                os.makedirs(d, exist_ok=True)
        return who, missing

    def copy_of(self, path: Path, name: str) -> str:
        return str(path)

    def peer_address(self) -> str:
        return "127.0.0.1"

    @property
    def own_uid_gid(self) -> str:
        return f"{os.getuid()}:{os.getgid()}"

    @property
    def home_dir(self) -> str:
        return os.path.expanduser("~")

    @property
    def on_host(self) -> str:
        return ""

    @property
    def engine_where(self) -> str:
        return f"this machine's engine ({self.endpoint.url})"

    def task_command(self, task: str) -> str:
        return f"{self.program} {task}"

    @property
    def engine_is_hosts_own(self) -> bool:
        return self.endpoint.url == DEFAULT_URL

    @property
    def engine_addr_on_host(self) -> EngineAddr:
        return self.engine_addr


def local_endpoint(settings: Settings) -> Endpoint:
    """This machine's engine: DLT_DOCKER_HOST, else the docker CLI's own rules."""
    from dltasks.engine.endpoint import local_view, resolve_endpoint

    return resolve_endpoint(settings.docker_host, settings.source("docker_host"), local_view())


def local_engine_addr(settings: Settings, endpoint: Endpoint | None = None) -> EngineAddr:
    """How this machine's clients dial its engine (``endpoint``: :func:`local_endpoint`'s,
    when already resolved)."""
    return EngineAddr.of(endpoint or local_endpoint(settings), settings.engine_timeout)


def local_target(c: Any, settings: Settings, program: str = "inv") -> LocalTarget:
    """This machine's target (an invoke Context); ``program``: what the user runs (dlt, inv)."""
    endpoint = local_endpoint(settings)
    return LocalTarget(name="local", shell=Shell(c, sudo_password=settings.sudo_password),
                       settings=settings, endpoint=endpoint,
                       resources=Resources(local_engine_addr(settings, endpoint)),
                       host_project_dir=str(settings.project_dir), login=getpass.getuser(),
                       program=program)


def open_target(c: Any, settings: Settings, *, engine_soon: bool = True,
                check_sync: bool = False, program: str = "inv") -> Target:
    """The target for ``c``: the one place that tells an invoke Context (this machine) from a
    fabric Connection (a remote host, opened here: see
    :func:`dltasks.hosts.remote.target.remote_target` for ``engine_soon``/``check_sync``).
    ``program``: what the user runs here (dlt or inv), for the commands messages name."""
    if ssh_host_of(c) is None:
        return local_target(c, settings, program)
    from dltasks.hosts.remote.target import remote_target

    return remote_target(c, settings, engine_soon=engine_soon, check_sync=check_sync)

