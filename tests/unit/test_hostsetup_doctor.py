"""Doctor's pure core: CUDA requirement vs driver, sizes, df, and the findings with fixes."""

from __future__ import annotations

import dataclasses

import pytest

from dltasks.hostsetup import doctor as dr
from dltasks.hostsetup.facts import DriverInfo

# NVIDIA_REQUIRE_CUDA of nvidia/cuda:12.4.1-runtime-ubuntu22.04 (abridged to three branches).
REQ_124 = ("cuda>=12.4 brand=tesla,driver>=470,driver<471 brand=unknown,driver>=470,driver<471 "
           "brand=tesla,driver>=525,driver<526 brand=geforce,driver>=535,driver<536")


@pytest.mark.parametrize("driver,cuda,brand,req,ok", [
    ("550.54.15", "12.4", "", REQ_124, True),
    ("560.35.03", "12.6", "", REQ_124, True),
    ("535.183.01", "12.2", "", REQ_124, False),  # brand unknown to us: no forward-compat pass
    ("535.183.01", "12.2", "geforce", REQ_124, True),  # a listed compat branch
    ("535.183.01", "12.2", "tesla", REQ_124, False),  # tesla is listed for 470 and 525 only
    ("470.256.02", "11.4", "tesla", REQ_124, True),
    ("525.147.05", "12.0", "tesla", REQ_124, True),
    ("530.30.02", "12.1", "tesla", REQ_124, False),
    ("550.54.15", "12.4", "", "cuda>=12.5", False),
    ("550.54.15", "12.4", "", "cuda>=11.8", True),
    ("550.54.15", "12.4", "", "", True),
    ("", "", "", "cuda>=11.0", False),  # nothing known about the driver
    ("550.54.15", "12.4", "", "cuda>=12.4,driver>=551", False),
    ("550.54.15", "12.4", "", "cuda>=12.4 cuda>=99.0", True),
    ("550.54.15", "12.4", "", "arch=x86_64,cuda>=12.0", True),
])
def test_cuda_requirement(driver: str, cuda: str, brand: str, req: str, ok: bool) -> None:
    assert dr.cuda_satisfied(req, DriverInfo(driver, cuda, brand)) is ok


@pytest.mark.parametrize("env,req", [
    ({"CUDA_VERSION": "12.4.1", "NVIDIA_REQUIRE_CUDA": REQ_124}, REQ_124),
    ({"CUDA_VERSION": "12.4.1"}, "cuda>=12.4"),
    ({"CUDA_VERSION": "11.8.0"}, "cuda>=11.8"),
    ({"CUDA_VERSION": "12"}, "cuda>=12.0"),
    ({"CUDA_VERSION": "12.4.1", "NVIDIA_DISABLE_REQUIRE": "1"}, ""),
    ({"CUDA_VERSION": "12.4.1", "NVIDIA_DISABLE_REQUIRE": "true"}, ""),
    ({"PATH": "/usr/bin"}, ""),
    ({}, ""),
])
def test_required_cuda_from_image_env(env: dict[str, str], req: str) -> None:
    assert dr.required_cuda(env) == req


@pytest.mark.parametrize("text,n", [
    ("1024", 1024), ("64m", 64 * 2**20), ("64M", 64 * 2**20), ("16g", 16 * 2**30),
    ("1.5GiB", int(1.5 * 2**30)), ("2gb", 2 * 2**30), ("512k", 512 * 1024), ("1t", 2**40),
    ("10b", 10),
])
def test_parse_size(text: str, n: int) -> None:
    assert dr.parse_size(text) == n


@pytest.mark.parametrize("bad", ["", "g", "lots", "-1g", "1x"])
def test_parse_size_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        dr.parse_size(bad)


DF = ("Filesystem     1024-blocks     Used Available Capacity Mounted on\n"
      "/dev/vda         264212084 23688664  82702248      23% /\n")
DF_SHM = ("Filesystem     1024-blocks  Used Available Capacity Mounted on\n"
          "shm                   1024     0      1024       0% /dev/shm\n")


def test_df_parsing() -> None:
    assert dr.parse_df(DF) == (264212084 * 1024, 82702248 * 1024)
    assert dr.shm_of_df(DF_SHM) == 1024 * 1024
    assert dr.parse_df("") is None
    assert dr.parse_df("df: /nope: No such file or directory\n") is None


def test_human() -> None:
    assert dr.human_kib(1024) == "1.0 KiB"
    assert dr.human_kib(64 * 2**20) == "64.0 MiB"
    assert dr.human_kib(int(77.4 * 2**30)) == "77.4 GiB"
    assert dr.human_kib(3) == "3 B"


