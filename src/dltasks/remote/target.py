"""A :class:`~dltasks.target.Target` for a remote host reached by a fabric Connection.

One SSH connection carries everything: shell commands (exec channels) and the engine (a
forwarded socket, see :mod:`.forward`). The connection is opened here, with host keys checked
strictly (:mod:`.hostkeys`), so a refused key or login fails before any work starts.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..background import in_background
from ..engine import open_engine
from ..errors import DltError
from ..settings import Settings
from ..shell import Shell, quote
from ..target import Target
from .forward import DEFAULT_REMOTE_SOCKET, SocketForward
from .hostkeys import harden, open_checked
from .sshconfig import SshHost

if TYPE_CHECKING:
    from .synced import HostCopy


def remote_engine_url(settings: Settings) -> str:
    """The engine URL as seen ON the host: DLT_DOCKER_HOST (e.g. from .env.<host>), else the
    standard socket. The laptop's own DOCKER_HOST never applies to a remote host."""
    return settings.docker_host or "unix://" + DEFAULT_REMOTE_SOCKET


def from_home(remote_dir: str) -> str:
    """DLT_REMOTE_DIR as a path to ``cd`` to from the host's home (absolute stays absolute);
    "" when unset."""
    d = remote_dir.strip()
    if not d:
        return ""
    if d == "~" or d.startswith("~/"):
        d = "." + d[1:]
    elif d.startswith("~"):
        raise DltError(f"DLT_REMOTE_DIR={remote_dir!r}: ~user paths are not supported; "
                       "write an absolute path or ~/path")
    return posixpath.normpath(d)


def expand_remote_dir(remote_dir: str, home: str) -> str:
    """``~``/``~/x``/relative paths made absolute against the host's home; normalised."""
    d = from_home(remote_dir)
    return posixpath.normpath(posixpath.join(home, d)) if d else ""


def quick_exec(transport: Any, command: str, timeout: float = 60.0) -> tuple[int, str, str]:
    """Run a short command in an exec channel: (exit code, stdout, stderr).

    For our own small probes (home folder, target folder checks): a bare paramiko channel costs
    a round trip, where ``Connection.run`` adds tens of milliseconds of runner machinery.
    """
    chan = transport.open_session(timeout=timeout)
    try:
        chan.settimeout(timeout)
        chan.exec_command(command)
        chan.shutdown_write()
        out = chan.makefile("rb").read().decode(errors="replace")
        err = chan.makefile_stderr("rb").read().decode(errors="replace")
        return int(chan.recv_exit_status()), out, err
    finally:
        chan.close()


#: $HOME; the project folder's real path when it exists and is no symlink, else "";
#: then, when $2 (a sync stamp) is given, :data:`.synced.CHECK_SCRIPT`'s lines.
_DESCRIBE = ('printf "%s\\n" "$HOME"; real=; if cd "$HOME"; then [ -n "$1" ] && [ -d "$1" ] && '
             '[ ! -L "$1" ] && real=$(cd -- "$1" && pwd -P); fi; printf "%s\\n" "$real"; '
             '[ -n "$2" ] || exit 0; ')


@dataclass(frozen=True)
class HostView:
    """The host as one round trip saw it."""

    home: str
    real_dir: str               # the project folder's real path when it exists there, else ""
    copy: HostCopy | None = None  # with ``check_sync``: what the host says of its copy


def describe_host(c: Any, host: SshHost, remote_dir: str = "", *,
                  check_sync: bool = False) -> HostView:
    """One round trip: the login's home, the real path of the project folder ``remote_dir``
    when it already exists there as a folder, and (``check_sync``) the state of the last sync
    to it (:mod:`.synced`)."""
    from .synced import CHECK_SCRIPT, parse_check, stamp_path

    rel = from_home(remote_dir)
    stamp = stamp_path(remote_dir) if check_sync and rel else ""
    script = _DESCRIBE + CHECK_SCRIPT + "; exit 0"
    code, out, err = quick_exec(c.transport, quote(["sh", "-c", script, "_", rel, stamp]))
    lines = out.split("\n")
    home = lines[0].strip() if lines else ""
    if code != 0 or not home.startswith("/"):
        raise DltError(f"cannot read $HOME on {host.alias} (exit {code}): "
                       f"{(err or out).strip()[:200]}; check the account's shell")
    real = lines[1].strip() if len(lines) > 1 else ""
    return HostView(home, real, parse_check(lines[2:]) if stamp else None)


def remote_home(c: Any, host: SshHost) -> str:
    return describe_host(c, host).home


def remote_target(c: Any, settings: Settings, *, engine_soon: bool = True,
                  check_sync: bool = False) -> Target:
    """Open ``c`` (strict host keys), forward the host's engine, and describe the host.

    ``engine_soon``: start talking to the engine now (the task will). ``check_sync``: ask
    the host, in the same round trip, what a sync needs to know (:mod:`.synced`).
    """
    was_open = bool(getattr(c, "is_connected", False))
    host = harden(c, accept_new=settings.accept_new_host_key)
    if not was_open:
        open_checked(c, host)
    closers: list[Any] = [] if was_open else [c.close]
    # Keepalives, as ServerAliveInterval (default 15 s): an idle follow notices a dead link.
    c.transport.set_keepalive(int(c.ssh_config.get("serveraliveinterval", 15) or 15))
    try:
        fwd = SocketForward(c.transport, remote_engine_url(settings))
        # The engine's first answer (a channel opened through SSH) comes while we ask the host.
        engine = in_background(open_engine, fwd.url) if engine_soon else None
        view = describe_host(c, host, settings.remote_dir, check_sync=check_sync)
        project_dir = expand_remote_dir(settings.remote_dir, view.home)
    except BaseException:
        for close in closers:
            close()
        raise
    closers.insert(0, fwd.close)
    t = Target(name=host.alias, shell=Shell(c, sudo_password=settings.sudo_password),
               settings=settings, is_remote=True, host_project_dir=project_dir,
               host_home=view.home, host_project_real=view.real_dir, host_copy=view.copy,
               engine_url=fwd.url, _closers=closers[::-1], _engine_future=engine)
    # Target.close pops from the end: the forward goes first, then the connection.
    return t


def connection_lost(target: Target) -> bool:
    """Whether ``target`` is remote and its SSH connection has died (the forwarded engine
    socket then ends streams with a plain EOF, which looks like a finished run)."""
    if not target.is_remote:
        return False
    transport = getattr(target.shell.c, "transport", None)
    return transport is None or not transport.active


def check_alive(target: Target, run_id: str = "") -> None:
    """Raise a one-line DltError when the connection to a remote target was lost.

    Call it after a log stream or an attached run ends: runs outlive the connection, so the
    message says how to reattach.
    """
    if connection_lost(target):
        again = (f"; the run goes on there: reattach with `fab -H {target.name} logs {run_id} "
                 "--follow`") if run_id else ""
        raise DltError(f"lost the SSH connection to {target.name}{again}", code=255)
