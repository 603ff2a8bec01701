"""Who holds which GPU on a shared host, and which GPUs a run may take: pure logic.

Two sources, both read on the TARGET host:

- **claims**: every running dltasks container, of any user and any project, names the host
  GPUs it holds in its ``dltasks.gpus`` label (``0,2``, a UUID, or ``all``). Claims are the
  containers themselves, never files: a run holds its GPUs exactly as long as its container
  runs, and a crashed ``inv`` cannot leave a stale claim behind. A container that was created
  but never started is not a claim: creation and start happen under the host's GPU lock
  (:mod:`dltasks.gpu.lock`), so one seen in that state under the lock was abandoned.
- **the driver's account** (``nvidia-smi --query-gpu`` and ``--query-compute-apps``, see
  :func:`status_script`): a GPU with a compute process on it, or more memory in use than
  ``DLT_GPU_FREE_MIB``, is busy; one that fell off the bus is lost; one in MIG mode is not
  handed out whole.

:func:`choose_gpus` turns a selection (``free:N``, ids, ``all``) into the GPUs a run gets, or a
one-line error that names who holds the others.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dltasks.errors import DltError
from dltasks.gpu.selection import ALL, FREE, IDS, GpuSelection

GPU_FIELDS = ("index", "uuid", "name", "pci.bus_id", "memory.used", "memory.total",
              "utilization.gpu", "temperature.gpu", "mig.mode.current")
APP_FIELDS = ("gpu_uuid", "pid", "process_name", "used_memory")
#: States of a container that holds its GPUs.
HOLDING = ("running", "restarting", "paused")

#: Starts nvidia-smi's two queries, in the background, into the folder ``$t`` (``$s``:
#: nvidia-smi's path when DLT_NVIDIA_SMI names one, see :func:`status_script`): both run at
#: once, as each pays NVML's start-up. :data:`STATUS_END` waits for them and prints.
STATUS_START = (
    '[ -n "$s" ] || s=$(command -v nvidia-smi 2>/dev/null) || { '
    '[ -x /usr/local/nvidia/bin/nvidia-smi ] && s=/usr/local/nvidia/bin/nvidia-smi; }; '
    f'if [ -n "$s" ]; then "$s" --query-gpu={",".join(GPU_FIELDS)} --format=csv,noheader,nounits '
    '>"$t/g" 2>&1 & gp=$!; '
    f'"$s" --query-compute-apps={",".join(APP_FIELDS)} --format=csv,noheader,nounits '
    '>"$t/a" 2>&1 & ap=$!; fi'
)
#: Prints the host's GPUs as nvidia-smi sees them, one fact a line: ``smi-gpu<TAB>csv``,
#: ``smi-app<TAB>csv``, ``smi-cg<TAB>pid<TAB>container id`` (a compute process inside a
#: container, from its cgroup), ``smi-exit<TAB>gpu query's code<TAB>apps query's code``;
#: nothing when there is no nvidia-smi.
STATUS_END = (
    'if [ -n "$s" ]; then wait $gp; g=$?; wait $ap; a=$?; '
    'while IFS= read -r l; do printf "smi-gpu\\t%s\\n" "$l"; done <"$t/g"; '
    'while IFS= read -r l; do printf "smi-app\\t%s\\n" "$l"; p=${l#*, }; p=${p%%,*}; '
    'c=$(grep -o "[0-9a-f]\\{64\\}" "/proc/$p/cgroup" 2>/dev/null | head -n 1); '
    '[ -n "$c" ] && printf "smi-cg\\t%s\\t%s\\n" "$p" "$c"; done <"$t/a"; '
    'printf "smi-exit\\t%s\\t%s\\n" "$g" "$a"; fi'
)
#: Makes ``$t``, a private folder for :data:`STATUS_START`'s answers; ``rm -rf "$t"`` after.
TEMP_DIR = 't=$(mktemp -d 2>/dev/null) || { t=/tmp/dlt-smi-$$; mkdir -p "$t"; }'


def status_script(nvidia_smi: str = "", *, meanwhile: str = "") -> str:
    """The script that prints what :data:`STATUS_END` does, with nvidia-smi at ``nvidia_smi``
    ("": on PATH, else the /usr/local/nvidia layout); ``meanwhile`` runs (and prints) while
    nvidia-smi answers."""
    middle = f"{meanwhile}; " if meanwhile else ""
    return (f"s={shlex.quote(nvidia_smi)}; {TEMP_DIR}; {STATUS_START}; {middle}{STATUS_END}; "
            'rm -rf "$t"')


_LOST_BUS = re.compile(r"GPU ?([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f])")


@dataclass(frozen=True)
class SmiGpu:
    """One GPU as the driver reports it (None: the driver did not say, ``[N/A]``)."""

    index: int
    uuid: str = ""
    name: str = ""
    bus_id: str = ""
    memory_used: int | None = None      # MiB
    memory_total: int | None = None     # MiB
    utilization: int | None = None      # %
    temperature: int | None = None      # degrees C
    mig: bool = False                   # MIG mode on: not handed out whole
    lost: str = ""                      # why the driver cannot reach it ("" when fine)


@dataclass(frozen=True)
class App:
    """A compute process on a GPU (host pid)."""

    gpu_uuid: str
    pid: int
    name: str
    memory: int | None = None           # MiB
    container: str = ""                 # the id of the container it runs in, if any


@dataclass(frozen=True)
class GpuStatus:
    """The driver's account of a host's GPUs; ``known`` is False where nvidia-smi was not
    there or failed (``problem`` says which)."""

    gpus: tuple[SmiGpu, ...] = ()
    apps: tuple[App, ...] = ()
    known: bool = False
    problem: str = ""

    def by_index(self) -> dict[int, SmiGpu]:
        return {g.index: g for g in self.gpus}


@dataclass(frozen=True)
class Claim:
    """A dltasks run that holds GPUs: read from its container's labels."""

    run_id: str
    user: str
    project: str
    started: str
    gpus: tuple[str, ...]               # host indices or UUIDs; ("all",) for every GPU
    container_id: str = ""

    def who(self) -> str:
        since = f", since {_short_time(self.started)}" if self.started else ""
        return f"run {self.run_id} ({self.user or '?'}, {self.project or '?'}{since})"


