"""The :class:`RemoteTarget`: a remote host reached by a fabric Connection.

One SSH connection carries everything: shell commands (exec channels) and the engine (a
forwarded socket, see :mod:`.forward`). The connection is opened here, with host keys checked
strictly (:mod:`.hostkeys`), so a refused key or login fails before any work starts. The
target owns what only a remote host has: the project's copy (:mod:`.sync`), the liveness of the
connection, the GPU lock held over SSH (:mod:`.gpulock`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dltasks.engine.client import EngineAddr, open_engine
from dltasks.engine.endpoint import DockerView, Endpoint, parse_view, resolve_endpoint
from dltasks.errors import DltError, LostNote
from dltasks.hosts.background import in_background
from dltasks.hosts.remote.exec import expand_remote_dir, from_home, quick_exec
from dltasks.hosts.remote.forward import SocketForward
from dltasks.hosts.remote.hostkeys import harden, open_checked
from dltasks.hosts.remote.sshconfig import SshHost
from dltasks.hosts.remote.synced import parse_check, stamp_path
from dltasks.hosts.shell import CmdResult, Shell, quote
from dltasks.hosts.target import HostCopy, HostLogin, Resources, Target
from dltasks.scripts import script
from dltasks.settings import Settings

__all__ = ["RemoteTarget", "check_alive", "connection_lost", "describe_host", "expand_remote_dir",
           "from_home", "quick_exec", "remote_home", "remote_target"]


def point_forward(fwd: SocketForward, endpoint: Endpoint) -> None:
    """Send the forward's connections to ``endpoint`` (resolved on the host): a unix socket
    by stream-local forwarding, a plain tcp:// engine by direct-tcpip, anything else (TLS,
    ssh://) through the host's own docker CLI, which applies the same settings there."""
    if endpoint.url.startswith("unix://") or (endpoint.url.startswith(("tcp://", "http://"))
                                              and endpoint.tls is None):
        fwd.point_at(endpoint.url)
        return
    if endpoint.source.startswith("DLT_DOCKER_HOST"):
        fwd.point_at(endpoint.url, mode="dial-stdio")
    else:  # DOCKER_HOST or a context of the host's user: its CLI resolves it as we did
        fwd.point_at(endpoint.url, mode="dial-stdio", dial_command="docker system dial-stdio")


#: $1: the project folder, $2: the sync stamp or "" (both from $HOME). Prints $HOME; the project
#: folder's real path when it exists and is no symlink, else ""; the docker view's lines (each
#: starting "dv<TAB>", :func:`.parse_view`); then, when $2 is given, the sync check's
#: (:func:`.synced.parse_check`).
_DESCRIBE = script("host_describe")


@dataclass(frozen=True)
class HostView:
    """The host as one round trip saw it."""

    home: str
    real_dir: str               # the project folder's real path when it exists there, else ""
    docker: DockerView | None = None  # what the host's docker CLI would read
    copy: HostCopy | None = None  # with ``check_sync``: what the host says of its copy


def describe_host(c: Any, host: SshHost, remote_dir: str = "", *,
                  check_sync: bool = False) -> HostView:
    """One round trip: the login's home, the real path of the project folder ``remote_dir``
    when it already exists there as a folder, and (``check_sync``) the state of the last sync
    to it (:mod:`.synced`)."""
    rel = from_home(remote_dir)
    stamp = stamp_path(remote_dir) if check_sync and rel else ""
    code, out, err = quick_exec(c.transport, quote(["sh", "-c", _DESCRIBE, "_", rel, stamp]))
    lines = out.split("\n")
    home = lines[0].strip() if lines else ""
    if code != 0 or not home.startswith("/"):
        raise DltError(f"cannot read $HOME on {host.alias} (exit {code}): "
                       f"{(err or out).strip()[:200]}; check the account's shell")
    real = lines[1].strip() if len(lines) > 1 else ""
    view = [ln for ln in lines[2:] if ln.startswith("dv\t")]
    rest = [ln for ln in lines[2:] if not ln.startswith("dv\t")]
    return HostView(home, real, parse_view(view, home), parse_check(rest) if stamp else None)


def remote_home(c: Any, host: SshHost) -> str:
    return describe_host(c, host).home


#: Who runs there and its CPU count, then "missing:PATH" for each path that is not there, with
#: "mkdir:DIR" arguments made (exit 3 when one cannot be).
_PREPARE = script("host_prepare")
#: Writes $2 to ~/.cache/dltasks/$1 (through a temporary file) and prints its path.
_PUT = ('d="$HOME/.cache/dltasks"; mkdir -p "$d" && printf %s "$2" > "$d/$1.tmp" '
        '&& mv "$d/$1.tmp" "$d/$1" && echo "$d/$1"')


