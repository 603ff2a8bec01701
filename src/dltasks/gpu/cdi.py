"""CDI (Container Device Interface) specs: read them, pick devices from them, write one.

A CDI spec (what ``nvidia-ctk cdi generate`` writes, and Podman and Docker 25+ consume) names
devices of a kind (``nvidia.com/gpu=0``) and the container edits each needs: device nodes,
mounts, environment, hooks. Engines that know CDI get CDI device requests; for older ones
(Docker 20.10) dltasks applies the edits itself (:mod:`dltasks.gpu.modes`). Of a spec's hooks,
``update-ldcache`` is done by putting its folders on ``LD_LIBRARY_PATH``; any other hook is
named in a one-line warning, never dropped silently.
"""

from __future__ import annotations

import base64
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dltasks.errors import DltError
from dltasks.gpu.driver import DeviceNode, Driver, Edits, FileMount, no_driver_message
from dltasks.gpu.selection import ALL, IDS, GpuSelection
from dltasks.scripts import script

KIND = "nvidia.com/gpu"
DEFAULT_DIRS = ("/etc/cdi", "/var/run/cdi")
#: Spec versions whose fields we read (the CDI project's released ones).
VERSIONS = ("0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0")
WRITE_VERSION = "0.5.0"


@dataclass(frozen=True)
class Spec:
    """The devices of one kind, from one or more spec files (later files win a name)."""

    kind: str
    devices: dict[str, Edits] = field(default_factory=dict)
    common: Edits = Edits()
    files: tuple[str, ...] = ()

    def edits_for(self, sel: GpuSelection, host: str) -> tuple[list[str], Edits]:
        """(the CDI device names, their edits and the common ones) for ``sel``."""
        names = self.names_for(sel, host)
        out = self.common
        for n in names:
            out = out + self.devices[n]
        return names, out

    def names_for(self, sel: GpuSelection, host: str) -> list[str]:
        if sel.mode == ALL:
            if "all" in self.devices:
                return ["all"]
            return sorted((n for n in self.devices if n.isdigit()), key=int) or \
                sorted(self.devices)
        if sel.mode != IDS:
            return []
        missing = [g for g in sel.ids if g not in self.devices]
        if missing:
            have = ", ".join(sorted(self.devices, key=_order)) or "none"
            raise DltError(f"the CDI spec on {host} ({', '.join(self.files)}) has no device "
                           f"{KIND}={missing[0]} (it has: {have}): choose one of those, or "
                           "regenerate the spec (`inv gpu-spec`)")
        return list(sel.ids)


def _order(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)


#: Prints ``cdi<TAB>path<TAB>base64`` for each spec file in the folders given as arguments.
READ_SCRIPT = script("cdi_read")


def files_of(output: str) -> list[tuple[str, str]]:
    """:data:`READ_SCRIPT`'s lines as (path, text)."""
    out = []
    for line in output.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0] == "cdi":
            try:
                out.append((parts[1], base64.b64decode(parts[2]).decode("utf-8")))
            except ValueError:
                raise DltError(f"CDI spec {parts[1]} is not UTF-8 text: fix or remove it") \
                    from None
    return out


def load(files: Sequence[tuple[str, str]], kind: str = KIND) -> Spec | None:
    """The devices of ``kind`` in these spec files (in priority order, lowest first); None
    when no file is of that kind. A broken file is a one-line error naming it."""
    devices: dict[str, Edits] = {}
    common = Edits()
    used: list[str] = []
    for path, text in files:
        data = _parse(path, text)
        if data.get("kind") != kind:
            continue
        used.append(path)
        common = common + _edits(path, data.get("containerEdits") or {})
        for i, dev in enumerate(data.get("devices") or []):
            if not isinstance(dev, dict) or not dev.get("name"):
                raise DltError(f"CDI spec {path}: device {i + 1} has no name: regenerate it")
            devices[str(dev["name"])] = _edits(path, dev.get("containerEdits") or {})
    if not used:
        return None
    return Spec(kind, devices, common, tuple(used))


