"""Driver discovery (dltasks.gpu.driver) over fixture trees made of real device nodes and files,
through the real discovery script; GPU selection; CDI specs (dltasks.gpu.cdi); the mode choice
(dltasks.gpu.modes.decide) and what it puts into a RunSpec."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from dltasks.engine.spec import RunSpec, create_config, docker_run_cmdline
from dltasks.errors import DltError
from dltasks.gpu import cdi
from dltasks.gpu.driver import (
    DISCOVER_SCRIPT,
    DeviceNode,
    Driver,
    Edits,
    FileMount,
    edits_for,
    parse_driver,
)
from dltasks.gpu.modes import CDI, DIRECT, RUNTIME, HostGpus, apply_access, decide
from dltasks.gpu.selection import GpuSelection, parse_gpu_request
from tests.gpu_fixtures import LAYOUTS, VERSION, make_driver

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")


def discover(root: Path | str, path: str | None = None) -> Driver:
    env = {"PATH": path or os.environ["PATH"]}
    out = subprocess.run(["sh", "-c", DISCOVER_SCRIPT, "_", str(root)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return parse_driver(out, str(root))


@needs_root
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_discovery_finds_nodes_libraries_binaries_firmware(tmp_path: Path, layout: str) -> None:
    make_driver(tmp_path, layout, gpus=2)
    d = discover(tmp_path)
    libdir, bindir = LAYOUTS[layout]
    assert d.found and d.version == VERSION and d.root == str(tmp_path)
    assert [n.path for n in d.control] == ["/dev/nvidiactl", "/dev/nvidia-uvm",
                                           "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"]
    assert {i: n.path for i, n in d.gpus.items()} == {0: "/dev/nvidia0", 1: "/dev/nvidia1"}
    assert d.gpus[1].host == f"{tmp_path}/dev/nvidia1"
    paths = {m.path for m in d.libraries}
    assert f"{libdir}/libcuda.so.1" in paths and f"{libdir}/libcuda.so.{VERSION}" in paths
    assert f"{libdir}/libcuda.so" in paths and f"{libdir}/libnvidia-ml.so.1" in paths
    assert not any("glcore" in p or "GLX" in p or "eglcore" in p for p in paths)
    assert all(m.host == f"{tmp_path}{m.path}" for m in d.libraries)
    assert [m.path for m in d.binaries] == [f"{bindir}/nvidia-smi"]
    assert sorted(m.path for m in d.firmware) == [
        f"/lib/firmware/nvidia/{VERSION}/gsp_ga10x.bin",
        f"/lib/firmware/nvidia/{VERSION}/gsp_tu10x.bin"]
    assert d.common().library_path == (libdir,)


@needs_root
def test_a_selection_gets_only_its_gpus_node(tmp_path: Path) -> None:
    d = discover(make_driver(tmp_path, gpus=4))
    e = edits_for(d, parse_gpu_request("1,3"), "gpu1")
    gpu_nodes = [n.path for n in e.nodes if n.path[-1].isdigit()]
    assert gpu_nodes == ["/dev/nvidia1", "/dev/nvidia3"]
    assert "/dev/nvidiactl" in [n.path for n in e.nodes]
    assert edits_for(d, parse_gpu_request("none"), "gpu1") == Edits()
    with pytest.raises(DltError, match=r"GPU 7 is not on gpu1 \(its GPUs: 0, 1, 2, 3\)"):
        edits_for(d, parse_gpu_request("7"), "gpu1")
    with pytest.raises(DltError, match="GPUs by UUID need the NVIDIA runtime or a CDI spec"):
        edits_for(d, parse_gpu_request("GPU-1234"), "gpu1")


def test_the_loader_cache_listing_is_read(tmp_path: Path) -> None:
    """With the driver root /, `ldconfig -p` says where the libraries are."""
    lib = tmp_path / "opt-driver"
    lib.mkdir()
    (lib / "libcuda.so.1").write_text("x")
    (lib / "libnvidia-ml.so.1").write_text("x")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ldconfig").write_text(
        "#!/bin/sh\nprintf '3 libs found in cache `/etc/ld.so.cache'\"'\"'\\n'\n"
        f"printf '\\tlibcuda.so.1 (libc6,x86-64) => {lib}/libcuda.so.1\\n'\n"
        f"printf '\\tlibnvidia-ml.so.1 (libc6,x86-64) => {lib}/libnvidia-ml.so.1\\n'\n"
        "printf '\\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1\\n'\n")
    (fake / "ldconfig").chmod(0o755)
    d = discover("", path=f"{fake}:{os.environ['PATH']}")
    assert {m.path for m in d.libraries} >= {f"{lib}/libcuda.so.1", f"{lib}/libnvidia-ml.so.1"}
    assert not any("libz" in m.path for m in d.libraries)


def test_gpu_index_is_the_pci_order_and_the_minor_comes_from_procfs() -> None:
    """GPU 0 (lowest PCI address, as nvidia-smi numbers them) may be /dev/nvidia1."""
    out = "\n".join(["dev\t/dev/nvidiactl", "dev\t/dev/nvidia0", "dev\t/dev/nvidia1",
                     "gpu\t0000:86:00.0\t0", "gpu\t0000:3b:00.0\t1",
                     "version\t580.159.04"])
    d = parse_driver(out)
    assert d.gpus[0].path == "/dev/nvidia1" and d.gpus[1].path == "/dev/nvidia0"


@needs_root
def test_procfs_of_the_driver_root_is_read(tmp_path: Path) -> None:
    make_driver(tmp_path, gpus=2)
    for bus, minor in (("0000:86:00.0", 0), ("0000:3b:00.0", 1)):
        g = tmp_path / "proc" / "driver" / "nvidia" / "gpus" / bus
        g.mkdir(parents=True)
        (g / "information").write_text(f"Model: \t\t NVIDIA H200\nIRQ:   \t\t 40\n"
                                       f"Device Minor: \t {minor}\nBus Location: \t {bus}\n")
    d = discover(tmp_path)
    assert d.gpus[0].path == "/dev/nvidia1" and d.gpus[1].path == "/dev/nvidia0"


def test_a_gpu_whose_node_is_missing_is_not_offered() -> None:
    out = "\n".join(["dev\t/dev/nvidiactl", "dev\t/dev/nvidia0", "gpu\t0000:3b:00.0\t0",
                     "gpu\t0000:86:00.0\t1"])
    assert sorted(parse_driver(out).gpus) == [0]


def test_no_driver_is_one_line() -> None:
    d = parse_driver("")
    assert not d.found
    with pytest.raises(DltError, match=r"no NVIDIA driver on gpu1 \(no /dev/nvidiactl\)"):
        decide(DIRECT, parse_gpu_request("0"), has_runtime=False, engine_cdi=False,
               host=HostGpus(d, None), where="gpu1")


# -- CDI -----------------------------------------------------------------------------------

SPEC = """
cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
- name: "0"
  containerEdits:
    deviceNodes: [{path: /dev/nvidia0}]