class RemoteTarget(Target):
    """A host over SSH (a fabric Connection): the project synced to its own copy, alive while
    the connection is, the GPU lock a ``flock`` held by a shell in an exec channel."""

    @property
    def _transport(self) -> Any:
        return getattr(self.shell.c, "transport", None)

    @property
    def syncs_project(self) -> bool:
        return True

    def sync_project(self, settings: Settings | None = None, **options: Any) -> Any:
        from dltasks.hosts.remote.sync import sync_project

        return sync_project(self, settings or self.settings, **options)

    def is_alive(self) -> bool:
        transport = self._transport
        return transport is not None and bool(transport.active)

    def hold_gpu_lock(self, timeout: float,
                      waiting: Callable[[], None]) -> AbstractContextManager[str]:
        from dltasks.hosts.remote.gpulock import remote_lock

        return remote_lock(self._transport, self.name, timeout, waiting)

    @contextmanager
    def forward_port(self, host_port: int, local_port: int = 0) -> Iterator[int]:
        from dltasks.hosts.remote.portforward import PortForward

        fwd = PortForward(self._transport, host_port, local_port, host=self.name)
        try:
            yield fwd.local_port
        finally:
            fwd.close()

    @property
    def forwards_need_a_process(self) -> bool:
        return True  # they ride our SSH connection: a detached run's outlive us

    def start(self, argv: Sequence[str]) -> Callable[[], CmdResult]:
        return in_background(self.shell.run, quote(argv)).result  # an exec channel, in a thread

    def run_attached(self, argv: Sequence[str], *, tty: bool, use_stdin: bool = True) -> int:
        from dltasks.hosts.remote.attached import remote_attached

        return remote_attached(self._transport, quote(argv), tty=tty, host=self.name,
                               use_stdin=use_stdin)

    def prepare(self, must_exist: Sequence[str],
                make_dirs: Sequence[str]) -> tuple[HostLogin, list[str]]:
        res = self.run_script(_PREPARE, *must_exist, *(f"mkdir:{d}" for d in make_dirs),
                              check=True)
        lines = res.stdout.splitlines()
        missing = [ln[len("missing:"):] for ln in lines[4:] if ln.startswith("missing:")]
        cpus = lines[3].strip()
        return HostLogin(f"{lines[0].strip()}:{lines[1].strip()}", lines[2].strip(),
                         int(cpus) if cpus.isdigit() else 1), missing

    def copy_of(self, path: Path, name: str) -> str:
        text = path.read_text(encoding="utf-8")
        file = f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}{path.suffix}"
        return self.run_script(_PUT, file, text, check=True).stdout.strip().splitlines()[-1]

    def peer_address(self) -> str:
        sock = getattr(self._transport, "sock", None)
        try:
            return str(sock.getpeername()[0]) if sock is not None else "127.0.0.1"
        except OSError:
            return "127.0.0.1"

    @property
    def own_uid_gid(self) -> str:
        return ""  # asked of the host by prepare()

    @property
    def home_dir(self) -> str:
        return self.host_home

    @property
    def on_host(self) -> str:
        return f" on {self.name}"

    @property
    def engine_where(self) -> str:
        return self.name

    def task_command(self, task: str) -> str:
        return f"fab -H {self.name} {task}"

    @property
    def engine_is_hosts_own(self) -> bool:
        return True  # the forwarded socket: what the host's own docker CLI would use

    @property
    def engine_addr_on_host(self) -> EngineAddr:
        return EngineAddr.of(self.endpoint)


def remote_target(c: Any, settings: Settings, *, engine_soon: bool = True,
                  check_sync: bool = False) -> RemoteTarget:
    """Open ``c`` (strict host keys), forward the host's engine, and describe the host.

    ``engine_soon``: start talking to the engine now (the task will). ``check_sync``: ask
    the host, in the same round trip, what a sync needs to know (:mod:`.synced`).
    """
    was_open = bool(getattr(c, "is_connected", False))
    host = harden(c, accept_new=settings.accept_new_host_key)
    if not was_open:
        open_checked(c, host)
    # Keepalives, as ServerAliveInterval (default 15 s): an idle follow notices a dead link.
    c.transport.set_keepalive(int(c.ssh_config.get("serveraliveinterval", 15) or 15))
    fwd = SocketForward(c.transport, pending=True)
    addr = EngineAddr(fwd.url, where=f"the Docker engine on {host.alias}",
                      timeout=settings.engine_timeout, note=lambda: _fix(fwd, host.alias))
    resources = Resources(addr)
    if not was_open:
        resources.stack.callback(c.close)
    resources.stack.callback(fwd.close)  # closed before the connection (newest first)
    try:
        # The engine's first answer (a channel opened through SSH) comes as soon as the host
        # has said which engine its user's docker CLI would use.
        engine = in_background(open_engine, addr) if engine_soon else None
        view = describe_host(c, host, settings.remote_dir, check_sync=check_sync)
        endpoint = resolve_endpoint(settings.docker_host, settings.source("docker_host"),
                           view.docker or parse_view([], view.home))
        point_forward(fwd, endpoint)
        project_dir = expand_remote_dir(settings.remote_dir, view.home)
    except BaseException:
        resources.close()
        raise
    resources.engine_under_way(engine)
    return RemoteTarget(name=host.alias,
                  shell=Shell(c, sudo_password=settings.sudo_password), settings=settings,
                  endpoint=endpoint, resources=resources, host_project_dir=project_dir,
                  host_home=view.home, host_project_real=view.real_dir, host_copy=view.copy,
                  login=str(c.user or ""))


def _fix(fwd: SocketForward, alias: str) -> str:
    """What the forward saw, with what to do about it."""
    seen = fwd.last_failure
    if seen.startswith(("no socket", "nothing listening")):
        return (f"{seen}: start the engine there (`fab -H {alias} setup`), or point "
                f"DLT_DOCKER_HOST in .env.{alias} at it")
    if fwd.lost:
        return LostNote(f"{seen}: check the network, then rerun")
    return seen


def connection_lost(target: Target) -> bool:
    """Whether the way to ``target`` has died (:meth:`Target.is_alive`)."""
    return not target.is_alive()


def check_alive(target: Target, run_id: str = "") -> None:
    """:meth:`Target.check_alive`."""
    target.check_alive(run_id)
