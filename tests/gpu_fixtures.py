"""Fake NVIDIA driver trees for tests: real character devices (``mknod`` with /dev/null's major
and minor, so a container can open them and nothing happens) under the names the driver uses,
and driver files with their real names in the layouts of Debian/Ubuntu's packages, NVIDIA's
.run installer and the /usr/local/nvidia folder of the borrowed H200 machine."""

from __future__ import annotations

import os
import stat
from pathlib import Path

VERSION = "580.159.04"
NULL = os.makedev(1, 3)

#: layout name -> (library folder, binary folder)
LAYOUTS = {
    "debian": ("/usr/lib/x86_64-linux-gnu", "/usr/bin"),
    "runfile": ("/usr/lib64", "/usr/bin"),
    "usr-local-nvidia": ("/usr/local/nvidia/lib64", "/usr/local/nvidia/bin"),
}
LIBS = ("libcuda", "libnvidia-ml", "libnvidia-ptxjitcompiler", "libnvidia-nvvm",
        "libcudadebugger")
NOT_TAKEN = ("libnvidia-glcore", "libnvidia-eglcore", "libGLX_nvidia")


def make_driver(root: Path, layout: str = "debian", gpus: int = 2, *,
                firmware: bool = True) -> Path:
    """A driver tree under ``root`` (needs root for mknod); returns ``root``."""
    libdir, bindir = LAYOUTS[layout]
    dev = root / "dev"
    dev.mkdir(parents=True, exist_ok=True)
    for name in ["nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset",
                 *(f"nvidia{i}" for i in range(gpus))]:
        os.mknod(dev / name, 0o666 | stat.S_IFCHR, NULL)
        os.chmod(dev / name, 0o666)  # the umask may have taken bits: the host's are rw-rw-rw-
    (dev / "nvidia-caps").mkdir()
    lib = root / libdir.lstrip("/")
    lib.mkdir(parents=True, exist_ok=True)
    for name in LIBS + NOT_TAKEN:
        real = lib / f"{name}.so.{VERSION}"
        real.write_text(f"{name} {VERSION}\n")
        (lib / f"{name}.so.1").symlink_to(real.name)
    (lib / "libcuda.so").symlink_to("libcuda.so.1")
    b = root / bindir.lstrip("/")
    b.mkdir(parents=True, exist_ok=True)
    smi = b / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'fake nvidia-smi: driver " + VERSION + "'\n")
    smi.chmod(0o755)
    if firmware:
        fw = root / "lib" / "firmware" / "nvidia" / VERSION
        fw.mkdir(parents=True)
        for f in ("gsp_ga10x.bin", "gsp_tu10x.bin"):
            (fw / f).write_bytes(b"\0")
    proc = root / "proc" / "driver" / "nvidia"
    proc.mkdir(parents=True)
    (proc / "version").write_text(f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {VERSION}  "
                                  "Release Build\nGCC version:  gcc version 12.2.0\n")
    return root


#: The nvidia-smi the sharing tests put first on PATH: it prints gpus.csv or apps.csv from its
#: own folder for the two queries dltasks asks (dltasks.gpu.claims), as the real one does.
FAKE_SMI = """#!/bin/sh
d=$(dirname "$0")
case "$1" in
  --query-gpu=*) cat "$d/gpus.csv" ;;
  --query-compute-apps=*) cat "$d/apps.csv" ;;
  *) echo "fake nvidia-smi: $*" ;;
esac
"""


def gpu_line(i: int, used: int = 0) -> str:
    """One --query-gpu CSV line of an H200 (nounits), like the borrowed machine's."""
    return (f"{i}, GPU-{i:08x}-cb30-dd14-bb69-5907ea0e7e2c, NVIDIA H200, 00000000:{i + 6:02X}"
            f":00.0, {used}, 143771, 0, 37, Disabled")


def gpu_uuid(i: int) -> str:
    return f"GPU-{i:08x}-cb30-dd14-bb69-5907ea0e7e2c"


def make_fake_smi(d: Path, gpus: int = 4) -> Path:
    """A folder (readable by every user) holding the fake nvidia-smi and an idle ``gpus``-GPU
    host's answers; put it first on PATH. Returns the folder."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "nvidia-smi").write_text(FAKE_SMI)
    (d / "nvidia-smi").chmod(0o755)
    (d / "gpus.csv").write_text("".join(gpu_line(i) + "\n" for i in range(gpus)))
    (d / "apps.csv").write_text("")
    for f in ("gpus.csv", "apps.csv"):
        (d / f).chmod(0o644)
    d.chmod(0o755)
    return d
