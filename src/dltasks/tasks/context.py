"""`context HOST`: a docker context for a GPU host, so editors and the docker CLI reach its engine.

`docker context create NAME --docker host=ssh://HOST` (``update`` only for ``--force`` on a NAME
that points elsewhere; one already pointing at HOST is left as it is, description and all)
makes the plain docker CLI, VS Code's Dev Containers ("Attach to Running Container...") and
every tool that reads docker contexts talk to the host's engine over the user's own ``ssh``:
on the host, ``docker system dial-stdio`` carries the Engine API. The docker CLI's current
context is never changed, and we never suggest changing it (``DOCKER_CONTEXT=NAME``, ``docker
context use``): dltasks follows it too, so ``inv train`` would then run on the host's engine
with this machine's paths. ``docker --context NAME`` and the editor's own setting name it per
command instead.

HOST is spelled as the user's ssh resolves it: the alias as typed (so the ssh config's
HostName, ProxyJump and keys still apply), with ``user@`` and ``:port`` when the ssh config
or the ``-H`` spec gives them.
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass
from typing import Any

from dltasks.errors import DltError
from dltasks.tasks._common import dlt_task

#: What docker accepts as a context name (docker/cli's validation): a letter or digit first.
_NAME_OK = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.+-]*$")
_NOT_ALLOWED = re.compile(r"[^a-zA-Z0-9_.+-]+")


@dataclass(frozen=True)
class SshSpot:
    """Where the context's ``ssh`` goes: the alias as typed, user and port when set."""

    alias: str
    user: str = ""
    port: int = 0

    @property
    def url(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"ssh://{user}{self.alias}{port}"

    def ssh_argv(self, *words: str) -> list[str]:
        """The user's ``ssh`` to this spot, as the docker CLI runs it, never prompting."""
        argv = ["ssh", "-n", "-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
        if self.user:
            argv += ["-l", self.user]
        if self.port:
            argv += ["-p", str(self.port)]
        return [*argv, "--", self.alias, *words]


def context_name(host: str) -> str:
    """A docker context name for ``host`` (``user@gpu-1.lab:22`` -> ``gpu-1.lab``): the alias,
    with what docker does not allow in a name turned into ``-``."""
    alias = host.rsplit("@", 1)[-1].split(":", 1)[0]
    return _NOT_ALLOWED.sub("-", alias).lstrip("-_.+")


def spot_of(conn: Any) -> SshSpot:
    """The spot of a fabric Connection (not opened): user and port only where the ssh config
    or the host spec set them (else the user's ssh picks them, as it would for ``ssh HOST``)."""
    cfg = conn.ssh_config or {}
    alias = str(getattr(conn, "original_host", None) or conn.host)
    user = str(conn.user) if "user" in cfg or conn.user != conn.config.user else ""
    port = int(conn.port) if "port" in cfg or int(conn.port) != 22 else 0
    return SshSpot(alias, user, port)


def _docker(*args: str) -> Any:
    from dltasks.hosts.shell import local

    return local(["docker", *args])


def _existing(name: str) -> str | None:
    """The engine address context ``name`` points at; None when there is no such context."""
    r = _docker("context", "inspect", name, "--format", "{{.Endpoints.docker.Host}}")
    return r.stdout.strip() if r.ok else None


def _check_reach(spot: SshSpot, host: str, again: str) -> None:
    """The host answers over the user's ssh without a prompt, and its docker CLI reaches its
    engine (what ``docker system dial-stdio`` needs): a context made without that is broken."""
    from dltasks.hosts.shell import local

    r = local(spot.ssh_argv("docker", "version", "--format", "'{{.Server.Version}}'"))
    if r.code == 255:
        raise DltError(f"ssh to {host} ({spot.url}) failed without a prompt (BatchMode): "
                       f"{r.tail(1)}; make `ssh {host}` work with your key (ssh-add, "
                       f"known_hosts), then {again} again")
    if not r.ok or not r.stdout.strip():
        raise DltError(f"on {host}, `docker version` did not reach the engine (exit {r.code}): "
                       f"{r.tail(1)}; the docker CLI must be installed there and the login in "
                       f"group docker: `fab -H {host} doctor` says what is missing")


def make_context(spot: SshSpot, name: str, *, force: bool, host: str,
                 again: str = "") -> str:
    """Create or update docker context ``name`` for ``spot``; returns what was done.
    ``again``: the command that makes it, as a hint (`inv context --host gpu1`)."""
    again = again or f"`inv context --host {host}`"
    if not _NAME_OK.match(name) or name == "default":
        raise DltError(f"{name!r} cannot name a docker context (letters, digits, _ . + -, "
                       "a letter or digit first; not `default`): pass --name NAME")
    if shutil.which("docker") is None:
        raise DltError("no docker CLI on this machine: a docker context is the docker CLI's; "
                       "install it (the docker-ce-cli or docker.io package, or Docker Desktop), "
                       f"then {again} again")
    old = _existing(name)
    if old is not None and old != spot.url and not force:
        raise DltError(f"docker context {name} exists and points at {old}, not {spot.url}: "
                       f"pass --name OTHER, or --force to point it at {host}")
    _check_reach(spot, host, again)
    if old == spot.url:
        return "up to date"  # nothing to write: the user's own description stays as it is
    verb = "create" if old is None else "update"
    r = _docker("context", verb, name, "--description", f"dltasks: {host}",
                "--docker", f"host={spot.url}")
    if not r.ok:
        raise DltError(f"`docker context {verb} {name}` failed: {r.tail(1)}")
    return "created" if old is None else "updated"


@dlt_task(host_word="host", help={
    "host": "The host, as you ssh to it (an alias of ~/.ssh/config, user@host, host:port): "
            "`dlt context HOST`, `inv context --host HOST`. With fab: -H's host, no --host.",
    "name": "The context's name (default: the host's alias).",
    "force": "Point an existing context of that name at this host although it points "
             "elsewhere."})
def context(c: Any, host: str | None = "", name: str = "", force: bool = False) -> None:
    """Make (or update) a docker context for HOST, so `docker --context HOST ps`, VS Code's
    Dev Containers and other docker tools reach its engine over your ssh; the docker CLI's
    current context is left as it is."""
    from fabric import Config, Connection

    from dltasks.hosts.target import ssh_host_of
    from dltasks.tasks.invocation import invocation

    host = host or ""
    if ssh_host_of(c):
        if host:
            raise DltError("with fab -H the host is -H's: `inv context` (no --host)", code=2)
        conn, shown, again = c, ssh_host_of(c) or "", "`inv context`"
    else:
        if not host:
            raise DltError("context needs a host: `inv context --host HOST` (or `fab -H HOST "
                           "context`)", code=2)
        conn, shown = Connection(host, config=Config()), host
        # dlt's parser takes the host as a word; inv's and fab's only as --host
        again = (f"`inv context {host}`" if invocation(c).program == "dlt"
                 else f"`inv context --host {host}`")
    spot = spot_of(conn)
    name = name or context_name(spot.alias)
    done = make_context(spot, name, force=force, host=shown, again=again)
    print(f"docker context {name} {done}: {spot.url}")
    print(f"  the docker CLI:  docker --context {name} ps")
    print(f"  VS Code: Docker extension, pick context {name} (or set \"docker.context\": "
          f"\"{name}\"), then Dev Containers: Attach to Running Container... and pick the "
          "run's container (dlt-<project>-<run id>)")
    print("  your current docker context is unchanged; leave it so: dltasks follows "
          f"DOCKER_CONTEXT and `docker context use`, so with {name} current `inv train` would "
          f"run on {shown}'s engine with this machine's paths (use `fab -H {shown} ...`)",
          file=sys.stderr)