- name: "1"
  containerEdits:
    deviceNodes: [{path: /dev/nvidia1}]
- name: all
  containerEdits:
    deviceNodes: [{path: /dev/nvidia0}, {path: /dev/nvidia1}]
containerEdits:
  env: [NVIDIA_VISIBLE_DEVICES=void]
  deviceNodes: [{path: /dev/nvidiactl}, {path: /dev/nvidia-uvm, hostPath: /host/dev/nvidia-uvm}]
  mounts:
  - {hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04,
     containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04, options: [ro, bind]}
  hooks:
  - hookName: createContainer
    path: /usr/bin/nvidia-cdi-hook
    args: [nvidia-cdi-hook, update-ldcache, --folder, /usr/lib/x86_64-linux-gnu]
  - hookName: createContainer
    path: /usr/bin/nvidia-cdi-hook
    args: [nvidia-cdi-hook, create-symlinks, --link, libcuda.so.1::/usr/lib/libcuda.so]
"""


def test_cdi_spec_devices_and_common_edits() -> None:
    spec = cdi.load([("/etc/cdi/nvidia.yaml", SPEC)])
    assert spec is not None and spec.files == ("/etc/cdi/nvidia.yaml",)
    names, e = spec.edits_for(parse_gpu_request("1"), "gpu1")
    assert names == ["1"]
    assert [n.path for n in e.nodes] == ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia1"]
    assert DeviceNode("/host/dev/nvidia-uvm", "/dev/nvidia-uvm") in e.nodes
    assert e.env == (("NVIDIA_VISIBLE_DEVICES", "void"),)
    assert e.library_path == ("/usr/lib/x86_64-linux-gnu",)
    assert e.hooks == ("nvidia-cdi-hook create-symlinks",)
    assert "create-symlinks" in cdi.hook_warning(e, spec.files)
    assert spec.names_for(GpuSelection("all"), "h") == ["all"]


def test_cdi_later_files_win_and_other_kinds_are_ignored() -> None:
    other = "cdiVersion: 0.6.0\nkind: vendor.com/fpga\ndevices: [{name: x, containerEdits: {}}]\n"
    late = ("cdiVersion: 0.6.0\nkind: nvidia.com/gpu\ndevices:\n- name: '0'\n  containerEdits:\n"
            "    deviceNodes: [{path: /dev/nvidia9}]\n")
    spec = cdi.load([("/etc/cdi/a.yaml", SPEC), ("/etc/cdi/fpga.yaml", other),
                     ("/var/run/cdi/b.yaml", late)])
    assert spec is not None and spec.files == ("/etc/cdi/a.yaml", "/var/run/cdi/b.yaml")
    assert spec.devices["0"].nodes == (DeviceNode("/dev/nvidia9", "/dev/nvidia9"),)
    assert cdi.load([("/etc/cdi/fpga.yaml", other)]) is None


@pytest.mark.parametrize(("text", "message"), [
    ("kind: [unclosed", r"CDI spec /etc/cdi/x.yaml is not valid YAML \(line 1\)"),
    ("cdiVersion: 9.9.9\nkind: nvidia.com/gpu\n", r"has cdiVersion '9.9.9', which dltasks "
                                                   "does not know"),
    ("- a list\n", "is not a mapping"),
    ("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices: [{containerEdits: {}}]\n",
     "device 1 has no name"),
    ("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ncontainerEdits: {mounts: [{hostPath: /a}]}\n",
     "a container edit lacks 'containerPath'"),
])
def test_cdi_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(DltError, match=message):
        cdi.load([("/etc/cdi/x.yaml", text)])


def test_cdi_device_not_in_the_spec() -> None:
    spec = cdi.load([("/etc/cdi/nvidia.yaml", SPEC)])
    assert spec is not None
    with pytest.raises(DltError, match=r"has no device nvidia.com/gpu=5 \(it has: 0, 1, all\)"):
        spec.edits_for(parse_gpu_request("5"), "gpu1")


@needs_root
def test_written_spec_reads_back_as_the_same_edits(tmp_path: Path) -> None:
    d = discover(make_driver(tmp_path, "usr-local-nvidia", gpus=2))
    text = cdi.dump(cdi.spec_for(d, "gpu1"), d, "gpu1")
    assert text.startswith("# CDI spec for the NVIDIA driver 580.159.04 on gpu1")
    data = yaml.safe_load(text)
    assert data["kind"] == "nvidia.com/gpu" and [x["name"] for x in data["devices"]] == \
        ["0", "1", "all"]
    spec = cdi.load([("/etc/cdi/dltasks-nvidia.yaml", text)])
    assert spec is not None
    _, back = spec.edits_for(parse_gpu_request("1"), "gpu1")
    want = edits_for(d, parse_gpu_request("1"), "gpu1")
    assert set(back.nodes) == set(want.nodes) and set(back.mounts) == set(want.mounts)
    assert back.env == (("LD_LIBRARY_PATH", "/usr/local/nvidia/lib64"),)


# -- the mode choice --------------------------------------------------------------------------

DRIVER = Driver("", VERSION, (DeviceNode("/dev/nvidiactl", "/dev/nvidiactl"),),
                {0: DeviceNode("/dev/nvidia0", "/dev/nvidia0"),
                 1: DeviceNode("/dev/nvidia1", "/dev/nvidia1")},
                (FileMount("/usr/lib/x86_64-linux-gnu/libcuda.so.1",
                           "/usr/lib/x86_64-linux-gnu/libcuda.so.1"),))


def test_auto_prefers_runtime_then_cdi_then_direct() -> None:
    sel = parse_gpu_request("auto")
    spec = cdi.load([("/etc/cdi/nvidia.yaml", SPEC)])
    a = decide("auto", sel, has_runtime=True, engine_cdi=False, host=None, where="h")
    assert a.mode == RUNTIME and a.selection.mode == "all"
    a = decide("auto", sel, has_runtime=False, engine_cdi=False, host=HostGpus(DRIVER, spec),
               where="h")
    assert a.mode == CDI and "applied by dltasks" in a.why and a.warning
    a = decide("auto", sel, has_runtime=False, engine_cdi=True, host=HostGpus(DRIVER, spec),
               where="h")
    assert a.mode == CDI and a.cdi_names == ("all",) and a.edits == Edits()
    a = decide("auto", sel, has_runtime=False, engine_cdi=False, host=HostGpus(DRIVER, None),
               where="h")
    assert a.mode == DIRECT and a.why.endswith("(driver 580.159.04)")
    a = decide("auto", sel, has_runtime=False, engine_cdi=False,
               host=HostGpus(parse_driver(""), None), where="h")
    assert a.mode == "none" and a.selection.mode == "none"
    # asked for a GPU with nothing to give it: the runtime path (and its error) as before
    a = decide("auto", parse_gpu_request("0"), has_runtime=False, engine_cdi=False,
               host=HostGpus(parse_driver(""), None), where="h")
    assert a.mode == RUNTIME


def test_cdi_mode_without_a_spec_is_one_line() -> None:
    with pytest.raises(DltError, match="DLT_GPU_MODE=cdi but h has no CDI spec"):
        decide("cdi", parse_gpu_request("0"), has_runtime=False, engine_cdi=False,
               host=HostGpus(DRIVER, None), where="h")


def test_direct_access_in_the_run_spec_and_the_docker_run_line() -> None:
    a = decide("direct", parse_gpu_request("1"), has_runtime=False, engine_cdi=False,
               host=HostGpus(DRIVER, None), where="h")
    spec = apply_access(RunSpec("img", ("python", "main.py"), gpus=parse_gpu_request("1")), a,
                 {"LD_LIBRARY_PATH": "/usr/local/cuda/lib64"})
    hc = create_config(spec)["HostConfig"]
    assert "DeviceRequests" not in hc
    assert hc["Devices"] == [
        {"PathOnHost": "/dev/nvidiactl", "PathInContainer": "/dev/nvidiactl",
         "CgroupPermissions": "rwm"},
        {"PathOnHost": "/dev/nvidia1", "PathInContainer": "/dev/nvidia1",
         "CgroupPermissions": "rwm"}]
    assert {"Type": "bind", "Source": "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
            "Target": "/usr/lib/x86_64-linux-gnu/libcuda.so.1", "ReadOnly": True} in hc["Mounts"]
    assert spec.env["LD_LIBRARY_PATH"] == "/usr/lib/x86_64-linux-gnu:/usr/local/cuda/lib64"
    line = docker_run_cmdline(spec)
    assert "--device /dev/nvidiactl --device /dev/nvidia1" in line and "--gpus" not in line
    assert ("-v /usr/lib/x86_64-linux-gnu/libcuda.so.1:/usr/lib/x86_64-linux-gnu/libcuda.so.1:ro"
            in line)


def test_cdi_requests_for_an_engine_that_knows_cdi() -> None:
    spec_ = cdi.load([("/etc/cdi/nvidia.yaml", SPEC)])
    a = decide("cdi", parse_gpu_request("0,1"), has_runtime=False, engine_cdi=True,
               host=HostGpus(DRIVER, spec_), where="h")
    spec = apply_access(RunSpec("img", ("true",), gpus=parse_gpu_request("0,1")), a, {})
    hc = create_config(spec)["HostConfig"]
    assert hc["DeviceRequests"][0]["Driver"] == "cdi"
    assert hc["DeviceRequests"][0]["DeviceIDs"] == ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]
    assert "--device nvidia.com/gpu=0 --device nvidia.com/gpu=1" in docker_run_cmdline(spec)


def test_runtime_access_keeps_the_device_request() -> None:
    a = decide("runtime", parse_gpu_request("0"), has_runtime=False, engine_cdi=False, host=None,
               where="h")
    spec = apply_access(RunSpec("img", ("true",), gpus=parse_gpu_request("0")), a, {})
    assert create_config(spec)["HostConfig"]["DeviceRequests"][0]["DeviceIDs"] == ["0"]
    assert "--gpus" in docker_run_cmdline(spec)


def test_version_line_of_the_open_kernel_module() -> None:
    line = ("version\tNVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  "
            "Release Build  (dvs-builder@U22-I3-AF03-09-1)  Thu Oct 30 2025")
    assert parse_driver(line).version == "580.159.04"
    assert parse_driver("version\tNVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue "
                 "Mar  5 22:23:56 UTC 2024").version == "550.54.15"


def test_one_copy_of_each_library_from_the_driver_folder() -> None:
    """A host whose /lib and /usr/lib link into /usr/local/nvidia/lib64 (the H200 machine)."""
    names = ("libcuda.so.1", "libcuda.so", "libnvidia-ml.so.1")
    lines = [f"lib\t/usr/local/nvidia/lib64/{n}" for n in names]
    lines += [f"lib\t/lib/{n}" for n in names] + [f"lib\t/usr/lib/{n}" for n in names]
    lines += ["lib\t/usr/lib/libnvidia-gpucomp.so", "lib\t/lib/libnvidia-gpucomp.so"]
    d = parse_driver("\n".join(lines))
    assert [m.path for m in d.libraries] == [
        "/usr/local/nvidia/lib64/libcuda.so.1", "/usr/local/nvidia/lib64/libcuda.so",
        "/usr/local/nvidia/lib64/libnvidia-ml.so.1", "/usr/lib/libnvidia-gpucomp.so"]
    assert d.common().library_path == ("/usr/local/nvidia/lib64", "/usr/lib")
