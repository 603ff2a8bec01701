"""Toolkit install plans per family, compared literally with NVIDIA's documented commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from dltasks.errors import DltError
from dltasks.hostsetup import toolkit as tk
from dltasks.hostsetup.osrelease import OsInfo, detect

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "os-release"
KEYRING = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"
PROBE = ("curl -fsS --connect-timeout 10 --max-time 20 -o /dev/null "
         "https://nvidia.github.io/libnvidia-container/gpgkey")
FRESH = tk.ToolkitState()
CONFIGURE = ["nvidia-ctk runtime configure --runtime=docker", "systemctl restart docker"]

APT_PLAN = [
    "command -v curl >/dev/null && command -v gpg >/dev/null || { apt-get update && "
    "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends curl gnupg2; }",
    PROBE,
    f"curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey | gpg --dearmor --yes -o "
    f"{KEYRING}",
    'list="$(curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/'
    'nvidia-container-toolkit.list)" && printf \'%s\\n\' "$list" | '
    f"sed 's#deb https://#deb [signed-by={KEYRING}] https://#g' > "
    "/etc/apt/sources.list.d/nvidia-container-toolkit.list",
    "apt-get update",
    "DEBIAN_FRONTEND=noninteractive apt-get install -y nvidia-container-toolkit "
    "nvidia-container-toolkit-base libnvidia-container-tools libnvidia-container1",
] + CONFIGURE


def dnf_plan(tool: str) -> list[str]:
    return [
        f"command -v curl >/dev/null || {tool} install -y curl",
        PROBE,
        "curl -fsSL https://nvidia.github.io/libnvidia-container/stable/rpm/"
        "nvidia-container-toolkit.repo -o /etc/yum.repos.d/nvidia-container-toolkit.repo",
        f"{tool} install -y nvidia-container-toolkit nvidia-container-toolkit-base "
        "libnvidia-container-tools libnvidia-container1",
    ] + CONFIGURE


ZYPPER_PLAN = [
    PROBE,
    "zypper lr nvidia-container-toolkit >/dev/null 2>&1 || zypper --non-interactive ar "
    "https://nvidia.github.io/libnvidia-container/stable/rpm/nvidia-container-toolkit.repo",
    "zypper --non-interactive --gpg-auto-import-keys install -y nvidia-container-toolkit "
    "nvidia-container-toolkit-base libnvidia-container-tools libnvidia-container1",
] + CONFIGURE


def os_of(name: str, arch: str = "x86_64") -> OsInfo:
    return detect((SAMPLES / name).read_text(), arch)


def cmds(plan: list[tk.Command]) -> list[str]:
    return [c.cmd for c in plan]


@pytest.mark.parametrize("name,expected", [
    ("ubuntu-20.04", APT_PLAN), ("ubuntu-22.04", APT_PLAN), ("ubuntu-24.04", APT_PLAN),
    ("debian-11", APT_PLAN), ("debian-12", APT_PLAN),
    ("rhel-8", dnf_plan("dnf")), ("rhel-9", dnf_plan("dnf")), ("rocky-9", dnf_plan("dnf")),
    ("almalinux-9", dnf_plan("dnf")), ("fedora-40", dnf_plan("dnf")),
    ("amzn-2023", dnf_plan("dnf")), ("amzn-2", dnf_plan("yum")),
    ("sles-15", ZYPPER_PLAN), ("opensuse-leap-15", ZYPPER_PLAN),
])
def test_fresh_host_plan_is_nvidias_documented_sequence(name: str, expected: list[str]) -> None:
    plan = tk.toolkit_plan(os_of(name), FRESH, restart="systemctl restart docker")
    assert cmds(plan) == expected


def test_arm64_host_gets_the_same_plan() -> None:
    plan = tk.toolkit_plan(os_of("ubuntu-22.04", "aarch64"), FRESH,
                           restart="systemctl restart docker")
    assert cmds(plan) == APT_PLAN


@pytest.mark.parametrize("name,expected", [
    ("ubuntu-22.04", "DEBIAN_FRONTEND=noninteractive apt-get install -y --allow-downgrades "
     "nvidia-container-toolkit=1.17.8-1 nvidia-container-toolkit-base=1.17.8-1 "
     "libnvidia-container-tools=1.17.8-1 libnvidia-container1=1.17.8-1"),
    ("rhel-9", "dnf install -y nvidia-container-toolkit-1.17.8-1 "
     "nvidia-container-toolkit-base-1.17.8-1 libnvidia-container-tools-1.17.8-1 "
     "libnvidia-container1-1.17.8-1"),
    ("sles-15", "zypper --non-interactive --gpg-auto-import-keys install -y "
     "nvidia-container-toolkit-1.17.8-1 nvidia-container-toolkit-base-1.17.8-1 "
     "libnvidia-container-tools-1.17.8-1 libnvidia-container1-1.17.8-1"),
])
def test_pinned_version_pins_all_four_packages(name: str, expected: str) -> None:
    plan = tk.toolkit_plan(os_of(name), FRESH, restart="r", version="1.17.8-1")
    installs = [c.cmd for c in plan if c.what == "install the NVIDIA Container Toolkit"]
    assert installs == [expected]


@pytest.mark.parametrize("bad", ["1.17; rm -rf /", "latest", "$(id)", "1.2 3", "-1"])
def test_version_that_is_no_package_version_is_refused(bad: str) -> None:
    with pytest.raises(DltError, match="not a package version"):
        tk.toolkit_plan(os_of("debian-12"), FRESH, restart="r", version=bad)


NVIDIA_DAEMON_JSON = ('{"runtimes": {"nvidia": {"args": [], '
                      '"path": "nvidia-container-runtime"}}}')


def test_installed_configured_and_loaded_means_empty_plan() -> None:
    state = tk.ToolkitState("1.17.8", NVIDIA_DAEMON_JSON, ("runc", "nvidia"), True)
    assert tk.toolkit_plan(os_of("debian-12"), state, restart="r") == []
    assert tk.toolkit_plan(os_of("debian-12"), state, restart="r",
                           version="1.17.8-1") == []


def test_installed_but_not_configured_configures_and_restarts_only() -> None:
    state = tk.ToolkitState("1.17.8", '{"log-driver": "json-file"}', ("runc",))
    plan = tk.toolkit_plan(os_of("rocky-9"), state, restart="service docker restart")
    assert cmds(plan) == ["nvidia-ctk runtime configure --runtime=docker",
                          "service docker restart"]


def test_configured_but_engine_not_restarted_restarts_only() -> None:
    state = tk.ToolkitState("1.17.8", NVIDIA_DAEMON_JSON, ("runc",))
    plan = tk.toolkit_plan(os_of("debian-12"), state, restart="systemctl restart docker")
    assert cmds(plan) == ["systemctl restart docker"]


def test_other_pinned_version_reinstalls() -> None:
    state = tk.ToolkitState("1.16.2", NVIDIA_DAEMON_JSON, ("nvidia",))
    plan = tk.toolkit_plan(os_of("debian-12"), state, restart="r", version="1.17.8-1")
    assert any("nvidia-container-toolkit=1.17.8-1" in c for c in cmds(plan))


@pytest.mark.parametrize("engine,cdi", [("20.10.24+dfsg1", False), ("24.0.7", False),
                                        ("25.0.3", True), ("28.2.2", True), ("", False)])
def test_cdi_spec_only_for_engines_that_read_it(engine: str, cdi: bool) -> None:
    plan = tk.toolkit_plan(os_of("ubuntu-24.04"), FRESH, restart="r", engine_version=engine)
    gen = "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"
    assert (gen in cmds(plan)) is cdi
    if cdi:
        assert cmds(plan)[-3:] == ["nvidia-ctk runtime configure --runtime=docker", gen, "r"]


def test_missing_cdi_spec_is_generated_on_a_configured_host() -> None:
    state = tk.ToolkitState("1.17.8", NVIDIA_DAEMON_JSON, ("nvidia",), cdi_spec_present=False)
    plan = tk.toolkit_plan(os_of("debian-12"), state, restart="r", engine_version="27.1.1")
    assert cmds(plan) == ["nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"]


def test_network_steps_are_marked_and_the_probe_comes_before_any_repo_change() -> None:
    plan = tk.toolkit_plan(os_of("ubuntu-22.04"), FRESH, restart="r")
    first_network = next(i for i, c in enumerate(plan) if c.network)
    assert plan[first_network].cmd == PROBE
    assert not plan[first_network].root
    assert all(not c.network for c in plan if c.cmd.startswith("nvidia-ctk"))


DEBS = ["libnvidia-container1_1.17.8-1_amd64.deb", "libnvidia-container-tools_1.17.8-1_amd64.deb",
        "nvidia-container-toolkit_1.17.8-1_amd64.deb",
        "nvidia-container-toolkit-base_1.17.8-1_amd64.deb", "README.txt"]
RPMS = ["libnvidia-container1-1.17.8-1.x86_64.rpm",
        "libnvidia-container-tools-1.17.8-1.x86_64.rpm",
        "nvidia-container-toolkit-1.17.8-1.x86_64.rpm",
        "nvidia-container-toolkit-base-1.17.8-1.x86_64.rpm"]


def test_offline_apt_installs_the_folders_debs_with_dpkg() -> None:
    os = os_of("ubuntu-22.04")
    files = tk.offline_files(os, DEBS, "/srv/pkgs/")
    plan = tk.toolkit_plan(os, FRESH, restart="r", offline=files)
    assert cmds(plan) == [
        "dpkg -i /srv/pkgs/libnvidia-container-tools_1.17.8-1_amd64.deb "
        "/srv/pkgs/libnvidia-container1_1.17.8-1_amd64.deb "
        "/srv/pkgs/nvidia-container-toolkit-base_1.17.8-1_amd64.deb "
        "/srv/pkgs/nvidia-container-toolkit_1.17.8-1_amd64.deb",
        "nvidia-ctk runtime configure --runtime=docker", "r"]
    assert not any(c.network for c in plan)


@pytest.mark.parametrize("name", ["rhel-9", "sles-15", "amzn-2023"])
def test_offline_rpm_families_use_rpm(name: str) -> None:
    os = os_of(name)
    files = tk.offline_files(os, RPMS, "/p")
    plan = tk.toolkit_plan(os, FRESH, restart="r", offline=files)
    assert cmds(plan)[0].startswith("rpm -Uvh --replacepkgs /p/libnvidia-container-tools-")
    assert len(cmds(plan)[0].split()) == 3 + 4


def test_offline_folder_missing_packages_names_them_and_how_to_download() -> None:
    with pytest.raises(DltError) as e:
        tk.offline_files(os_of("debian-12"), DEBS[:2], "/p")
    msg = e.value.message
    assert "/p lacks nvidia-container-toolkit.deb, nvidia-container-toolkit-base.deb" in msg
    assert "apt-get download nvidia-container-toolkit" in msg


def test_offline_toolkit_base_alone_does_not_count_as_toolkit() -> None:
    with pytest.raises(DltError, match="lacks nvidia-container-toolkit.deb"):
        tk.offline_files(os_of("debian-12"), [d for d in DEBS if not d.startswith(
            "nvidia-container-toolkit_")], "/p")


def test_offline_hint_names_the_flag() -> None:
    assert "inv install-nvidia-docker --offline DIR" in tk.offline_hint(os_of("rhel-9"))
    assert "dnf download" in tk.offline_hint(os_of("rhel-9"))


@pytest.mark.parametrize("text,has", [
    ("", False), ("{}", False), ("not json", False), ('["nvidia"]', False),
    ('{"runtimes": {"runc": {}}}', False), ('{"runtimes": null}', False),
    (NVIDIA_DAEMON_JSON, True),
    ('{\n  "default-runtime": "nvidia",\n  "runtimes": {\n    "nvidia": {\n      "path": '
     '"/usr/bin/nvidia-container-runtime"\n    }\n  }\n}\n', True),
])
def test_daemon_json_detection(text: str, has: bool) -> None:
    assert tk.daemon_json_has_nvidia(text) is has


@pytest.mark.parametrize("out,version", [
    ("NVIDIA Container Toolkit CLI version 1.17.8\n"
     "commit: f202b80a9b9d0db00d9b1d73c0128c8962c55f4d", "1.17.8"),
    ("NVIDIA Container Toolkit CLI version 1.14.6-rc.1", "1.14.6-rc.1"),
    ("", ""), ("bash: nvidia-ctk: command not found", ""),
])
def test_ctk_version(out: str, version: str) -> None:
    assert tk.parse_ctk_version(out) == version


def test_render_prefixes_sudo_only_for_root_commands_when_not_root() -> None:
    plan = tk.toolkit_plan(os_of("debian-12"), FRESH, restart="systemctl restart docker")
    text = tk.render(plan, sudo=True)
    assert "sudo sh -c 'apt-get update'" in text
    assert f"\n{PROBE}\n" in text  # the probe runs as the user
    assert "sudo" not in tk.render(plan, sudo=False)
