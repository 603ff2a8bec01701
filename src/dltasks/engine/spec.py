"""RunSpec: everything about one container run, as plain data, and its two renderings.

A RunSpec becomes the Engine API's create-container arguments (what we execute) and the
equivalent ``docker run`` command line (what we print and record). Both come from the same
fields, so what we show is what we run.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dltasks.errors import DltError
from dltasks.gpu.driver import DeviceNode
from dltasks.gpu.selection import GpuSelection, cli_flags, device_requests
from dltasks.settings.masking import mask_env

#: Labels every dltasks container carries; `ps`, `logs` and `stop` find runs by them.
LABEL_RUN, LABEL_PROJECT, LABEL_KIND = "dltasks.run", "dltasks.project", "dltasks.kind"
LABEL_HOST, LABEL_STARTED, LABEL_GPUS = "dltasks.host", "dltasks.started", "dltasks.gpus"
LABEL_RECORD, LABEL_USER = "dltasks.record", "dltasks.user"
#: A node of a multi-host job (dltasks.runs.job): its rank, and the job's hosts in rank order.
LABEL_NODE, LABEL_NODES = "dltasks.node", "dltasks.nodes"
#: ``dltasks.url.<container port>``: the URL path of a published port (:class:`PortBinding`).
LABEL_URL = "dltasks.url."
#: The label keys :mod:`dltasks.gpu.claims` reads a run's GPU claim from.
CLAIM_LABELS = {"run": LABEL_RUN, "user": LABEL_USER, "project": LABEL_PROJECT,
                "started": LABEL_STARTED, "gpus": LABEL_GPUS}

_SHELL_CHARS = re.compile(r"[|&;<>()$`\\\"'*?\[\]#~=%{}\n]")


@dataclass(frozen=True)
class Mount:
    source: str          # absolute path on the target host
    target: str          # absolute path in the container
    readonly: bool = False


@dataclass(frozen=True)
class PortBinding:
    """A container's TCP port published on the host's loopback (``--port [HOST:]CONTAINER``).

    Never on all interfaces: on a shared server anyone could reach it. ``host`` 0 lets the
    engine pick a free port as it starts the container, which is atomic (no other run or
    program can take it between the pick and the bind); the port it picked is read back from
    the started container (:func:`bound_ports`). ``path``: what follows the address in the
    port's URL, a template such as ``/lab?token=${JUPYTER_TOKEN}`` whose ``${VAR}`` are the
    container's own variables, expanded only as the URL is printed (:mod:`dltasks.runs.ports`);
    the plan keeps it as the label ``dltasks.url.<container>`` (a template: never a secret)."""

    container: int
    host: int = 0
    host_ip: str = "127.0.0.1"
    path: str = ""

    @property
    def key(self) -> str:
        """The Engine API's name of the container port."""
        return f"{self.container}/tcp"

    def describe(self) -> str:
        """``127.0.0.1:8888->8888`` (the host side ``127.0.0.1:?`` before the engine picks)."""
        return f"{self.host_ip}:{self.host or '?'}->{self.container}"


def parse_port(text: str) -> PortBinding:
    """``--port`` values: ``CONTAINER`` (the engine picks the host's port) or ``HOST:CONTAINER``."""
    parts = text.strip().split(":")
    ok = 1 <= len(parts) <= 2 and all(p.isdigit() and 1 <= int(p) <= 65535 for p in parts)
    if not ok:
        raise DltError(f"--port {text!r}: write CONTAINER or HOST:CONTAINER, ports 1-65535 "
                       "(e.g. --port 8888 or --port 8890:8888); it is published on the "
                       "host's 127.0.0.1 only")
    if len(parts) == 1:
        return PortBinding(int(parts[0]))
    return PortBinding(int(parts[1]), int(parts[0]))


def parse_ports(values: Sequence[str]) -> tuple[PortBinding, ...]:
    """Every ``--port`` (repeatable; one container port once)."""
    ports = tuple(parse_port(v) for v in values)
    seen: set[int] = set()
    for p in ports:
        if p.container in seen:
            raise DltError(f"--port: container port {p.container} is given twice; publish "
                           "each container port once")
        seen.add(p.container)
    return ports


def url_labels(ports: Sequence[PortBinding]) -> dict[str, str]:
    """The labels that keep each port's URL path template on its container."""
    return {f"{LABEL_URL}{p.container}": p.path for p in ports if p.path}


def bound_ports(inspected: Mapping[str, Any]) -> tuple[PortBinding, ...]:
    """The ports a started container has published, from the engine's inspect record (each
    with its URL path template from the container's labels)."""
    found = []
    labels = ((inspected.get("Config") or {}).get("Labels") or {})
    ports = ((inspected.get("NetworkSettings") or {}).get("Ports") or {})
    for key, binds in sorted(ports.items()):
        name, _, proto = key.partition("/")
        if proto != "tcp" or not name.isdigit():
            continue
        for b in binds or ():
            if str(b.get("HostPort") or "").isdigit():
                found.append(PortBinding(int(name), int(b["HostPort"]), b.get("HostIp") or "",
                                         str(labels.get(f"{LABEL_URL}{name}") or "")))
    return tuple(found)


