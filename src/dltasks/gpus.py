"""GPU selection: what the user typed (`--gpu 0,1`, `all`, `none`, `auto`) as engine requests.

Selected GPUs are given to the container by the engine (a DeviceRequest), so inside it they
are the only ones visible and numbered from 0. We never also set CUDA_VISIBLE_DEVICES to the
host indices: with only GPU 3 visible, CUDA_VISIBLE_DEVICES=3 would hide it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .errors import DltError

NONE, ALL, AUTO, IDS = "none", "all", "auto", "ids"
#: DLT_GPU_MODE's values (how GPUs get into a container: dltasks.gpumode).
GPU_MODES = (AUTO, "runtime", "cdi", "direct")


@dataclass(frozen=True)
class GpuSelection:
    mode: str                      # none | all | auto | ids
    ids: tuple[str, ...] = ()      # host indices (or GPU UUIDs) when mode == ids

    @property
    def wants_gpus(self) -> bool:
        return self.mode in (ALL, IDS)

    def resolve(self, engine_has_gpus: bool) -> GpuSelection:
        """Turn ``auto`` into ``all`` or ``none`` for this engine."""
        if self.mode != AUTO:
            return self
        return GpuSelection(ALL) if engine_has_gpus else GpuSelection(NONE)

    def describe(self) -> str:
        return ",".join(self.ids) if self.mode == IDS else self.mode


def parse_gpus(values: Iterable[str] | str | None, default: str = AUTO) -> GpuSelection:
    """Parse ``--gpu`` values (repeatable, comma lists) or ``DLT_GPUS``; refuse bad ids early."""
    if values is None or isinstance(values, str):
        values = [values or default]
    items = [x.strip() for v in values for x in str(v).split(",") if x.strip()]
    if not items:
        items = [default]
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
                           "all, or none")
        key = str(int(x)) if x.isdigit() else x
        if key not in ids:
            ids.append(key)
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
