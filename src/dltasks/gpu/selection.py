"""GPU selection: what the user typed (`--gpu 0,1`, `all`, `none`, `auto`, `free:2`) as engine
requests.

Selected GPUs are given to the container by the engine (a DeviceRequest), so inside it they
are the only ones visible and numbered from 0. We never also set CUDA_VISIBLE_DEVICES to the
host indices: with only GPU 3 visible, CUDA_VISIBLE_DEVICES=3 would hide it.

``free:N`` asks for N GPUs that nobody holds; :mod:`dltasks.gpu.claims` turns it into ids on
the target host, under its GPU lock, before the container is made.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dltasks.errors import DltError

NONE, ALL, AUTO, IDS, FREE = "none", "all", "auto", "ids", "free"
#: DLT_GPU_MODE's values (how GPUs get into a container: dltasks.gpu.modes).
GPU_MODES = (AUTO, "runtime", "cdi", "direct")


@dataclass(frozen=True)
class GpuSelection:
    mode: str                      # none | all | auto | ids | free
    ids: tuple[str, ...] = ()      # host indices (or GPU UUIDs) when mode == ids
    count: int = 0                 # how many, when mode == free

    @property
    def wants_gpus(self) -> bool:
        return self.mode in (ALL, IDS, FREE)

    def resolve(self, engine_has_gpus: bool) -> GpuSelection:
        """Turn ``auto`` into ``all`` or ``none`` for this engine."""
        if self.mode != AUTO:
            return self
        return GpuSelection(ALL) if engine_has_gpus else GpuSelection(NONE)

    def describe(self) -> str:
        if self.mode == FREE:
            return f"free:{self.count}"
        return ",".join(self.ids) if self.mode == IDS else self.mode


def parse_gpu_request(values: Iterable[str] | str | None, default: str = AUTO) -> GpuSelection:
    """Parse ``--gpu`` values (repeatable, comma lists) or ``DLT_GPUS``; refuse bad ids early."""
    if values is None or isinstance(values, str):
        values = [values or default]
    items = [x.strip() for v in values for x in str(v).split(",") if x.strip()]
    if not items:
        items = [default]
    free = [x for x in items if x.lower().startswith(FREE)]
    if free:
        word = free[0].lower()
        n = word[len(FREE) + 1:] if word.startswith(FREE + ":") else ("1" if word == FREE else "")
        if len(items) > 1 or not n.isdigit() or int(n) < 1:
            raise DltError(f"--gpu {','.join(items)}: write free:N alone, N a number of GPUs "
                           "(--gpu free:2)")
        return GpuSelection(FREE, count=int(n))
    words = {x.lower() for x in items if x.lower() in (NONE, ALL, AUTO)}
    if words:
        if len(items) > 1:
            raise DltError(f"--gpu {','.join(items)}: '{sorted(words)[0]}' cannot be combined "
                           "with other ids; use e.g. --gpu all or --gpu 0,1")
        return GpuSelection(items[0].lower())
    ids: list[str] = []
    for x in items:
        if not (x.isdigit() or x.startswith("GPU-") or x.startswith("MIG-")):
            raise DltError(f"--gpu {x!r} is not a GPU id: use a number (0, 1, ...), a GPU UUID, "
                           "free:N, all, or none")
        key = str(int(x)) if x.isdigit() else x
        if key not in ids:
            ids.append(key)
    # host order (the order the GPUs have inside too, with CUDA_DEVICE_ORDER=PCI_BUS_ID)
    ids.sort(key=lambda k: (0, int(k), "") if k.isdigit() else (1, 0, k))
    return GpuSelection(IDS, tuple(ids))


def device_requests(sel: GpuSelection) -> list[dict[str, object]]:
    """Engine API DeviceRequests for this selection (empty for none)."""
    if sel.mode == ALL:
        return [{"Driver": "", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]],
                 "Options": {}}]
    if sel.mode == IDS:
        return [{"Driver": "", "Count": 0, "DeviceIDs": list(sel.ids),
                 "Capabilities": [["gpu"]], "Options": {}}]
    return []


def cli_flags(sel: GpuSelection) -> list[str]:
    """The `docker run` flags that ask for the same GPUs."""
    if sel.mode == ALL:
        return ["--gpus", "all"]
    if sel.mode == IDS:
        return ["--gpus", f'"device={",".join(sel.ids)}"']
    return []
