"""A :class:`~dltasks.hosts.target.Target` for a remote host reached by a fabric Connection.

One SSH connection carries everything: shell commands (exec channels) and the engine (a
forwarded socket, see :mod:`.forward`). The connection is opened here, with host keys checked
strictly (:mod:`.hostkeys`), so a refused key or login fails before any work starts.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from dltasks.engine.client import EngineAddr, open_engine
from dltasks.engine.endpoint import VIEW_SCRIPT, DockerView, Endpoint, parse_view, resolve_endpoint
from dltasks.errors import ConnectionLost, DltError, LostNote
from dltasks.hosts.background import in_background
from dltasks.hosts.remote.forward import SocketForward
from dltasks.hosts.remote.hostkeys import harden, open_checked
from dltasks.hosts.remote.sshconfig import SshHost
from dltasks.hosts.shell import Shell, quote
from dltasks.hosts.target import REMOTE, HostCopy, Resources, Target
from dltasks.settings import Settings


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


def quick_exec(transport: Any, command: str, timeout: float = 60.0,
               data: bytes = b"") -> tuple[int, str, str]:
    """Run a short command in an exec channel, ``data`` on its stdin: (exit code, stdout,
    stderr); stdout keeps undecodable bytes (surrogateescape: host paths come back as-is).

    For our own small probes (home folder, target folder checks): a bare paramiko channel costs
    a round trip, where ``Connection.run`` adds tens of milliseconds of runner machinery.
    """
    chan = transport.open_session(timeout=timeout)
    try:
        chan.settimeout(timeout)
        chan.exec_command(command)
        if data:
            chan.sendall(data)
        chan.shutdown_write()
        out = chan.makefile("rb").read().decode(errors="surrogateescape")
        err = chan.makefile_stderr("rb").read().decode(errors="replace")
        return int(chan.recv_exit_status()), out, err
    finally:
        chan.close()


#: $HOME; the project folder's real path when it exists and is no symlink, else ""; the
#: docker view's lines (:data:`dltasks.engine.endpoint.VIEW_SCRIPT`, each starting "dv<TAB>"); then,
#: when $2 (a sync stamp) is given, :data:`.synced.CHECK_SCRIPT`'s lines.
_DESCRIBE = ('printf "%s\\n" "$HOME"; real=; if cd "$HOME"; then [ -n "$1" ] && [ -d "$1" ] && '
             '[ ! -L "$1" ] && real=$(cd -- "$1" && pwd -P); fi; printf "%s\\n" "$real"; '
             f'{VIEW_SCRIPT}; [ -n "$2" ] || exit 0; ')


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
    from dltasks.hosts.remote.synced import CHECK_SCRIPT, parse_check, stamp_path

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
    view = [ln for ln in lines[2:] if ln.startswith("dv\t")]
    rest = [ln for ln in lines[2:] if not ln.startswith("dv\t")]
    return HostView(home, real, parse_view(view, home), parse_check(rest) if stamp else None)


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
    return Target(name=host.alias, kind=REMOTE,
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
        raise ConnectionLost(f"lost the SSH connection to {target.name}{again}", code=255)