@dataclass(frozen=True)
class RunSpec:
    image: str
    command: tuple[str, ...]
    gpus: GpuSelection = GpuSelection("none")
    mounts: tuple[Mount, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str = "/workspace"
    user: str | None = None             # "uid:gid"; None runs as the image's user (root)
    ipc_host: bool = True
    shm_size: str = ""                  # when set, replaces --ipc=host
    labels: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None
    interactive: bool = False           # stdin open + tty (shell)
    init: bool = True                   # tini as PID 1: signals reach the code, zombies reaped
    #: How the GPUs get in (dltasks.gpu.modes): "runtime" (a device request), "cdi" or "direct"
    #: (device nodes and driver mounts, or CDI requests), "none".
    gpu_mode: str = "runtime"
    devices: tuple[DeviceNode, ...] = ()      # device nodes given to the container
    cdi_devices: tuple[str, ...] = ()   # CDI names (nvidia.com/gpu=0) for an engine with CDI
    network: str = ""                   # "host" for the nodes of a multi-host job
    ports: tuple[PortBinding, ...] = ()  # published on the host's loopback (--port)


def command_argv(cmd: str, args: tuple[str, ...] | list[str] = ()) -> tuple[str, ...]:
    """A configured command string plus extra args as argv; shell syntax runs through sh -c."""
    if _SHELL_CHARS.search(cmd.replace("'", "").replace('"', "")) is None and (
        "'" not in cmd and '"' not in cmd
    ):
        return (*cmd.split(), *args)
    if not args:
        return ("sh", "-c", cmd)
    return ("sh", "-c", cmd + ' "$@"', "sh", *args)


def words_argv(words: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The words a user typed after ``--`` (``run -- CMD``, already split by their shell) as
    argv: run exactly as given, no shell. Only ONE word holding spaces or shell syntax (a whole
    command line quoted as one, the way ssh takes it: ``'make data && ls'``) runs through
    ``sh -c``: as argv it could only fail as a program name."""
    if len(words) == 1 and (_SHELL_CHARS.search(words[0]) or any(ch.isspace()
                                                                 for ch in words[0])):
        return ("sh", "-c", words[0])
    return tuple(words)


_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def size_bytes(text: str) -> int:
    """'16g' -> bytes (Docker's binary units)."""
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\s*$", text, re.IGNORECASE)
    if not m:
        raise DltError(f"size {text!r}: write it like 512m or 16g")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def host_config(spec: RunSpec) -> dict[str, Any]:
    """The Engine API HostConfig for this run."""
    hc: dict[str, Any] = {
        "Mounts": [{"Type": "bind", "Source": m.source, "Target": m.target,
                    "ReadOnly": m.readonly} for m in spec.mounts],
        "Init": spec.init,
    }
    if spec.network:
        hc["NetworkMode"] = spec.network
    if spec.ports:
        hc["PortBindings"] = {p.key: [{"HostIp": p.host_ip, "HostPort": str(p.host or "")}]
                              for p in spec.ports}
    if spec.shm_size:
        hc["ShmSize"] = size_bytes(spec.shm_size)
    elif spec.ipc_host:
        hc["IpcMode"] = "host"
    if spec.gpu_mode == "runtime":
        reqs = device_requests(spec.gpus)
        if reqs:
            hc["DeviceRequests"] = reqs
    if spec.cdi_devices:
        hc["DeviceRequests"] = [{"Driver": "cdi", "Count": 0, "DeviceIDs": list(spec.cdi_devices),
                                 "Capabilities": None, "Options": {}}]
    if spec.devices:
        hc["Devices"] = [{"PathOnHost": n.host, "PathInContainer": n.path,
                          "CgroupPermissions": "rwm"} for n in spec.devices]
    return hc


def create_config(spec: RunSpec) -> dict[str, Any]:
    """The Engine API body of ``POST /containers/create`` (the name goes in the query)."""
    return {
        "Image": spec.image,
        "Cmd": list(spec.command),
        "Env": [f"{k}={v}" for k, v in spec.env.items()],
        "WorkingDir": spec.workdir,
        "User": spec.user or "",
        "Labels": dict(spec.labels),
        "Tty": spec.interactive,
        "OpenStdin": spec.interactive,
        "StdinOnce": spec.interactive,
        "AttachStdin": spec.interactive,
        "AttachStdout": True,
        "AttachStderr": True,
        "HostConfig": host_config(spec),
        **({"ExposedPorts": {p.key: {} for p in spec.ports}} if spec.ports else {}),
    }


def docker_run_cmdline(spec: RunSpec, *, detach: bool = False) -> str:
    """The equivalent ``docker run`` command line, secrets masked."""
    argv = ["docker", "run", "--rm" if not detach else "--detach"]
    if spec.interactive:
        argv.append("-it")
    if spec.name:
        argv += ["--name", spec.name]
    if spec.init:
        argv.append("--init")
    if spec.network:
        argv.append(f"--network={spec.network}")
    for p in spec.ports:
        argv += ["-p", f"{p.host_ip}:{p.host or ''}:{p.container}"]
    if spec.gpu_mode == "runtime":
        argv += cli_flags(spec.gpus)
    for name in spec.cdi_devices:
        argv += ["--device", name]
    for n in spec.devices:
        argv += ["--device", n.host if n.host == n.path else f"{n.host}:{n.path}"]
    if spec.shm_size:
        argv += ["--shm-size", spec.shm_size]
    elif spec.ipc_host:
        argv.append("--ipc=host")
    if spec.user:
        argv += ["--user", spec.user]
    for m in spec.mounts:
        argv += ["-v", f"{m.source}:{m.target}" + (":ro" if m.readonly else "")]
    argv += ["-w", spec.workdir]
    for k, v in mask_env(spec.env).items():
        argv += ["-e", f"{k}={v}"]
    for k, v in spec.labels.items():
        argv += ["--label", f"{k}={v}"]
    argv.append(spec.image)
    argv += spec.command
    out = []
    for a in argv:
        out.append(a if a.startswith('"device=') else shlex.quote(a))
    return " ".join(out).replace("'\"device=", "'device=")