@dataclass(frozen=True)
class Choice:
    """What a run gets: the selection to run with, and the GPUs it shares (--share)."""

    selection: GpuSelection
    shared: tuple[str, ...] = ()        # one note per GPU taken although held or busy


@dataclass
class Holders:
    """Who holds each GPU index: claims, and the driver's reasons."""

    claims: dict[int, list[Claim]] = field(default_factory=dict)
    busy: dict[int, str] = field(default_factory=dict)     # index -> "2 processes: ..."
    unusable: dict[int, str] = field(default_factory=dict)  # index -> "lost: ..." / "MIG mode"

    def why_not(self, index: int) -> str:
        """Why GPU ``index`` is not free ("" when it is)."""
        parts = [c.who() for c in self.claims.get(index, [])]
        if index in self.unusable:
            parts.append(self.unusable[index])
        if index in self.busy:
            parts.append(self.busy[index])
        return "; ".join(parts)


# -- nvidia-smi's CSV -------------------------------------------------------------------------

def _number(text: str) -> int | None:
    text = text.strip().split(" ")[0]
    try:
        return int(float(text))
    except ValueError:
        return None  # [N/A], [Not Supported], [Unknown Error], [GPU requires reset]


def parse_smi_gpus(lines: Iterable[str]) -> tuple[SmiGpu, ...]:
    """``nvidia-smi --query-gpu=<GPU_FIELDS> --format=csv,noheader,nounits`` as Gpus.

    A GPU that fell off the bus shows up as a message line ("Unable to determine the device
    handle for GPU0000:3B:00.0: GPU is lost...") or as a row of error fields; either way it is
    kept, as lost, so the table shows it and nothing picks it."""
    out: list[SmiGpu] = []
    lost: list[tuple[str, str]] = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(", ")]
        if len(parts) != len(GPU_FIELDS) or not parts[0].isdigit():
            m = _LOST_BUS.search(line)
            if m:
                lost.append((m.group(1), line))
            continue
        index, uuid, name, bus, used, total, util, temp, mig = parts
        broken = next((p for p in (uuid, used, total) if p.startswith("[")
                       and p not in ("[N/A]", "[Not Supported]")), "")
        out.append(SmiGpu(int(index), uuid if uuid.startswith(("GPU-", "MIG-")) else "", name, bus,
                       _number(used), _number(total), _number(util), _number(temp),
                       mig.lower() == "enabled", f"the driver says {broken}" if broken else ""))
    taken = {g.index for g in out}
    free_index = (i for i in range(len(out) + len(lost) + 64) if i not in taken)
    for bus, text in lost:
        out.append(SmiGpu(next(free_index), bus_id=bus, lost=_lost_reason(text)))
    return tuple(sorted(out, key=lambda g: g.index))


def _lost_reason(text: str) -> str:
    tail = text.rsplit(": ", 1)[-1].strip().rstrip(".") if ": " in text else text
    return f"fell off the bus ({tail.split('.')[0].strip()})"


