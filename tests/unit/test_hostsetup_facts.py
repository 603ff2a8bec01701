"""Parsing the one-round-trip facts script output, and the nvidia-smi banner."""

from __future__ import annotations

from pathlib import Path

from dltasks.hostsetup import engine as eng
from dltasks.hostsetup.facts import driver_hint, parse_facts, parse_smi_driver, sections

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "os-release"

SMI = """Tue Nov 26 11:00:00 2024
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
|   0  NVIDIA H100 80GB HBM3          On  |   00000000:18:00.0 Off |                    0 |
+-----------------------------------------+------------------------+----------------------+
"""


def script_output(**parts: str) -> str:
    order = ["os", "machine", "pid1", "service", "uid", "user", "groups", "sudo_user", "smi", "ctk",
             "daemon_json", "cdi", "dockerd", "docker"]
    return "".join(f"@@{k}\n{parts.get(k, '')}\n" for k in order) + "@@end\n"


def test_gpu_host_with_systemd() -> None:
    text = script_output(
        os=(SAMPLES / "ubuntu-22.04").read_text(), machine="x86_64", pid1="systemd",
        uid="1000", user="me", groups="me adm docker",
        smi=SMI + "@@smi_rc 0\n    Product Brand                         : NVIDIA",
        ctk="NVIDIA Container Toolkit CLI version 1.17.8\ncommit: abc",
        daemon_json='{"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}',
        cdi="yes", dockerd="/usr/bin/dockerd", docker="/usr/bin/docker")
    f = parse_facts(text)
    assert f.os.id == "ubuntu" and f.os.family == "apt"
    assert (f.uid, f.user, f.is_root, f.in_docker_group) == (1000, "me", False, True)
    assert f.init == eng.SYSTEMD
    assert f.nvidia_smi_found and f.nvidia_smi_ok
    assert f.driver.driver_version == "550.54.15" and f.driver.cuda_version == "12.4"
    assert f.driver.brand == "nvidia"
    assert f.ctk_version == "1.17.8"
    assert f.toolkit_state(("nvidia",)).runtime_configured
    assert f.cdi_spec_present and f.dockerd_found and f.docker_cli_found


def test_bare_container_without_gpu_or_engine() -> None:
    text = script_output(os=(SAMPLES / "debian-12").read_text(), machine="x86_64",
                         pid1="bash", service="yes", uid="0", user="root", groups="root")
    f = parse_facts(text)
    assert f.is_root and not f.in_docker_group
    assert f.init == eng.SYSV
    assert not f.nvidia_smi_found and not f.nvidia_smi_ok
    assert f.driver.driver_version == ""
    assert f.ctk_version == "" and not f.toolkit_state().runtime_configured
    assert not f.dockerd_found and not f.docker_cli_found


def test_sudo_user_is_kept() -> None:
    f = parse_facts(script_output(uid="0", user="root", groups="root", sudo_user="alice"))
    assert f.is_root and f.sudo_user == "alice"
    assert parse_facts(script_output(uid="1000", user="bob")).sudo_user == ""


def test_failing_nvidia_smi_is_found_but_not_ok() -> None:
    text = script_output(os=(SAMPLES / "rhel-9").read_text(), machine="x86_64", uid="0",
                         smi="NVIDIA-SMI has failed because it couldn't communicate with the "
                             "NVIDIA driver.\n@@smi_rc 9")
    f = parse_facts(text)
    assert f.nvidia_smi_found and not f.nvidia_smi_ok
    assert "couldn't communicate" in f.nvidia_smi_out
    assert f.driver.driver_version == ""


def test_sections_keep_multiline_values_and_ignore_noise_before_the_first_marker() -> None:
    s = sections("motd line\n@@a\n1\n2\n@@b\n@@smi_rc 0\n")
    assert s == {"a": "1\n2", "b": "@@smi_rc 0"}


def test_nvidia_smi_banner() -> None:
    d = parse_smi_driver(SMI)
    assert (d.driver_version, d.cuda_version, d.brand) == ("550.54.15", "12.4", "")
    assert parse_smi_driver("").driver_version == ""


def test_real_h100_banner_and_cuda_requirements() -> None:
    """nvidia-smi (plus the Product Brand line of -q) as printed on an H100 host, driver 580."""
    text = (SAMPLES.parent / "nvidia-smi" / "h100-driver-580.txt").read_text()
    d = parse_smi_driver(text)
    assert (d.driver_version, d.cuda_version, d.brand) == ("580.159.04", "13.0", "nvidia")
    from dltasks.hostsetup.doctor import cuda_satisfied

    assert cuda_satisfied("cuda>=12.4 brand=tesla,driver>=470,driver<471", d)
    assert cuda_satisfied("cuda>=13.0", d)
    assert not cuda_satisfied("cuda>=13.1", d)


def test_driver_hint_per_distribution() -> None:
    assert "ubuntu-drivers install" in driver_hint("ubuntu")
    assert "nvidia-driver" in driver_hint("debian")
    assert "nvidia-smi" in driver_hint("")
