"""How GPUs get into a run's container: the NVIDIA runtime, a CDI spec, or the driver itself.

``DLT_GPU_MODE``:

- ``runtime``: a device request to the engine's NVIDIA runtime (the toolkit installed);
- ``cdi``: a CDI spec from ``DLT_CDI_SPEC_DIRS``; an engine that knows CDI gets CDI device
  requests, an older one gets the spec's edits applied by dltasks;
- ``direct``: no toolkit, no spec: the driver found on the target host (:mod:`.driver`);
- ``auto``: runtime if the engine has one, else CDI if a spec exists, else direct if the host
  has a driver, else the runtime path's own clear error.

:func:`decide` is the pure choice; :func:`facts_later` gathers its facts from a Target (one
engine call, one shell round trip that also asks nvidia-smi for :mod:`dltasks.gpu.claims`),
:func:`access_for` does both; :func:`apply_access` puts the result into a RunSpec. Every mode
has the same semantics: only the selected GPUs are visible, numbered from 0 inside.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dltasks.engine.spec import Mount, RunSpec
from dltasks.errors import DltError
from dltasks.gpu import cdi
from dltasks.gpu.claims import GpuStatus, parse_status, status_script
from dltasks.gpu.driver import (
    DISCOVER_SCRIPT,
    Driver,
    Edits,
    edits_for,
    no_driver_message,
    parse_driver,
)
from dltasks.gpu.selection import AUTO, NONE, GpuSelection
from dltasks.hosts.background import in_background
from dltasks.hosts.shell import quote

if TYPE_CHECKING:
    from dltasks.engine.client import EngineAddr
    from dltasks.hosts.shell import Pending
    from dltasks.hosts.target import Target
    from dltasks.settings import Settings

RUNTIME, CDI, DIRECT = "runtime", "cdi", "direct"
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class GpuAccess:
    """The GPUs a run gets and how."""

    selection: GpuSelection
    mode: str = NONE             # runtime | cdi | direct | none
    why: str = ""
    edits: Edits = Edits()
    cdi_names: tuple[str, ...] = ()   # CDI device names, when the engine takes CDI requests
    warning: str = ""


@dataclass(frozen=True)
class HostGpus:
    """What the target host says about its GPUs (one round trip)."""

    driver: Driver
    spec: cdi.Spec | None
    hook: bool = False   # NVIDIA's runtime hook is installed (engines using it list no runtime)
    #: The driver's account of its GPUs (nvidia-smi), when asked for.
    status: GpuStatus = GpuStatus()


@dataclass(frozen=True)
class GpuFacts:
    """Everything :func:`decide` needs, from the engine and the host."""

    has_runtime: bool = False
    engine_cdi: bool = False
    host: HostGpus | None = None


def _script(settings: Settings, status: bool) -> list[str]:
    dirs = settings.cdi_spec_dirs or cdi.DEFAULT_DIRS
    script = ('command -v nvidia-container-runtime-hook >/dev/null 2>&1 && echo hook; '
              f'{DISCOVER_SCRIPT}; set -- {" ".join(quote([d]) for d in dirs)}; '
              f'{cdi.READ_SCRIPT}')
    if status:  # nvidia-smi (NVML's start-up: the slow part) runs while the rest looks around
        script = status_script(settings.nvidia_smi, meanwhile=script)
    return ["sh", "-c", script, "_", settings.driver_root.rstrip("/")]


def _parse(text: str, settings: Settings) -> HostGpus:
    lines = text.splitlines()
    facts = "\n".join(ln for ln in lines if not ln.startswith(("cdi\t", "smi-")))
    return HostGpus(parse_driver(facts, settings.driver_root.rstrip("/")),
                    cdi.load(cdi.files_of(text)), hook="hook" in lines,
                    status=parse_status(text))


def gather_host_gpus(target: Target, settings: Settings, *, status: bool = False) -> HostGpus:
    """Discover the driver and read the CDI specs on the target host (``status``: and ask
    nvidia-smi about its GPUs), in one round trip."""
    return gather_later(target, settings, status=status)()


def gather_later(target: Target, settings: Settings, *,
                 status: bool = False) -> Callable[[], HostGpus]:
    """:func:`gather_host_gpus`, started now: on this machine a child process, on a remote host
    an exec channel in a thread. Call the result for the answer."""
    output = target.start(_script(settings, status))
    return lambda: _parse(output().stdout, settings)


def facts_later(target: Target, sel: GpuSelection, *,
                tolerant: bool = False) -> Callable[[], GpuFacts]:
    """The facts for a run asking for ``sel``, started now: the host's round trip, and the
    engine's /info on a connection of its own (an engine 20.10 runs programs to answer it);
    both go on while the run is planned.
    ``tolerant``: an engine that does not answer counts as one without a runtime (for
    --dry-run). Call the result for the facts."""
    s = target.settings
    if sel.mode == NONE:
        return GpuFacts
    host = gather_later(target, s, status=True)
    info = in_background(_engine_info_of, target) if _asks_engine(s) else None

    def finish() -> GpuFacts:
        has_runtime, engine_cdi = False, False
        if info is not None:
            try:
                answer = info.result()
                engine_cdi = bool(answer.get("CDISpecDirs"))
                has_runtime = s.gpu_mode == AUTO and "nvidia" in (answer.get("Runtimes") or {})
            except DltError:
                if not tolerant:
                    host()  # reap it
                    raise
        found = host()
        if found.hook and s.gpu_mode == AUTO:
            has_runtime = True  # the hook driver: the engine grants GPU requests without one
        return GpuFacts(has_runtime, engine_cdi, found)

    return finish


def _answer(pending: Pending, settings: Settings) -> Callable[[], HostGpus]:
    return lambda: _parse(pending.result().stdout, settings)


def _asks_engine(settings: Settings) -> bool:
    return settings.gpu_mode in (AUTO, CDI)


def _engine_info_of(target: Target) -> dict[str, Any]:
    return _engine_info(target.engine_addr)  # in its thread: a remote forward may take a while


def _engine_info(addr: EngineAddr) -> dict[str, Any]:
    from dltasks.engine.client import open_engine

    engine = open_engine(addr)
    try:
        return engine.info()
    finally:
        engine.close()


def decide(mode: str, sel: GpuSelection, *, has_runtime: bool, engine_cdi: bool,
           host: HostGpus | None, where: str) -> GpuAccess:
    """The access for ``sel`` under ``mode``, from the facts (``host``: None when not asked)."""
    if sel.mode == NONE:
        return GpuAccess(sel, NONE, "no GPUs asked for")
    if mode == RUNTIME or (mode == AUTO and has_runtime):
        why = "DLT_GPU_MODE=runtime" if mode == RUNTIME else "the engine has the NVIDIA runtime"
        return GpuAccess(sel.resolve(True), RUNTIME, why)
    assert host is not None
    spec, driver = host.spec, host.driver
    if mode == CDI or (mode == AUTO and spec is not None):
        if spec is None:
            raise DltError(f"DLT_GPU_MODE=cdi but {where} has no CDI spec of kind {cdi.KIND} "
                           "(in DLT_CDI_SPEC_DIRS, default /etc/cdi, /var/run/cdi): write one "
                           "with `inv gpu-spec` (or `nvidia-ctk cdi generate`)")
        chosen = sel.resolve(True)
        names, edits = spec.edits_for(chosen, where)
        why = ("DLT_GPU_MODE=cdi" if mode == CDI else "no NVIDIA runtime; a CDI spec exists") + \
            f" ({', '.join(spec.files)})"
        if engine_cdi:
            return GpuAccess(chosen, CDI, why + "; the engine applies it", cdi_names=tuple(names))
        return GpuAccess(chosen, CDI, why + "; applied by dltasks", edits,
                         warning=cdi.hook_warning(edits, spec.files))
    if mode == DIRECT or (mode == AUTO and driver.found):
        if not driver.found:
            raise DltError(no_driver_message(where, driver))
        chosen = sel.resolve(True)
        why = "DLT_GPU_MODE=direct" if mode == DIRECT else \
            "no NVIDIA runtime and no CDI spec; the host's driver is there"
        version = f" {driver.version}" if driver.version else ""
        return GpuAccess(chosen, DIRECT, f"{why} (driver{version})",
                         edits_for(driver, chosen, where))
    if sel.mode == AUTO:
        return GpuAccess(GpuSelection(NONE), NONE, "no NVIDIA runtime, CDI spec or driver")
    # asked for GPUs with nothing to give them: the runtime path's error says what to install
    return GpuAccess(sel, RUNTIME, "no NVIDIA runtime, CDI spec or driver found")


def decide_with(facts: GpuFacts, mode: str, sel: GpuSelection, where: str) -> GpuAccess:
    """:func:`decide` from gathered facts."""
    return decide(mode, sel, has_runtime=facts.has_runtime, engine_cdi=facts.engine_cdi,
                  host=facts.host, where=where)


def access_for(target: Target, sel: GpuSelection, *, tolerant: bool = False) -> GpuAccess:
    """Decide for a run on ``target`` (``tolerant``: an engine that does not answer counts as
    one without a runtime, for --dry-run)."""
    facts = facts_later(target, sel, tolerant=tolerant)()
    return decide_with(facts, target.settings.gpu_mode, sel, target.name)


def apply_access(spec: RunSpec, access: GpuAccess, image_env: Mapping[str, str]) -> RunSpec:
    """``spec`` with its GPUs given the way ``access`` says."""
    if access.mode == NONE:
        return replace(spec, gpus=access.selection, gpu_mode=NONE)
    env = dict(spec.env)
    env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # inside, GPU 0 is the lowest host index
    if access.mode not in (DIRECT, CDI):
        return replace(spec, gpus=access.selection, gpu_mode=RUNTIME, env=env)
    e = access.edits
    env.update(dict(e.env))
    if e.library_path:
        theirs = env.get("LD_LIBRARY_PATH") or image_env.get("LD_LIBRARY_PATH", "")
        env["LD_LIBRARY_PATH"] = ":".join([*e.library_path, *([theirs] if theirs else [])])
    path = (env.get("PATH") or image_env.get("PATH") or _DEFAULT_PATH).split(":")
    extra = [d for d in e.bin_path if d not in path]
    if extra:  # the driver's programs (nvidia-smi) where the image does not look
        env["PATH"] = ":".join(path + extra)
    have = {m.target for m in spec.mounts}
    mounts = spec.mounts + tuple(Mount(m.host, m.path, True) for m in e.mounts
                                 if m.path not in have)
    return replace(spec, gpus=access.selection, gpu_mode=access.mode, devices=e.nodes,
                   cdi_devices=tuple(f"{cdi.KIND}={n}" for n in access.cdi_names),
                   mounts=mounts, env=env)


def image_env(info: Mapping[str, object]) -> dict[str, str]:
    """An image's environment (its inspect record's Config.Env)."""
    config = info.get("Config") or {}
    items = config.get("Env") if isinstance(config, dict) else None
    return dict(str(x).split("=", 1) for x in items or [] if "=" in str(x))