HEALTHY = dr.DoctorFacts(
    engine_url="unix:///var/run/docker.sock", engine_version="28.3.3", user="me",
    runtimes=("nvidia", "runc"), ctk_version="1.17.8", docker_root_dir="/var/lib/docker",
    disk_free=200 * dr.GIB, driver=DriverInfo("550.54.15", "12.4"), gpu_probe="| NVIDIA-SMI",
    gpu_probe_ok=True, image="proj:latest", image_is_project=True,
    image_env={"CUDA_VERSION": "12.4.1"}, shm_bytes=32 * dr.GIB, shm_mode="--ipc=host",
    stale="", gpu_mode="runtime", gpu_mode_why="the engine has the NVIDIA runtime")


def by_check(findings: list[dr.Finding]) -> dict[str, dr.Finding]:
    return {f.check: f for f in findings}


def test_healthy_host_has_only_ok_findings() -> None:
    findings = dr.diagnose(HEALTHY)
    assert [f.level for f in findings] == [dr.OK] * 9
    assert [f.check for f in findings] == ["engine", "driver", "gpu mode", "toolkit",
                                           "gpu-container", "cuda", "shm", "disk", "image"]
    assert dr.exit_code(findings) == 0
    assert dr.render(findings).splitlines()[-1] == "no problems found"


def test_engine_unreachable_stops_the_other_checks() -> None:
    f = dataclasses.replace(HEALTHY, engine_error="('Connection aborted.', "
                            "FileNotFoundError(2, 'No such file or directory'))",
                            start_command="service docker start")
    findings = dr.diagnose(f)
    assert len(findings) == 1
    assert findings[0].level == dr.ERROR
    assert "no socket there" in findings[0].message
    assert "`sudo service docker start`" in findings[0].fix
    assert dr.exit_code(findings) == 1


def test_engine_not_installed() -> None:
    f = dataclasses.replace(HEALTHY, engine_error="Connection refused", dockerd_found=False)
    assert "run `inv setup`" in dr.diagnose(f)[0].fix


def test_permission_denied_outside_and_inside_the_group() -> None:
    err = "('Connection aborted.', PermissionError(13, 'Permission denied'))"
    outside = dr.diagnose(dataclasses.replace(HEALTHY, engine_error=err, user="bob"))[0]
    assert "permission denied" in outside.message
    assert "sudo usermod -aG docker bob" in outside.fix
    inside = dr.diagnose(dataclasses.replace(HEALTHY, engine_error=err, in_docker_group=True))[0]
    assert "log out and in again" in inside.fix and "usermod" not in inside.fix


def test_missing_toolkit_seen_through_could_not_select_device_driver() -> None:
    f = dataclasses.replace(HEALTHY, runtimes=("runc",), ctk_version="", gpu_probe_ok=False,
                            gpu_probe='could not select device driver "" with capabilities: '
                                      '[[gpu]]')
    found = by_check(dr.diagnose(f))
    assert found["toolkit"].level == dr.ERROR
    assert "missing" in found["toolkit"].message
    assert "could not select device driver" in found["toolkit"].message
    assert found["toolkit"].fix == "run `inv install-nvidia-docker`"
    assert "gpu-container" not in found  # one cause, reported once


def test_installed_but_not_configured_toolkit() -> None:
    f = dataclasses.replace(HEALTHY, runtimes=("runc",), ctk_version="1.17.8",
                            daemon_json="{}", gpu_probe_ok=False, gpu_probe=None)
    assert "installed but not configured" in by_check(dr.diagnose(f))["toolkit"].message


def test_configured_but_not_loaded_says_restart() -> None:
    f = dataclasses.replace(HEALTHY, runtimes=("runc",), restart_command="service docker restart",
                            daemon_json='{"runtimes": {"nvidia": {"path": "x"}}}')
    t = by_check(dr.diagnose(f))["toolkit"]
    assert t.level == dr.ERROR and t.fix == "restart the engine (`sudo service docker restart`)"


def test_nvml_failure_in_new_and_running_containers() -> None:
    f = dataclasses.replace(HEALTHY, gpu_probe_ok=False,
                            gpu_probe="Failed to initialize NVML: Unknown Error",
                            nvml_broken=("trainer",))
    gpu = [x for x in dr.diagnose(f) if x.check == "gpu-container"]
    assert [x.level for x in gpu] == [dr.ERROR, dr.ERROR]
    assert "restart the engine" in gpu[0].fix
    assert "docker restart trainer" in gpu[1].fix
    assert "daemon-reload" in gpu[1].message


def test_nvml_version_mismatch_says_reboot() -> None:
    f = dataclasses.replace(HEALTHY, gpu_probe_ok=False,
                            gpu_probe="Failed to initialize NVML: Driver/library version mismatch")
    assert by_check(dr.diagnose(f))["gpu-container"].fix == "reboot the host"


