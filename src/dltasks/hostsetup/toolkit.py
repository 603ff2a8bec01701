"""Install plans for the NVIDIA Container Toolkit, as NVIDIA documents them (pure).

Source: NVIDIA's "Installing the NVIDIA Container Toolkit" guide (apt, dnf/yum, zypper) and
its "Configuring Docker" and "Support for Container Device Interface" sections. Two
deliberate deviations, both for failure modes the documented one-liners have:

- a reachability probe with a short timeout runs before the repository is added, so a host
  that cannot reach NVIDIA's repository fails in seconds with the offline route, instead of
  apt/dnf retrying for minutes;
- downloaded repository files are written only when the download succeeded (the documented
  ``curl | sed | tee`` writes an empty source list when curl fails).

A plan is only the steps still needed: :func:`toolkit_plan` takes the host's current state,
so a second run on a configured host is empty ("nothing changed").
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from dltasks.errors import DltError
from dltasks.hostsetup.osrelease import APT, DNF, YUM, ZYPPER, OsInfo

REPO = "https://nvidia.github.io/libnvidia-container"
GPGKEY_URL = f"{REPO}/gpgkey"
DEB_LIST_URL = f"{REPO}/stable/deb/nvidia-container-toolkit.list"
RPM_REPO_URL = f"{REPO}/stable/rpm/nvidia-container-toolkit.repo"
KEYRING = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"
APT_LIST = "/etc/apt/sources.list.d/nvidia-container-toolkit.list"
YUM_REPO = "/etc/yum.repos.d/nvidia-container-toolkit.repo"
CDI_SPEC = "/etc/cdi/nvidia.yaml"
DAEMON_JSON = "/etc/docker/daemon.json"
RELEASES_URL = "https://github.com/NVIDIA/nvidia-container-toolkit/releases"

#: The packages NVIDIA's guide installs (and pins together with NVIDIA_CONTAINER_TOOLKIT_VERSION).
PACKAGES = ("nvidia-container-toolkit", "nvidia-container-toolkit-base",
            "libnvidia-container-tools", "libnvidia-container1")

_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+~]*(-[0-9A-Za-z.+~]+)?$")


@dataclass(frozen=True)
class Command:
    """One shell command of a plan. ``root``: run through sudo. ``network``: needs NVIDIA's
    repository, so a failure is reported with the offline route."""

    what: str
    cmd: str
    root: bool = True
    network: bool = False


@dataclass(frozen=True)
class ToolkitState:
    """What is already on the host (gathered by :mod:`.facts`)."""

    installed_version: str = ""  # from `nvidia-ctk --version`; "" when not installed
    daemon_json: str = ""  # text of /etc/docker/daemon.json; "" when missing
    engine_runtimes: tuple[str, ...] = ()  # `docker info` Runtimes of the running engine
    cdi_spec_present: bool = False

    @property
    def runtime_configured(self) -> bool:
        return daemon_json_has_nvidia(self.daemon_json)


def daemon_json_has_nvidia(text: str) -> bool:
    """Whether daemon.json declares the ``nvidia`` runtime (what `nvidia-ctk runtime
    configure` writes)."""
    if not text.strip():
        return False
    try:
        data = json.loads(text)
    except ValueError:
        return False
    return isinstance(data, dict) and "nvidia" in (data.get("runtimes") or {})


def parse_ctk_version(output: str) -> str:
    """``NVIDIA Container Toolkit CLI version 1.17.8`` -> ``1.17.8`` ("" when absent)."""
    m = re.search(r"version\s+v?([0-9][0-9A-Za-z.+~-]*)", output)
    return m.group(1) if m else ""


def check_version(version: str) -> str:
    """A package version as NVIDIA_CONTAINER_TOOLKIT_VERSION takes it (e.g. 1.17.8-1)."""
    v = version.strip()
    if v and not _VERSION.match(v):
        raise DltError(f"toolkit version {version!r} is not a package version; write it like "
                       "1.17.8-1 (see `apt-cache madison nvidia-container-toolkit`)")
    return v


def version_matches(installed: str, wanted: str) -> bool:
    """``1.17.8`` (from nvidia-ctk) satisfies a pinned ``1.17.8-1`` (package revision)."""
    return not wanted or installed == wanted or installed == wanted.split("-")[0]


def _pinned(family: str, version: str) -> str:
    if not version:
        return " ".join(PACKAGES)
    sep = "=" if family == APT else "-"
    return " ".join(f"{p}{sep}{version}" for p in PACKAGES)


def probe_command() -> Command:
    return Command("check that NVIDIA's package repository is reachable",
                   f"curl -fsS --connect-timeout 10 --max-time 20 -o /dev/null {GPGKEY_URL}",
                   root=False, network=True)


def repo_install_commands(os: OsInfo, version: str = "") -> list[Command]:
    """Repository, key and packages for ``os``'s family, per NVIDIA's install guide."""
    pkgs = _pinned(os.family, version)
    if os.family == APT:
        sed = f"sed 's#deb https://#deb [signed-by={KEYRING}] https://#g'"
        return [
            Command("install the prerequisites (curl, gnupg2) if missing",
                    "command -v curl >/dev/null && command -v gpg >/dev/null || "
                    "{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
                    "--no-install-recommends curl gnupg2; }"),
            probe_command(),
            Command("add NVIDIA's repository signing key",
                    f"curl -fsSL {GPGKEY_URL} | gpg --dearmor --yes -o {KEYRING}", network=True),
            Command("add NVIDIA's repository",
                    f'list="$(curl -fsSL {DEB_LIST_URL})" && printf \'%s\\n\' "$list" | {sed} '
                    f"> {APT_LIST}", network=True),
            Command("refresh the package lists", "apt-get update", network=True),
            Command("install the NVIDIA Container Toolkit",
                    "DEBIAN_FRONTEND=noninteractive apt-get install -y "
                    + ("--allow-downgrades " if version else "") + pkgs, network=True),
        ]
    if os.family in (DNF, YUM):
        tool = os.family
        return [
            Command("install the prerequisites (curl) if missing",
                    f"command -v curl >/dev/null || {tool} install -y curl"),
            probe_command(),
            Command("add NVIDIA's repository", f"curl -fsSL {RPM_REPO_URL} -o {YUM_REPO}",
                    network=True),
            Command("install the NVIDIA Container Toolkit", f"{tool} install -y {pkgs}",
                    network=True),
        ]
    if os.family == ZYPPER:
        return [
            probe_command(),
            Command("add NVIDIA's repository",
                    "zypper lr nvidia-container-toolkit >/dev/null 2>&1 || "
                    f"zypper --non-interactive ar {RPM_REPO_URL}", network=True),
            Command("install the NVIDIA Container Toolkit",
                    f"zypper --non-interactive --gpg-auto-import-keys install -y {pkgs}",
                    network=True),
        ]
    raise DltError(f"no toolkit install plan for package family {os.family!r}")


def offline_install_commands(os: OsInfo, files: Sequence[str]) -> list[Command]:
    """Install from a folder of downloaded packages (.deb for apt, .rpm otherwise)."""
    quoted = " ".join(shlex.quote(f) for f in files)
    if os.family == APT:
        return [Command("install the NVIDIA Container Toolkit from local packages",
                        f"dpkg -i {quoted}")]
    return [Command("install the NVIDIA Container Toolkit from local packages",
                    f"rpm -Uvh --replacepkgs {quoted}")]


def offline_files(os: OsInfo, listing: Sequence[str], folder: str) -> list[str]:
    """The package files in ``folder`` (names from ``ls``), checked to hold every package."""
    ext = ".deb" if os.family == APT else ".rpm"
    files = sorted(n for n in listing if n.endswith(ext))
    sep = "_" if ext == ".deb" else "-"
    missing = [p for p in PACKAGES
               if not any(n.startswith(p + sep) and n[len(p) + 1:2 + len(p)].isdigit()
                          for n in files)]
    if missing:
        raise DltError(f"{folder} lacks {', '.join(p + ext for p in missing)}: "
                       f"{download_hint(os)}")
    return [f"{folder.rstrip('/')}/{n}" for n in files]


def download_hint(os: OsInfo) -> str:
    """How to get the packages for the offline route on a machine that has network."""
    if os.family == APT:
        how = f"`apt-get download {' '.join(PACKAGES)}` on a connected {os.id} machine"
    else:
        tool = "dnf download" if os.family == DNF else "yumdownloader"
        if os.family == ZYPPER:
            tool = "zypper download"
        how = f"`{tool} {' '.join(PACKAGES)}` on a connected {os.id} machine"
    return f"download them with {how} (or from {RELEASES_URL}) into one folder"


def offline_hint(os: OsInfo) -> str:
    return (f"install from a folder of downloaded packages instead: `inv install-nvidia-docker "
            f"--offline DIR`; {download_hint(os)}")


def configure_commands(restart: str, *, configure: bool, cdi: bool,
                       restart_needed: bool) -> list[Command]:
    """Register the runtime with Docker, write the CDI spec, restart the engine."""
    out = []
    if configure:
        out.append(Command("register the nvidia runtime in " + DAEMON_JSON,
                           "nvidia-ctk runtime configure --runtime=docker"))
    if cdi:
        out.append(Command("generate the CDI specification",
                           f"nvidia-ctk cdi generate --output={CDI_SPEC}"))
    if restart_needed or configure:
        out.append(Command("restart the Docker engine", restart))
    return out


def cdi_supported(engine_version: str) -> bool:
    """Docker reads CDI specs from 25.0 on; older engines only use the nvidia runtime."""
    m = re.match(r"(\d+)", engine_version or "")
    return m is not None and int(m.group(1)) >= 25


def toolkit_plan(os: OsInfo, state: ToolkitState, *, restart: str, version: str = "",
                 offline: Sequence[str] | None = None, engine_version: str = "") -> list[Command]:
    """The commands still needed on this host; empty when installed and configured.

    ``offline``: the package files to install from instead of NVIDIA's repository.
    ``restart``: the engine restart command for this host's init system (see engine.py).
    """
    version = check_version(version)
    install = not state.installed_version or not version_matches(state.installed_version,
                                                                 version)
    out: list[Command] = []
    if install:
        out += (offline_install_commands(os, offline) if offline is not None
                else repo_install_commands(os, version))
    configure = install or not state.runtime_configured
    cdi = cdi_supported(engine_version) and (install or not state.cdi_spec_present)
    restart_needed = "nvidia" not in state.engine_runtimes
    out += configure_commands(restart, configure=configure, cdi=cdi,
                              restart_needed=restart_needed)
    return out


def render(plan: Sequence[Command], *, sudo: bool) -> str:
    """The plan as the exact lines a person would type on this host."""
    lines = []
    for c in plan:
        lines.append(f"# {c.what}")
        lines.append(f"sudo sh -c {shlex.quote(c.cmd)}" if c.root and sudo else c.cmd)
    return "\n".join(lines)
