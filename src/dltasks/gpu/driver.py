"""The NVIDIA driver of a host, found the way ``nvidia-ctk cdi generate`` finds it, and what a
container needs of it for a set of GPUs: device nodes, files to mount, library folders.

No toolkit is needed. :data:`DISCOVER_SCRIPT` runs on the TARGET host (this machine or a remote
one, through :class:`~dltasks.hosts.shell.Shell`: one round trip) and prints what it sees;
:func:`parse_driver` turns that into :class:`Driver`; :func:`edits_for` picks what a selection of
GPUs needs. What is taken, and why (as nvidia-ctk's driver discoverers do):

- device nodes: ``/dev/nvidiactl``, ``/dev/nvidia-uvm``, ``/dev/nvidia-uvm-tools``,
  ``/dev/nvidia-modeset`` for every container, and ``/dev/nvidiaN`` for each selected GPU
  only: CUDA and NVML enumerate the GPUs whose nodes they can open, so inside the container
  the selected GPUs are the only ones and are numbered from 0. GPU index -> minor number
  comes from ``/proc/driver/nvidia/gpus/<bus>/information``: nvidia-smi numbers the GPUs in
  PCI bus order, and the file names each one's device minor (asking nvidia-smi itself would
  cost every run the NVML start-up, a tenth of a second or more);
- the compute and utility libraries (libcuda, libnvidia-ml, libnvidia-ptxjitcompiler,
  libnvidia-nvvm, libcudadebugger, ...): every name the loader cache (``ldconfig -p``) or the
  known driver folders hold, SONAME links included (a bind mount of a link mounts its target,
  which stands in for the toolkit's create-symlinks hook); their folders go first on
  ``LD_LIBRARY_PATH``, which stands in for its update-ldcache hook;
- the driver's programs (``nvidia-smi``, ``nvidia-debugdump``, ``nvidia-persistenced``,
  ``nvidia-cuda-mps-control``, ``nvidia-cuda-mps-server``);
- the GSP firmware (``/lib/firmware/nvidia/<version>/gsp*.bin``) and the persistenced and
  fabric manager sockets, where they exist.

With a driver root other than ``/`` (``DLT_DRIVER_ROOT``: a driver installed under
``/run/nvidia/driver`` by the GPU operator, say) files are found under it and mounted at their
paths without it, as nvidia-ctk's ``--driver-root`` does.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from dltasks.errors import DltError
from dltasks.gpu.selection import ALL, IDS, GpuSelection
from dltasks.scripts import script

#: Compute and utility libraries (libnvidia-container's "compute" and "utility" sets).
LIBRARIES = ("libcuda", "libcudadebugger", "libnvidia-ml", "libnvidia-cfg",
             "libnvidia-ptxjitcompiler", "libnvidia-nvvm", "libnvidia-gpucomp",
             "libnvidia-allocator", "libnvidia-opencl", "libnvidia-compiler",
             "libnvidia-fatbinaryloader", "libnvidia-pkcs11", "libnvidia-pkcs11-openssl3")
CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
_LIB_RE = re.compile(r"^(" + "|".join(re.escape(n) for n in LIBRARIES) + r")\.so(\.[0-9.]+)?$")


#: Prints the driver of the host (``$1``: the driver root, "" for /), a fact a line:
#: ``dev<TAB>path``, ``gpu<TAB>bus<TAB>minor``, ``version<TAB>line``,
#: ``lib<TAB>path``, ``bin<TAB>path``, ``fw<TAB>path``, ``ipc<TAB>path``. The folders it
#: looks in for libraries and programs are listed in the script.
DISCOVER_SCRIPT = script("gpu_discover")


@dataclass(frozen=True)
class DeviceNode:
    """A device node: where it is on the host, and its path in the container."""

    host: str
    path: str


@dataclass(frozen=True)
class FileMount:
    host: str
    path: str


@dataclass(frozen=True)
class Edits:
    """What a container gets for its GPUs (CDI's containerEdits, as dltasks applies them)."""

    nodes: tuple[DeviceNode, ...] = ()
    mounts: tuple[FileMount, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    library_path: tuple[str, ...] = ()     # container folders to put first on LD_LIBRARY_PATH
    hooks: tuple[str, ...] = ()            # hooks of a spec that dltasks did not run
    bin_path: tuple[str, ...] = ()         # container folders of the driver's programs (PATH)

    def __add__(self, other: Edits) -> Edits:
        return Edits(_uniq(self.nodes + other.nodes), _uniq(self.mounts + other.mounts),
                     _uniq(self.env + other.env), _uniq(self.library_path + other.library_path),
                     _uniq(self.hooks + other.hooks), _uniq(self.bin_path + other.bin_path))


def _uniq(items: tuple) -> tuple:  # type: ignore[type-arg]
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class Driver:
    """The NVIDIA driver as found on one host."""

    root: str                                   # the driver root ("" for /)
    version: str = ""
    control: tuple[DeviceNode, ...] = ()              # nodes every GPU container needs
    gpus: dict[int, DeviceNode] = field(default_factory=dict)  # host index -> /dev/nvidiaN
    libraries: tuple[FileMount, ...] = ()
    binaries: tuple[FileMount, ...] = ()
    firmware: tuple[FileMount, ...] = ()
    sockets: tuple[FileMount, ...] = ()

    @property
    def found(self) -> bool:
        """Whether a usable driver is there: its control node and at least one GPU."""
        return any(n.path == "/dev/nvidiactl" for n in self.control) and bool(self.gpus)

    def common(self) -> Edits:
        """What every GPU container gets, whichever GPUs it has."""
        files = self.libraries + self.binaries + self.firmware + self.sockets
        folders = tuple(dict.fromkeys(posixpath.dirname(f.path) for f in self.libraries))
        bins = tuple(dict.fromkeys(posixpath.dirname(f.path) for f in self.binaries))
        return Edits(nodes=self.control, mounts=files, library_path=folders, bin_path=bins)


def _bus(text: str) -> tuple[int, int, int, int] | None:
    """A PCI address (``00000000:17:00.0`` or ``0000:17:00.0``) as numbers."""
    m = re.match(r"^\s*([0-9a-fA-F]+):([0-9a-fA-F]+):([0-9a-fA-F]+)\.([0-9a-fA-F]+)\s*$", text)
    return tuple(int(x, 16) for x in m.groups()) if m else None  # type: ignore[return-value]


def parse_driver(output: str, root: str = "") -> Driver:
    """:data:`DISCOVER_SCRIPT`'s output as a :class:`Driver`."""
    root = root.rstrip("/")

    def inside(path: str) -> str:
        return path[len(root):] if root and path.startswith(root + "/") else path

    control: dict[str, DeviceNode] = {}
    nodes: dict[int, DeviceNode] = {}   # minor -> node
    minors: dict[tuple[int, int, int, int], int] = {}
    libs: dict[str, FileMount] = {}
    bins: dict[str, FileMount] = {}
    fw: dict[str, FileMount] = {}
    ipc: dict[str, FileMount] = {}
    version = ""
    for line in output.splitlines():
        kind, _, rest = line.partition("\t")
        if kind == "dev":
            name = posixpath.basename(rest)
            node = DeviceNode(rest, inside(rest))
            if name in CONTROL_NODES:
                control[name] = node
            elif re.fullmatch(r"nvidia\d+", name):
                nodes[int(name[6:])] = node
        elif kind == "gpu":
            bus, _, minor = rest.partition("\t")
            key = _bus(bus)
            if key is not None and minor.strip().isdigit():
                minors[key] = int(minor)
        elif kind == "version":  # "NVRM version: NVIDIA UNIX [Open] Kernel Module [for
            # x86_64]  580.159.04  Release Build ...", or a bare version
            found_v = re.search(r"(?:^|\s)(\d+\.\d+(?:\.\d+)*)(?:\s|$)", rest)
            version = found_v.group(1) if found_v else version
        elif kind == "lib" and _LIB_RE.match(posixpath.basename(rest)):
            libs.setdefault(inside(rest), FileMount(rest, inside(rest)))
        elif kind == "bin":
            bins.setdefault(inside(rest), FileMount(rest, inside(rest)))
        elif kind == "fw":
            fw.setdefault(inside(rest), FileMount(rest, inside(rest)))
        elif kind == "ipc":
            ipc.setdefault(inside(rest), FileMount(rest, inside(rest)))
    gpus: dict[int, DeviceNode]
    if minors:  # nvidia-smi's index is the PCI bus order; the driver says each one's minor
        by_bus = [minors[b] for b in sorted(minors)]
        gpus = {i: nodes[m] for i, m in enumerate(by_bus) if m in nodes}
    else:  # no procfs to ask (some sandboxes): the nodes in minor order
        gpus = dict(enumerate(nodes[m] for m in sorted(nodes)))
    order = [n for n in CONTROL_NODES if n in control]
    return Driver(root, version, tuple(control[n] for n in order), gpus,
                  _driver_folder_first(list(libs.values())), tuple(bins.values()),
                  tuple(fw.values()), tuple(ipc.values()))


def _family(name: str) -> str:
    return name.split(".so", 1)[0]


def _driver_folder_first(libs: list[FileMount]) -> tuple[FileMount, ...]:
    """The libraries of the driver's own folder (where the loader finds libcuda first: the
    loader cache comes first in the list), and of other folders only the families that
    folder lacks: one copy of each library, not one per folder that links to it (a host whose
    /usr/lib links into /usr/local/nvidia would otherwise mount everything twice or more)."""
    cuda = [m for m in libs if _family(posixpath.basename(m.path)) == "libcuda"]
    if not cuda:
        return tuple(libs)
    home = posixpath.dirname(cuda[0].path)
    ours = {_family(posixpath.basename(m.path)) for m in libs
            if posixpath.dirname(m.path) == home}
    taken: dict[str, str] = {}  # family -> the folder it is taken from
    out = []
    for m in libs:
        folder, fam = posixpath.dirname(m.path), _family(posixpath.basename(m.path))
        if fam in ours and folder != home:
            continue
        if taken.setdefault(fam, folder) != folder:
            continue
        out.append(m)
    return tuple(out)


def gpu_indices(driver: Driver, sel: GpuSelection, host: str) -> list[int]:
    """The host indices ``sel`` names on this driver; a one-line error for one it lacks."""
    if sel.mode == ALL:
        return sorted(driver.gpus)
    if sel.mode != IDS:
        return []
    have = ", ".join(str(i) for i in sorted(driver.gpus)) or "none"
    out = []
    for gid in sel.ids:
        if not gid.isdigit():
            raise DltError(f"--gpu {gid}: GPUs by UUID need the NVIDIA runtime or a CDI spec; "
                           f"without them use indices (GPUs on {host}: {have})")
        if int(gid) not in driver.gpus:
            raise DltError(f"GPU {gid} is not on {host} (its GPUs: {have}): choose one of "
                           "them, or --gpu all")
        out.append(int(gid))
    return out


def edits_for(driver: Driver, sel: GpuSelection, host: str) -> Edits:
    """What a container needs for the GPUs of ``sel``: the common part and their nodes."""
    indices = gpu_indices(driver, sel, host)
    if not indices:
        return Edits()
    return driver.common() + Edits(nodes=tuple(driver.gpus[i] for i in indices))


def no_driver_message(host: str, driver: Driver, hint: str = ", or run with --gpu none") -> str:
    """Why there is no GPU to give, as one line."""
    if not any(n.path == "/dev/nvidiactl" for n in driver.control):
        return (f"no NVIDIA driver on {host} (no /dev/nvidiactl): install the NVIDIA driver "
                f"there{hint}")
    return (f"the NVIDIA driver on {host} shows no GPU (no /dev/nvidiaN device node): check "
            f"`nvidia-smi` there (`inv doctor`){hint}")