def test_no_driver_and_broken_driver() -> None:
    none = by_check(dr.diagnose(dataclasses.replace(HEALTHY, driver=None)))
    assert none["driver"].level == dr.ERROR and "--no-gpu" in none["driver"].fix
    assert "cuda" not in none
    broken = by_check(dr.diagnose(dataclasses.replace(
        HEALTHY, smi_error="NVIDIA-SMI has failed because it couldn't communicate with the "
                           "NVIDIA driver.")))
    assert "couldn't communicate" in broken["driver"].message


def test_driver_too_old_for_the_image() -> None:
    f = dataclasses.replace(HEALTHY, driver=DriverInfo("535.183.01", "12.2"),
                            image_env={"CUDA_VERSION": "12.4.1", "NVIDIA_REQUIRE_CUDA": REQ_124})
    cuda = by_check(dr.diagnose(f))["cuda"]
    assert cuda.level == dr.ERROR
    assert "supports CUDA 12.2 (driver 535.183.01) but proj:latest needs cuda>=12.4" in \
        cuda.message
    assert "upgrade the NVIDIA driver" in cuda.fix


def test_no_gpu_checks_leaves_gpu_findings_out() -> None:
    f = dataclasses.replace(HEALTHY, gpu_checks=False, driver=None, runtimes=())
    assert [x.check for x in dr.diagnose(f)] == ["engine", "shm", "disk", "image"]


def test_small_shm_names_the_setting() -> None:
    f = dataclasses.replace(HEALTHY, shm_bytes=2**20, shm_mode="--shm-size=1m",
                            shm_need=4 * dr.GIB)
    shm = by_check(dr.diagnose(f))["shm"]
    assert shm.level == dr.WARN
    assert "/dev/shm is 1.0 MiB in a run (--shm-size=1m); want at least 4.0 GiB" in shm.message
    assert "DLT_SHM_SIZE=4g" in shm.fix


def test_unmeasured_checks_are_info_not_ok() -> None:
    f = dataclasses.replace(HEALTHY, shm_bytes=None, disk_free=None, stale=None)
    found = by_check(dr.diagnose(f))
    assert {found[k].level for k in ("shm", "disk", "image")} == {dr.INFO}


def test_low_disk_and_stale_image_warn() -> None:
    f = dataclasses.replace(HEALTHY, disk_free=3 * dr.GIB, stale="requirements changed")
    found = by_check(dr.diagnose(f, min_free=20 * dr.GIB))
    assert found["disk"].level == dr.WARN and "3.0 GiB free at /var/lib/docker" in \
        found["disk"].message
    assert found["image"].level == dr.WARN and found["image"].fix == "run `inv extend-image`"
    assert dr.exit_code(dr.diagnose(f)) == 0  # warnings alone do not fail


def test_render_shows_fixes_under_problems_only() -> None:
    f = dataclasses.replace(HEALTHY, disk_free=dr.GIB)
    text = dr.render(dr.diagnose(f))
    assert text.count("fix:") == 1
    assert text.splitlines()[-1] == "0 error(s), 1 warning(s)"


def test_direct_mode_needs_no_toolkit() -> None:
    f = dataclasses.replace(HEALTHY, runtimes=("runc",), ctk_version="", gpu_mode="direct",
                            gpu_mode_why="no NVIDIA runtime and no CDI spec; the host's driver "
                            "is there (driver 550.54.15)")
    found = by_check(dr.diagnose(f))
    assert found["gpu mode"].level == dr.OK
    assert found["gpu mode"].message.startswith("runs get GPUs by direct: no NVIDIA runtime")
    assert found["toolkit"].level == dr.INFO
    assert found["toolkit"].message == "no NVIDIA runtime, none needed: runs use direct mode"


@pytest.mark.parametrize("version", ["20.10.24", "27.5.1", "27.5.1-ce", "1.13.1"])
def test_an_engine_before_28_warns_that_loopback_ports_reach_the_lan(version: str) -> None:
    findings = dr.diagnose(dataclasses.replace(HEALTHY, engine_version=version))
    found = by_check(findings)["ports"]
    assert found.level == dr.WARN
    assert found.message == (
        f"Docker engine {version} (< 28.0) lets other machines on the host's network reach "
        "ports published on its 127.0.0.1 (moby/moby#45610): a notebook's or TensorBoard's "
        "port is not kept to the host")
    assert found.fix.startswith("upgrade the engine to 28.0 or newer, or firewall it: ")
    assert "\n" not in found.message + found.fix
    assert [f.check for f in findings][:2] == ["engine", "ports"]
    assert dr.exit_code(findings) == 0  # a warning: runs still work


@pytest.mark.parametrize("version", ["28.0.0", "28.3.3", "29.1.0", ""])
def test_an_engine_from_28_or_of_unknown_version_has_no_ports_finding(version: str) -> None:
    findings = dr.diagnose(dataclasses.replace(HEALTHY, engine_version=version))
    assert "ports" not in by_check(findings)
