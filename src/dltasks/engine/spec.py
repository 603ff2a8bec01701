"""RunSpec: everything about one container run, as plain data, and its two renderings.

A RunSpec becomes the Engine API's create-container arguments (what we execute) and the
equivalent ``docker run`` command line (what we print and record). Both come from the same
fields, so what we show is what we run.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
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


def command_argv(cmd: str, args: tuple[str, ...] | list[str] = ()) -> tuple[str, ...]:
    """A configured command string plus extra args as argv; shell syntax runs through sh -c."""
    if _SHELL_CHARS.search(cmd.replace("'", "").replace('"', "")) is None and (
        "'" not in cmd and '"' not in cmd
    ):
        return (*cmd.split(), *args)
    if not args:
        return ("sh", "-c", cmd)
    return ("sh", "-c", cmd + ' "$@"', "sh", *args)


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
