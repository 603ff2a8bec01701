"""Carry out plans through the target's shell (the only module here that changes a host)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from dltasks.engine.client import EngineAddr
from dltasks.engine.client import try_connect as connect
from dltasks.errors import DltError
from dltasks.hostsetup import engine as eng
from dltasks.hostsetup import toolkit as tk
from dltasks.hostsetup.facts import SetupFacts, driver_hint, gather_setup_facts
from dltasks.hostsetup.osrelease import OsInfo, check_toolkit_support

if TYPE_CHECKING:
    from dltasks.hosts.shell import Shell
    from dltasks.hosts.target import Target


def run_plan(shell: Shell, plan: Sequence[tk.Command], os: OsInfo | None = None, *,
             out: TextIO | None = None) -> None:
    """Run each command (root ones through sudo), output streamed; stop at the first failure.

    A failed ``network`` command means NVIDIA's repository is out of reach: the error names
    the offline route."""
    out = out or sys.stdout
    for c in plan:
        out.write(f"==> {c.what}\n")
        out.flush()
        r = shell.sudo(c.cmd, stream=True) if c.root else shell.run(c.cmd, stream=True)
        if r.ok:
            continue
        if c.network and os is not None:
            raise DltError(f"cannot reach NVIDIA's package repository from {shell.host} "
                           f"({r.tail(1) or 'exit ' + str(r.code)}): {tk.offline_hint(os)}")
        raise DltError(f"{c.what} failed on {shell.host}: `{c.cmd}` exited {r.code}: "
                       f"{r.tail(2)}")


def wait_for_engine(url: EngineAddr | str, seconds: float = 60) -> str:
    """Poll the engine until it answers; "" then, else the last reason it did not."""
    deadline = time.monotonic() + seconds
    why = ""
    while True:
        client, why = connect(url)
        if client is not None:
            client.close()
            return ""
        if time.monotonic() > deadline:
            return why
        time.sleep(1)


def engine_state(url: EngineAddr | str) -> tuple[str, tuple[str, ...]]:
    """(server version, runtimes) of the engine; ("", ()) when it does not answer."""
    client, _ = connect(url)
    if client is None:
        return "", ()
    try:
        info = client.info()
        return str(info.get("ServerVersion") or ""), tuple((info.get("Runtimes") or {}).keys())
    finally:
        client.close()


@dataclass(frozen=True)
class ToolkitRequest:
    version: str = ""
    offline: str = ""  # folder of downloaded packages; "" = NVIDIA's repository


def driver_problem(target: Target, host: SetupFacts) -> str:
    """"" when ``nvidia-smi`` works on the host, else the one-line error with the driver hint."""
    if host.nvidia_smi_ok:
        return ""
    why = "`nvidia-smi` not found" if not host.nvidia_smi_found else (
        f"`nvidia-smi` fails: {host.nvidia_smi_out.strip().splitlines()[0][:120]}"
        if host.nvidia_smi_out.strip() else "`nvidia-smi` fails")
    return f"no working NVIDIA driver on {target.name} ({why}): {driver_hint(host.os.id)}"


def toolkit_plan_for(target: Target, host: SetupFacts, req: ToolkitRequest, *,
                     require_driver: bool = True) -> list[tk.Command]:
    """This host's remaining toolkit steps; raises for no driver, no engine, unsupported OS."""
    os = host.os
    check_toolkit_support(os)
    if require_driver and driver_problem(target, host):
        raise DltError(driver_problem(target, host))
    if not host.dockerd_found and not host.docker_cli_found:
        raise DltError(f"no Docker engine on {target.name}: run `inv setup` (it installs one "
                       "from your distribution), then rerun")
    version, runtimes = engine_state(target.engine_addr)
    files: list[str] | None = None
    if req.offline:
        listing = target.shell.run(["ls", "-1", req.offline])
        if not listing.ok:
            raise DltError(f"cannot list {req.offline} on {target.name} ({listing.tail(1)}): "
                           "pass the folder holding the downloaded packages")
        files = tk.offline_files(os, listing.stdout.split(), req.offline)
    return tk.toolkit_plan(os, host.toolkit_state(runtimes), restart=eng.restart_command(
        host.init), version=req.version, offline=files, engine_version=version)


def install_toolkit(target: Target, plan: Sequence[tk.Command], host: SetupFacts, *,
                    out: TextIO | None = None) -> None:
    """Apply the plan, then check the engine came back with the nvidia runtime."""
    run_plan(target.shell, plan, host.os, out=out)
    why = wait_for_engine(target.engine_addr, 60)
    if why:
        raise DltError(f"the Docker engine did not come back after the restart ({why}): "
                       f"start it (`sudo {eng.start_command(host.init)}`) and rerun")
    _, runtimes = engine_state(target.engine_addr)
    if "nvidia" not in runtimes:
        raise DltError(f"the engine at {target.endpoint.url} still has no nvidia runtime after "
                       "`nvidia-ctk runtime configure`: check /etc/docker/daemon.json and "
                       "restart the engine")


def engine_install_plan(host: SetupFacts) -> list[tk.Command]:
    return eng.install_commands(host.os) + engine_start_plan(host)


def engine_start_plan(host: SetupFacts) -> list[tk.Command]:
    return [tk.Command("start the Docker engine", eng.start_command(host.init))]


def refresh(target: Target) -> SetupFacts:
    return gather_setup_facts(target.shell)
