"""One remote host as ``~/.ssh/config`` resolves it, and the OpenSSH command that reaches it.

Fabric already reads ``~/.ssh/config`` (and ``/etc/ssh/ssh_config``) through paramiko and
honours HostName, User, Port, IdentityFile (``~`` expanded against $HOME), ConnectTimeout,
ForwardAgent, ProxyJump (as a chain of gateway Connections) and ProxyCommand. It ignores
UserKnownHostsFile, GlobalKnownHostsFile, StrictHostKeyChecking and Include, and it accepts
every host key (see :mod:`.hostkeys`, which closes that gap).

rsync needs the same host through the ``ssh`` program. Rather than let ``ssh`` read the config
again (it reads ``~`` from the password database, not $HOME, and it would not pass our
known_hosts to a ProxyJump hop), :func:`ssh_argv` spells out what fabric resolved, so both
clients reach the same address, as the same user, with the same keys and the same known_hosts.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Where OpenSSH looks when the config names no UserKnownHostsFile / GlobalKnownHostsFile.
DEFAULT_USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
DEFAULT_GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")


@dataclass(frozen=True)
class SshHost:
    """A host as resolved from the name the user typed (``alias``), plus how to get there."""

    alias: str
    hostname: str
    user: str
    port: int
    identity_files: tuple[str, ...] = ()
    #: The first hop of a ProxyJump chain (itself possibly jumping), or None.
    jump: SshHost | None = None
    #: A ProxyCommand from ssh config (used when there is no ProxyJump).
    proxy_command: str = ""
    #: Files whose keys this host's key is checked against (user files first).
    known_hosts: tuple[str, ...] = ()
    connect_timeout: int | None = None

    @property
    def key_name(self) -> str:
        """The name its key is filed under in known_hosts (``[host]:port`` off port 22)."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def _expand(path: str) -> str:
    return os.path.expanduser(path)


def known_hosts_files(ssh_config: Mapping[str, Any]) -> tuple[str, ...]:
    """UserKnownHostsFile then GlobalKnownHostsFile, as OpenSSH reads them (``~`` = $HOME)."""
    out: list[str] = []
    for key, default in (("userknownhostsfile", DEFAULT_USER_KNOWN_HOSTS),
                         ("globalknownhostsfile", DEFAULT_GLOBAL_KNOWN_HOSTS)):
        raw = ssh_config.get(key)
        names = shlex.split(raw) if isinstance(raw, str) else list(raw or default)
        out.extend(_expand(n) for n in names if n.lower() != "none")
    return tuple(dict.fromkeys(out))


def from_connection(c: Any) -> SshHost:
    """Read a ``fabric.Connection`` (not opened) into an :class:`SshHost`, gateways included."""
    cfg: Mapping[str, Any] = c.ssh_config or {}
    keys: list[str] = []
    raw_keys = (c.connect_kwargs or {}).get("key_filename") or []
    for k in [raw_keys] if isinstance(raw_keys, str) else raw_keys:
        keys.append(_expand(str(k)))
    gw = c.gateway
    jump = from_connection(gw) if gw is not None and hasattr(gw, "ssh_config") else None
    return SshHost(
        alias=str(getattr(c, "original_host", None) or c.host),
        hostname=str(c.host),
        user=str(c.user),
        port=int(c.port),
        identity_files=tuple(dict.fromkeys(keys)),
        jump=jump,
        proxy_command=gw if isinstance(gw, str) else "",
        known_hosts=known_hosts_files(cfg),
        connect_timeout=c.connect_timeout,
    )


def ssh_argv(host: SshHost, *, program: str = "ssh") -> list[str]:
    """An OpenSSH command line reaching ``host`` exactly as fabric does, strict host keys.

    ``-F /dev/null``: nothing is read again from ssh config; everything comes from ``host``.
    The host name ends the list, so callers append a remote command (or rsync appends its own).
    """
    argv = [program, "-F", "/dev/null", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "UserKnownHostsFile=" + " ".join(_quote_path(p) for p in host.known_hosts
                                                   if not p.startswith("/etc/ssh/")),
            "-o", "GlobalKnownHostsFile=" + " ".join(_quote_path(p) for p in host.known_hosts
                                                     if p.startswith("/etc/ssh/")),
            "-p", str(host.port), "-l", host.user]
    if host.connect_timeout:
        argv += ["-o", f"ConnectTimeout={host.connect_timeout}"]
    for key in host.identity_files:
        argv += ["-i", key]
    if host.jump is not None:
        hop = ssh_argv(host.jump, program=program)
        argv += ["-o", "ProxyCommand=" + " ".join(_quote_arg(a) for a in hop[:-1])
                 + " -W %h:%p " + _quote_arg(hop[-1])]
    elif host.proxy_command:
        argv += ["-o", "ProxyCommand=" + host.proxy_command]
    return [*argv, host.hostname]


def _quote_path(p: str) -> str:
    # ssh splits UserKnownHostsFile on whitespace and honours double quotes.
    return f'"{p}"' if any(ch.isspace() for ch in p) else p


def _quote_arg(a: str) -> str:
    # ProxyCommand is run through /bin/sh by ssh; %h/%p must stay unquoted for ssh to expand.
    return shlex.quote(a.replace("%", "%%"))


def rsh_command(host: SshHost) -> str:
    """The ``rsync -e`` value: ssh options without the host name (rsync appends it)."""
    argv = ssh_argv(host)[:-1]
    return " ".join(shlex.quote(a) for a in argv)
