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