def parse_apps(lines: Iterable[str]) -> tuple[App, ...]:
    """``nvidia-smi --query-compute-apps=<APP_FIELDS> --format=csv,noheader,nounits``."""
    out = []
    for line in lines:
        parts = [p.strip() for p in line.strip().split(", ")]
        if len(parts) < len(APP_FIELDS) or not parts[1].isdigit():
            continue  # "No running processes found" and the like
        out.append(App(parts[0], int(parts[1]), ", ".join(parts[2:-1]), _number(parts[-1])))
    return tuple(out)


def parse_status(text: str) -> GpuStatus:
    """The output of :data:`STATUS_SCRIPT`."""
    gpu_lines, app_lines, codes = [], [], None
    containers: dict[int, str] = {}
    for line in text.splitlines():
        key, _, rest = line.partition("\t")
        if key == "smi-gpu":
            gpu_lines.append(rest)
        elif key == "smi-app":
            app_lines.append(rest)
        elif key == "smi-cg":
            pid, _, cid = rest.partition("\t")
            if pid.isdigit():
                containers[int(pid)] = cid.strip()
        elif key == "smi-exit":
            codes = rest.split("\t")
    if codes is None:
        return GpuStatus(problem="no nvidia-smi")
    gpus = parse_smi_gpus(gpu_lines)
    if codes[0] != "0" and not gpus:
        said = " ".join(x.strip() for x in gpu_lines if x.strip())[:200]
        return GpuStatus(problem=f"nvidia-smi failed (exit {codes[0]}): {said}")
    apps = tuple(replace(a, container=containers.get(a.pid, "")) for a in parse_apps(app_lines))
    return GpuStatus(gpus, apps, True)


# -- claims from container labels -------------------------------------------------------------

def claims_from(rows: Iterable[Mapping[str, Any]], *, labels: Mapping[str, str],
                exclude_run: str = "") -> list[Claim]:
    """The claims among the engine's container list rows (``GET /containers/json?all=1``).

    ``labels`` names the label keys (run, user, project, started, gpus): they are defined
    with the RunSpec, in :mod:`dltasks.engine.spec`."""
    out = []
    for r in rows:
        lab = r.get("Labels") or {}
        run_id = lab.get(labels["run"], "")
        if not run_id or run_id == exclude_run or str(r.get("State", "")) not in HOLDING:
            continue
        held = tuple(x for x in lab.get(labels["gpus"], "").split(",") if x and x != "none")
        # A label that holds a request (free:N) claims nothing: dltasks now labels a container
        # with the GPUs it got, never what it asked, but containers started by older versions
        # (whose label held the request until the start, and always on Slurm nodes) may
        # still run.
        if not held or held[0].startswith("free:"):
            continue
        out.append(Claim(run_id, lab.get(labels["user"], ""), lab.get(labels["project"], ""),
                         lab.get(labels["started"], ""), held, str(r.get("Id", ""))))
    return out


def holders(status: GpuStatus, claims: Sequence[Claim], *, free_mib: int,
            indices: Iterable[int] = ()) -> Holders:
    """Who or what keeps each GPU from being free (``indices``: the GPUs there are, when the
    driver's account is not known)."""
    h = Holders()
    by_uuid = {g.uuid: g.index for g in status.gpus if g.uuid}
    every = sorted({g.index for g in status.gpus} | set(indices))
    for c in claims:
        for x in c.gpus:
            if x == ALL:
                targets = every
            elif x.isdigit():
                targets = [int(x)]
            else:
                targets = [by_uuid[x]] if x in by_uuid else []
            for i in targets:
                h.claims.setdefault(i, []).append(c)
    for g in status.gpus:
        if g.lost:
            h.unusable[g.index] = f"lost: {g.lost}"
        elif g.mig:
            h.unusable[g.index] = "in MIG mode (give its MIG devices by UUID: --gpu MIG-...)"
        apps = [a for a in status.apps if a.gpu_uuid and a.gpu_uuid == g.uuid]
        if apps:
            shown = ", ".join(f"{a.name.rsplit('/', 1)[-1] or '?'} pid {a.pid}"
                              + (f" {a.memory} MiB" if a.memory is not None else "")
                              for a in apps[:3])
            more = f" and {len(apps) - 3} more" if len(apps) > 3 else ""
            h.busy[g.index] = f"busy: {shown}{more}"
        elif g.memory_used is not None and free_mib >= 0 and g.memory_used > free_mib:
            h.busy[g.index] = f"busy: {g.memory_used} MiB in use (over DLT_GPU_FREE_MIB={free_mib})"
    return h


# -- the choice -------------------------------------------------------------------------------