def _parse(path: str, text: str) -> dict[str, Any]:
    import yaml  # JSON is YAML too

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise DltError(f"CDI spec {path} is not valid YAML{where}: fix it or regenerate it "
                       "(`inv gpu-spec`)") from None
    if not isinstance(data, dict):
        raise DltError(f"CDI spec {path} is not a mapping: fix it or regenerate it")
    version = str(data.get("cdiVersion", ""))
    if version not in VERSIONS:
        raise DltError(f"CDI spec {path} has cdiVersion {version or '(none)'!r}, which dltasks "
                       f"does not know ({', '.join(VERSIONS)}): regenerate it with a current "
                       "nvidia-ctk or `inv gpu-spec`")
    return data


def _edits(path: str, ce: dict[str, Any]) -> Edits:
    try:
        nodes = tuple(DeviceNode(str(n.get("hostPath") or n["path"]), str(n["path"]))
                      for n in ce.get("deviceNodes") or [])
        mounts = tuple(FileMount(str(m["hostPath"]), str(m["containerPath"]))
                       for m in ce.get("mounts") or [])
        env = tuple(tuple(str(e).split("=", 1)) for e in ce.get("env") or [] if "=" in str(e))
        folders: list[str] = []
        hooks: list[str] = []
        for h in ce.get("hooks") or []:
            args = [str(a) for a in h.get("args") or []]
            if "update-ldcache" in args:
                folders += [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--folder"]
            else:
                hooks.append(_hook_name(h, args))
    except (KeyError, TypeError, AttributeError) as e:
        raise DltError(f"CDI spec {path}: a container edit lacks {e}: regenerate it") from None
    return Edits(nodes, mounts, env, tuple(folders), tuple(hooks))  # type: ignore[arg-type]


def _hook_name(hook: dict[str, Any], args: list[str]) -> str:
    words = [a for a in args[1:] if not a.startswith("-")][:1]  # the hook's subcommand
    return " ".join([posixpath.basename(str(hook.get("path", "hook"))), *words])


def hook_warning(edits: Edits, files: Iterable[str]) -> str:
    """The one-line warning for hooks we did not run, "" when none."""
    if not edits.hooks:
        return ""
    return (f"dlt: warning: the CDI spec ({', '.join(files)}) asks for hooks dltasks does not "
            f"run on this engine: {', '.join(edits.hooks)}; an engine with CDI support "
            "(Docker 25+, Podman) would run them")


def spec_for(driver: Driver, host: str) -> dict[str, Any]:
    """A CDI spec (as data) for the driver found on ``host``: one device per GPU and "all"."""

    def edits(e: Edits) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if e.nodes:
            out["deviceNodes"] = [{"path": n.path, **({"hostPath": n.host}
                                                       if n.host != n.path else {})}
                                  for n in e.nodes]
        if e.mounts:
            out["mounts"] = [{"hostPath": m.host, "containerPath": m.path,
                              "options": ["ro", "nosuid", "nodev", "bind"]} for m in e.mounts]
        if e.library_path:
            out["env"] = ["LD_LIBRARY_PATH=" + ":".join(e.library_path)]
        return out

    if not driver.found:
        raise DltError(no_driver_message(host, driver, hint=""))
    devices = [{"name": str(i), "containerEdits": edits(Edits(nodes=(driver.gpus[i],)))}
               for i in sorted(driver.gpus)]
    devices.append({"name": "all", "containerEdits": edits(Edits(nodes=tuple(
        driver.gpus[i] for i in sorted(driver.gpus))))})
    return {"cdiVersion": WRITE_VERSION, "kind": KIND, "devices": devices,
            "containerEdits": edits(driver.common())}


def dump(spec: dict[str, Any], driver: Driver, host: str) -> str:
    import yaml

    head = (f"# CDI spec for the NVIDIA driver {driver.version or '(version unknown)'} on "
            f"{host}, written by dltasks (`inv gpu-spec`).\n# Engines with CDI support use "
            "it as --device nvidia.com/gpu=0 (or =all).\n")
    return head + yaml.safe_dump(spec, sort_keys=False)
