"""Docker engine install/start plans per distribution and init system."""

from __future__ import annotations

from pathlib import Path

import pytest

from dltasks.hostsetup import engine as eng
from dltasks.hostsetup.osrelease import detect

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "os-release"


def cmds(name: str) -> list[str]:
    return [c.cmd for c in eng.install_commands(detect((SAMPLES / name).read_text(), "x86_64"))]


APT = ["apt-get update", "DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io"]


@pytest.mark.parametrize("name,expected", [
    ("ubuntu-20.04", APT), ("ubuntu-24.04", APT), ("debian-11", APT), ("debian-12", APT),
    ("linuxmint-21", APT),
    ("fedora-40", ["dnf install -y moby-engine"]),
    ("amzn-2023", ["dnf install -y docker"]),
    ("amzn-2", ["yum install -y docker"]),
    ("sles-15", ["zypper --non-interactive install docker"]),
    ("opensuse-leap-15", ["zypper --non-interactive install docker"]),
    ("rhel-9", ["dnf install -y dnf-plugins-core",
                "dnf config-manager --add-repo https://download.docker.com/linux/rhel/"
                "docker-ce.repo",
                "dnf install -y docker-ce docker-ce-cli containerd.io"]),
    ("rocky-9", ["dnf install -y dnf-plugins-core",
                 "dnf config-manager --add-repo https://download.docker.com/linux/centos/"
                 "docker-ce.repo",
                 "dnf install -y docker-ce docker-ce-cli containerd.io"]),
])
def test_engine_install_plan(name: str, expected: list[str]) -> None:
    assert cmds(name) == expected


@pytest.mark.parametrize("pid1,script,init", [
    ("systemd", False, eng.SYSTEMD), ("systemd\n", True, eng.SYSTEMD),
    ("bash", True, eng.SYSV), ("init", True, eng.SYSV), ("tini", False, eng.NONE),
    ("process_api", False, eng.NONE), ("", False, eng.NONE),
])
def test_init_system(pid1: str, script: bool, init: str) -> None:
    assert eng.init_system(pid1, script) == init


def test_start_and_restart_per_init_system() -> None:
    assert eng.start_command(eng.SYSTEMD) == "systemctl enable --now docker"
    assert eng.restart_command(eng.SYSTEMD) == "systemctl restart docker"
    assert eng.start_command(eng.SYSV) == "service docker start"
    assert eng.restart_command(eng.SYSV) == "service docker restart"
    assert eng.start_command(eng.NONE) == ("setsid nohup dockerd >/var/log/dockerd.log 2>&1 "
                                           "</dev/null &")
    assert eng.restart_command(eng.NONE) == 'kill -HUP "$(cat /var/run/docker.pid)"'


@pytest.mark.parametrize("user,cmd", [
    ("alice", "groupadd -f docker && usermod -aG docker alice"),
    ("o'brien", "groupadd -f docker && usermod -aG docker 'o'\"'\"'brien'"),
])
def test_group_command_quotes_the_user(user: str, cmd: str) -> None:
    assert eng.group_command(user).cmd == cmd
    assert eng.group_command(user).root
