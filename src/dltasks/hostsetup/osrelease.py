"""``/etc/os-release`` to a distribution family, version and architecture (pure)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from dltasks.errors import DltError

APT, DNF, YUM, ZYPPER = "apt", "dnf", "yum", "zypper"

#: Architectures NVIDIA publishes Container Toolkit packages for (uname -m spelling).
SUPPORTED_ARCHES = ("x86_64", "aarch64")
_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}

#: Distribution ID -> (family, oldest supported major version, human name).
_DISTROS: dict[str, tuple[str, int, str]] = {
    "ubuntu": (APT, 20, "Ubuntu 20.04+"),
    "debian": (APT, 11, "Debian 11+"),
    "rhel": (DNF, 8, "RHEL 8+"),
    "rocky": (DNF, 8, "Rocky Linux 8+"),
    "almalinux": (DNF, 8, "AlmaLinux 8+"),
    "centos": (DNF, 8, "CentOS Stream 8+"),
    "ol": (DNF, 8, "Oracle Linux 8+"),
    "fedora": (DNF, 38, "Fedora 38+"),
    "amzn": (DNF, 2, "Amazon Linux 2/2023"),
    "sles": (ZYPPER, 15, "SLES 15+"),
    "opensuse-leap": (ZYPPER, 15, "openSUSE Leap 15+"),
    "opensuse-tumbleweed": (ZYPPER, 0, "openSUSE Tumbleweed"),
}


def supported_text() -> str:
    """The supported distributions and architectures, for error messages."""
    names = ", ".join(v[2] for v in _DISTROS.values())
    return f"{names} on {' or '.join(SUPPORTED_ARCHES)}"


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value lines (shell quoting, comments) as a dict, per os-release(5)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            parts = shlex.split(value, posix=True)
        except ValueError:
            parts = [value.strip("\"'")]
        out[key.strip()] = parts[0] if parts else ""
    return out


def normalize_arch(machine: str) -> str:
    m = machine.strip().lower()
    return _ARCH_ALIASES.get(m, m)


@dataclass(frozen=True)
class OsInfo:
    """What an install plan needs to know about a host."""

    id: str
    version_id: str
    family: str
    arch: str
    pretty_name: str = ""
    codename: str = ""

    @property
    def major(self) -> int:
        head = self.version_id.split(".")[0]
        return int(head) if head.isdigit() else 0

    @property
    def deb_arch(self) -> str:
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(self.arch, self.arch)

    @property
    def label(self) -> str:
        return f"{self.pretty_name or self.id} ({self.arch})"


def _distro_key(fields: dict[str, str]) -> str | None:
    """The _DISTROS key for this host: its ID, else the first known ID_LIKE (derivatives)."""
    ident = fields.get("ID", "").lower()
    if ident in _DISTROS:
        return ident
    for like in fields.get("ID_LIKE", "").lower().split():
        if like in _DISTROS:
            return like
    return None


def detect(os_release: str, machine: str) -> OsInfo:
    """The host's distribution family, or a DltError naming the supported distributions.

    Derivatives are matched through ID_LIKE (Linux Mint -> ubuntu, Pop!_OS -> ubuntu).
    """
    fields = parse_os_release(os_release)
    name = fields.get("PRETTY_NAME") or fields.get("NAME") or fields.get("ID") or "this system"
    key = _distro_key(fields)
    if key is None:
        raise DltError(f"{name} is not a supported distribution; supported: {supported_text()}")
    family = _DISTROS[key][0]
    ident = fields.get("ID", "").lower()
    version = fields.get("VERSION_ID", "")
    if ident == "amzn" and version.split(".")[0] == "2":
        family = YUM
    return OsInfo(id=ident, version_id=version, family=family, arch=normalize_arch(machine),
                  pretty_name=name, codename=fields.get("VERSION_CODENAME", ""))


def check_toolkit_support(info: OsInfo) -> None:
    """Refuse architectures and versions NVIDIA publishes no Container Toolkit packages for."""
    if info.arch not in SUPPORTED_ARCHES:
        raise DltError(f"architecture {info.arch} ({info.pretty_name}) is not supported by the "
                       f"NVIDIA Container Toolkit; supported: {supported_text()}")
    known = _DISTROS.get(info.id)
    if known and info.version_id and info.major < known[1]:
        raise DltError(f"{info.pretty_name} is too old for the NVIDIA Container Toolkit (needs "
                       f"{known[2]}); supported: {supported_text()}")
