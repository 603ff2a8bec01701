"""A run's published ports, reachable from this machine: forwarded, and their URLs printed.

Every kind of run calls :func:`forwarded` once its container has started (an attached run for
as long as it runs, a detached local run just to print, `forward RUN` in the foreground, the
background forwarder of a detached remote run): it reads the ports the engine bound on the
host's loopback (:func:`dltasks.engine.spec.bound_ports`: the engine picked the free ones as
it started the container), opens the target's forward for each
(:meth:`dltasks.hosts.target.Target.forward_port`: this machine, the same port; a remote
host, a port here over our SSH connection) and prints one line per port with its URL.

A URL's path is a template (``/lab?token=${JUPYTER_TOKEN}``) kept on the container as a label;
its ``${VAR}`` come from the container's own environment, read through the engine, and are
printed in full only to a terminal. Printed to anything else (a log, a CI job), the values are
``***`` and the line says which command prints the full URL in a terminal.
"""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from dltasks.engine.spec import LABEL_USER, PortBinding, bound_ports
from dltasks.errors import DltError
from dltasks.hosts.target import Target
from dltasks.runs.record import PortRow

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
MASK = "***"


def container_env(inspected: Mapping[str, Any]) -> dict[str, str]:
    """The container's environment (``Config.Env``) as a mapping."""
    env: dict[str, str] = {}
    for item in (inspected.get("Config") or {}).get("Env") or ():
        key, sep, value = str(item).partition("=")
        if sep:
            env[key] = value
    return env


def expand(template: str, env: Mapping[str, str]) -> tuple[str, str]:
    """``template`` with each ``${VAR}`` replaced: (in full, with every value ``***``). A
    variable the container does not have reads as empty."""
    full = _VAR.sub(lambda m: env.get(m.group(1), ""), template)
    masked = _VAR.sub(lambda m: MASK if env.get(m.group(1)) else "", template)
    return full, masked


@dataclass(frozen=True)
class PortUrl:
    """One published port as this machine reaches it."""

    container: int                 # the container's port
    host_ip: str                   # the host's address it is published on (127.0.0.1)
    host_port: int                 # on the host's loopback
    local_port: int                # on this machine's loopback
    url: str                       # in full (secrets in it: for a terminal only)
    masked: str                    # every ${VAR} value as ***

    @property
    def has_secret(self) -> bool:
        return self.url != self.masked


def port_line(kind: str, run_id: str, host: str, p: PortUrl, *, terminal: bool,
              full_url_by: str) -> str:
    """The line printed for ``p``: the URL in full only to a terminal."""
    url = p.url if terminal else p.masked
    line = (f"dlt: {kind or 'run'} {run_id}: {url} (port {p.container} of the container, "
            f"{p.host_ip}:{p.host_port} on {host})")
    if p.has_secret and not terminal:
        line += f"; the full URL: `{full_url_by}` in a terminal"
    return line


def urls_of(ports: Sequence[PortBinding], local: Mapping[int, int],
            env: Mapping[str, str]) -> list[PortUrl]:
    """The URLs of ``ports`` (bound ones) reached on this machine's ``local`` ports."""
    out = []
    for p in ports:
        here = local.get(p.container, p.host)
        full, masked = expand(p.path, env)
        base = f"http://127.0.0.1:{here}"
        out.append(PortUrl(p.container, p.host_ip, p.host, here, base + full, base + masked))
    return out


def port_rows(urls: Sequence[PortUrl]) -> tuple[PortRow, ...]:
    """The record's rows of the run's published ports."""
    return tuple(PortRow(u.container, u.host_ip, u.host_port) for u in urls)