def choose_gpus(sel: GpuSelection, status: GpuStatus, claims: Sequence[Claim], *, free_mib: int,
           where: str, share: bool = False, indices: Iterable[int] = (),
           asked: str = "") -> Choice:
    """The GPUs a run gets for ``sel`` (free:N, ids or all) on host ``where``.

    ``free:N``: the N lowest-numbered free GPUs. Ids and ``all``: refused when any of them is
    held by another dltasks run, busy by the driver's account, lost or in MIG mode; with
    ``share`` taken anyway (but never a lost one), with a note per GPU. ``asked``: the
    selection as the user gave it, for messages (``auto`` that became ``all``).
    Raises :class:`GpusTaken` when waiting could help, :class:`DltError` when not."""
    known = sorted({g.index for g in status.gpus} | set(indices))
    h = holders(status, claims, free_mib=free_mib, indices=known)
    if sel.mode == FREE:
        if share:
            raise DltError("--share goes with GPU ids (--gpu 2 --share); --gpu free:N only "
                           "takes free GPUs")
        if not known:
            raise DltError(f"--gpu free:{sel.count}: cannot list the GPUs of {where} "
                           f"({status.problem or 'no driver found'}); name the GPUs with "
                           "--gpu IDS")
        free = [i for i in known if not h.why_not(i)]
        if len(free) < sel.count:
            raise NotEnoughGpus(sel.count, free, known, h, where)
        picked = free[:sel.count]
        return Choice(GpuSelection(IDS, tuple(str(i) for i in picked)))
    wanted = _wanted(sel, status, known, where)
    shared, refused, waitable = [], [], False
    for key, index in wanted:
        why = h.why_not(index) if index is not None else ""
        if not why:
            continue
        if share and index is not None and index not in h.unusable:
            shared.append(f"GPU {key}: {why}")
        else:
            refused.append(f"GPU {key} is {_held_phrase(why)}")
            waitable = waitable or (index is not None and index not in h.unusable)
    if refused:
        name = asked or sel.describe()
        flag = "DLT_GPUS=auto (all GPUs)" if name == "auto" else f"--gpu {name}"
        fix = "pick free ones with --gpu free:N (see `inv gpus`)"
        if waitable:
            fix += ", wait with --wait, or add --share to use it anyway"
        text = "; ".join(refused)
        if not waitable:
            raise DltError(f"{flag} on {where}: {text}: {fix}")
        raise GpusTaken(f"{flag} on {where}: {text}: {fix}", short=text)
    return Choice(sel, tuple(shared))


def _wanted(sel: GpuSelection, status: GpuStatus, known: list[int],
            where: str) -> list[tuple[str, int | None]]:
    """(as the user named it, host index or None when unknown) for each GPU of ``sel``."""
    if sel.mode == ALL:
        return [(str(i), i) for i in known]
    if sel.mode != IDS:
        return []
    by_uuid = {g.uuid: g.index for g in status.gpus if g.uuid}
    out: list[tuple[str, int | None]] = []
    for x in sel.ids:
        if x.isdigit():
            if status.known and int(x) not in known:
                have = f"0-{known[-1]}" if known else "none"
                raise DltError(f"--gpu {x}: {where} has no GPU {x} (its GPUs: {have}); see "
                               "`inv gpus`")
            out.append((x, int(x)))
        else:
            out.append((x, by_uuid.get(x)))
    return out


def _held_phrase(why: str) -> str:
    return why if why.startswith(("busy", "lost", "in MIG")) else f"held by {why}"


class GpusTaken(DltError):
    """The GPUs asked for are held or busy now: waiting (--wait) may help. ``short``: what
    holds them, for a status line."""

    def __init__(self, message: str, *, short: str) -> None:
        super().__init__(message)
        self.short = short


class NotEnoughGpus(GpusTaken):
    """Fewer free GPUs than asked for; the message names who holds the others."""

    def __init__(self, count: int, free: Sequence[int], known: Sequence[int], h: Holders,
                 where: str) -> None:
        self.count, self.free = count, list(free)
        self.taken = {i: h.why_not(i) for i in known if h.why_not(i)}
        n = len(self.free) + len(self.taken)
        free_ones = f" (GPU {','.join(map(str, self.free))})" if self.free else ""
        held = "; ".join(f"GPU {i} {_held_phrase(w)}" for i, w in self.taken.items())
        super().__init__(f"--gpu free:{count}: {len(self.free)} of {n} GPU(s) on {where} free"
                         f"{free_ones}; {held}; wait for them with --wait [SECONDS], or see "
                         "`inv gpus`", short=f"{len(self.free)} of {n} free; {held}")


def _short_time(iso: str) -> str:
    """2026-12-01T23:01:07+00:00 -> 2026-12-01 23:01 (UTC)."""
    date, _, rest = iso.partition("T")
    return f"{date} {rest[:5]}" if rest else iso
