"""Facts about a host, gathered with ONE shell round trip (cheap over SSH), parsed purely."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dltasks.hostsetup.engine import init_system
from dltasks.hostsetup.osrelease import OsInfo, detect
from dltasks.hostsetup.toolkit import ToolkitState, parse_ctk_version
from dltasks.scripts import script

if TYPE_CHECKING:
    from dltasks.hosts.shell import Shell

#: Sections of the gathering script, each printed after a ``@@name`` marker line.
SCRIPT = script("host_facts")


@dataclass(frozen=True)
class SetupFacts:
    os_release: str = ""
    machine: str = ""
    pid1: str = ""
    has_service_script: bool = False
    uid: int = -1
    user: str = ""
    groups: tuple[str, ...] = ()
    sudo_user: str = ""  # who ran `sudo inv setup`: the account that needs the docker group
    nvidia_smi_found: bool = False
    nvidia_smi_ok: bool = False
    nvidia_smi_out: str = ""
    ctk_version: str = ""
    daemon_json: str = ""
    cdi_spec_present: bool = False
    dockerd_found: bool = False
    docker_cli_found: bool = False

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    @property
    def init(self) -> str:
        return init_system(self.pid1, self.has_service_script)

    @property
    def in_docker_group(self) -> bool:
        return "docker" in self.groups

    @property
    def os(self) -> OsInfo:
        """The distribution (DltError for an unknown one)."""
        return detect(self.os_release, self.machine)

    def toolkit_state(self, engine_runtimes: tuple[str, ...] = ()) -> ToolkitState:
        return ToolkitState(installed_version=self.ctk_version, daemon_json=self.daemon_json,
                            engine_runtimes=engine_runtimes,
                            cdi_spec_present=self.cdi_spec_present)

    @property
    def driver(self) -> DriverInfo:
        return parse_smi_driver(self.nvidia_smi_out if self.nvidia_smi_ok else "")


def sections(text: str) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    cur = ""
    for line in text.splitlines():
        if line.startswith("@@") and " " not in line:
            cur = line[2:]
            out.setdefault(cur, [])
        elif cur:
            out[cur].append(line)
    return {k: "\n".join(v).strip("\n") for k, v in out.items()}


def parse_facts(text: str) -> SetupFacts:
    s = sections(text)
    smi = s.get("smi", "")
    m = re.search(r"^@@smi_rc (\d+)$", smi, re.MULTILINE)
    smi_out = re.sub(r"^@@smi_rc \d+$", "", smi, flags=re.MULTILINE).strip()
    uid = s.get("uid", "").strip()
    return SetupFacts(
        os_release=s.get("os", ""),
        machine=s.get("machine", "").strip(),
        pid1=s.get("pid1", "").strip(),
        has_service_script=s.get("service", "").strip() == "yes",
        uid=int(uid) if uid.isdigit() else -1,
        user=s.get("user", "").strip(),
        groups=tuple(s.get("groups", "").split()),
        sudo_user=s.get("sudo_user", "").strip(),
        nvidia_smi_found=m is not None,
        nvidia_smi_ok=m is not None and m.group(1) == "0",
        nvidia_smi_out=smi_out,
        ctk_version=parse_ctk_version(s.get("ctk", "")),
        daemon_json=s.get("daemon_json", ""),
        cdi_spec_present=s.get("cdi", "").strip() == "yes",
        dockerd_found=bool(s.get("dockerd", "").strip()),
        docker_cli_found=bool(s.get("docker", "").strip()),
    )


def gather_setup_facts(shell: Shell) -> SetupFacts:
    """Run :data:`SCRIPT` on the target host (as the connecting user) and parse it."""
    return parse_facts(shell.run(SCRIPT, timeout=60).stdout)


@dataclass(frozen=True)
class DriverInfo:
    driver_version: str = ""
    cuda_version: str = ""  # the newest CUDA the driver supports ("CUDA Version" in nvidia-smi)
    brand: str = ""  # "Product Brand" (nvidia-smi -q), for NVIDIA_REQUIRE_CUDA's brand= terms


def parse_smi_driver(output: str) -> DriverInfo:
    """Driver and CUDA versions from the ``nvidia-smi`` banner."""
    drv = re.search(r"Driver Version:\s*([0-9.]+)", output)
    cuda = re.search(r"CUDA Version:\s*([0-9.]+)", output)
    brand = re.search(r"Product Brand\s*:\s*(\S+)", output)
    return DriverInfo(drv.group(1) if drv else "", cuda.group(1) if cuda else "",
                      brand.group(1).lower() if brand else "")


def driver_hint(os_id: str = "") -> str:
    """How to install an NVIDIA driver, short enough for one line."""
    how = {
        "ubuntu": "`sudo ubuntu-drivers install`",
        "debian": "`sudo apt-get install nvidia-driver` (non-free component)",
        "fedora": "the RPM Fusion `akmod-nvidia` package",
    }.get(os_id, "your distribution's NVIDIA driver packages or NVIDIA's CUDA repository")
    return (f"install the NVIDIA driver first ({how}; guide: https://docs.nvidia.com/"
            "datacenter/tesla/driver-installation-guide/), reboot, and check that `nvidia-smi` "
            "works")
