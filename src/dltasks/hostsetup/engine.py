"""The Docker engine: install it from the distribution, start it, let the user reach it (pure).

The start command depends on the host's init system: systemd when it is PID 1, the SysV
script (``service docker start``) when one is installed, else ``dockerd`` itself in the
background with a log file (containers, WSL without systemd).
"""

from __future__ import annotations

import shlex

from dltasks.errors import DltError
from dltasks.hostsetup.osrelease import APT, DNF, YUM, ZYPPER, OsInfo
from dltasks.hostsetup.toolkit import Command

SYSTEMD, SYSV, NONE = "systemd", "sysv", "none"
DOCKERD_LOG = "/var/log/dockerd.log"

#: Docker's own repository for RHEL-like systems, which ship no Docker engine themselves.
_DOCKER_CE_REPO = "https://download.docker.com/linux/{dist}/docker-ce.repo"


def init_system(pid1: str, has_service_script: bool) -> str:
    """``pid1``: the command name of PID 1 (``ps -p 1 -o comm=``)."""
    if pid1.strip() == "systemd":
        return SYSTEMD
    if has_service_script:
        return SYSV
    return NONE


def start_command(init: str) -> str:
    if init == SYSTEMD:
        return "systemctl enable --now docker"
    if init == SYSV:
        return "service docker start"
    return (f"setsid nohup dockerd >{DOCKERD_LOG} 2>&1 </dev/null &")


def restart_command(init: str) -> str:
    """Restart so a new runtime in daemon.json takes effect. Without an init system,
    SIGHUP makes dockerd reload daemon.json (``runtimes`` is a reloadable option)."""
    if init == SYSTEMD:
        return "systemctl restart docker"
    if init == SYSV:
        return "service docker restart"
    return "kill -HUP \"$(cat /var/run/docker.pid)\""


def install_commands(os: OsInfo) -> list[Command]:
    """The Docker engine from the distribution's own repositories where it has one."""
    if os.family == APT:
        return [Command("refresh the package lists", "apt-get update"),
                Command("install the Docker engine (docker.io)",
                        "DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io")]
    if os.id == "fedora":
        return [Command("install the Docker engine (moby-engine)", "dnf install -y moby-engine")]
    if os.id == "amzn":
        return [Command("install the Docker engine", f"{os.family} install -y docker")]
    if os.family in (DNF, YUM):
        dist = "rhel" if os.id == "rhel" else "centos"
        return [
            Command("install dnf-plugins-core", "dnf install -y dnf-plugins-core"),
            Command("add Docker's repository (RHEL-like systems ship no Docker engine)",
                    f"dnf config-manager --add-repo {_DOCKER_CE_REPO.format(dist=dist)}"),
            Command("install the Docker engine (docker-ce)",
                    "dnf install -y docker-ce docker-ce-cli containerd.io"),
        ]
    if os.family == ZYPPER:
        return [Command("install the Docker engine", "zypper --non-interactive install docker")]
    raise DltError(f"no Docker engine install plan for {os.label}")


def group_command(user: str) -> Command:
    return Command(f"add {user} to the docker group",
                   f"groupadd -f docker && usermod -aG docker {shlex.quote(user)}")


RELOGIN_HINT = ("log out and in again (or run `newgrp docker`) so the docker group applies, "
                "then rerun `inv setup`")