def inspect_run(target: Target, cid: str) -> dict[str, Any]:
    """The engine's record of the run's container (its ports, labels and environment)."""
    return target.engine.inspect_container(cid)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def forwarded(target: Target, run_id: str, cid: str,
              ports: Sequence[PortBinding] = (), *, kind: str = "",
              local_ports: Mapping[int, int] | None = None, say: bool = True,
              forward: bool = True, out: TextIO | None = None) -> Iterator[list[PortUrl]]:
    """The run's published ports, reachable here while in the block; yields their URLs.

    ``ports``: the ports the run asked for (their paths are on the container's labels too;
    empty: every port the container has bound). ``local_ports``: container port -> the port
    wanted on this machine (else the host's number when free here, else any). Prints one line
    per port (``say``) to ``out`` (stderr). Leaving the block ends the forwards, never the run.
    ``forward`` off: no forward is opened (another process holds them on ``local_ports``, or
    only the record's rows are wanted). A port the engine did not bind is no URL. A run
    whose user label names another login than ours gets no ``${VAR}`` expanded: its
    secrets are never read, whoever calls."""
    stream = out if out is not None else sys.stderr
    inspected = inspect_run(target, cid)
    bound = bound_ports(inspected)
    if ports:
        asked = {p.container: p for p in ports}
        bound = tuple(p if p.path or not asked.get(p.container) else
                      PortBinding(p.container, p.host, p.host_ip, asked[p.container].path)
                      for p in bound if p.container in asked)
    # a run that is not ours (another login's, by its user label): its secrets stay unread
    labels = (inspected.get("Config") or {}).get("Labels") or {}
    ours = not target.login or labels.get(LABEL_USER, "") in ("", target.login)
    env = container_env(inspected) if ours else {}
    wanted = dict(local_ports or {})
    with contextlib.ExitStack() as stack:
        local: dict[int, int] = {}
        for p in bound:
            local[p.container] = stack.enter_context(
                target.forward_port(p.host, wanted.get(p.container, 0))) if forward \
                else wanted.get(p.container, p.host)
        found = urls_of(bound, local, env)
        if forward and kind in SERVICES:
            _until_answering(target, cid, found, kind, stream if say else None)
        if say:
            terminal = _is_terminal(stream)
            by = target.task_command(f"forward {run_id}")
            for u in found:
                print(port_line(kind, run_id, target.name, u, terminal=terminal,
                                full_url_by=by), file=stream, flush=True)
        yield found


#: Kinds of run that serve a web page: their URL is printed once it answers (a click on it
#: right away would find the server still starting).
SERVICES = ("notebook", "tensorboard")
#: How long a service may take to answer before its URL is printed anyway; below the
#: background forwarder's report deadline (:mod:`dltasks.runs.forwarder`).
READY_TIMEOUT = 45.0


def answers(port: int, timeout: float = 2.0) -> bool:
    """Whether an HTTP server answers on this machine's ``port`` (any answer counts: a 403
    without the token is a server that is up). A connection the engine's proxy or our SSH
    forward accepts but closes at once is no answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"HEAD / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return conn.recv(1) != b""
    except OSError:
        return False


def _until_answering(target: Target, cid: str, urls: Sequence[PortUrl], kind: str,
                     stream: TextIO | None) -> None:
    """Wait (at most :data:`READY_TIMEOUT`) until every URL's server answers, while the
    container runs; one line says what it waits for when it takes more than a moment."""
    deadline = time.monotonic() + READY_TIMEOUT
    said = False
    for u in urls:
        while not answers(u.local_port):
            state = (inspect_run(target, cid).get("State") or {})
            if not state.get("Running") or time.monotonic() > deadline:
                return  # it ended (its end says why), or it is slow: the URL all the same
            if not said and stream is not None:
                print(f"dlt: waiting for the {kind} to answer on port {u.container}...",
                      file=stream, flush=True)
                said = True
            time.sleep(0.5)


def check_publishable(target: Target, ports: Sequence[PortBinding], network: str) -> None:
    """Refuse, before anything starts, ports the engine could not publish: a container on the
    default network of an engine without a bridge (``dockerd --bridge=none``) gets no network
    at all, and the engine ignores its port bindings without a word."""
    if not ports or network:
        return
    if not target.engine.has_network("bridge"):
        raise DltError(f"--port {ports[0].container}: {target.engine_where} has no bridge "
                       "network (dockerd runs with --bridge=none), so no container port can "
                       "be published there; run without --port (`inv exec RUN` reaches a "
                       "port from inside the container), or start dockerd with a bridge",
                       code=2)


def check_ports_allowed(ports: Sequence[PortBinding], *, nnodes: int, slurm: bool) -> None:
    """``--port`` is for one container on one host: not a job across hosts, not Slurm."""
    if ports and (nnodes > 1 or slurm):
        raise DltError("--port publishes a port of one run's container on one host: not with "
                       f"{'--slurm' if slurm else '--nnodes'}; start a single run with --port, "
                       "or reach the node's port with `ssh -L`")
