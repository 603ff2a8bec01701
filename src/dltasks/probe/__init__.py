"""The GPU probe, seen from the host: where its script is, and what its output means.

The probe itself is ``probe_script.py``: a standalone, stdlib-only program that `test-gpu`
mounts read-only into the container (it must work in images without dltasks). Its parsers and
its ``diagnose_probe`` are pure, so they live there and are re-exported here for the host side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dltasks.errors import DltError
from dltasks.probe import script as probe_script
from dltasks.probe.script import (
    MARK,
    SMI_FIELDS,
    ProbedGpu,
    ProbeFinding,
    diagnose_probe,
    parse_probe_smi,
    parse_smi_header,
)

__all__ = ["MARK", "SMI_FIELDS", "CONTAINER_PATH", "ProbeFinding", "ProbedGpu", "Matmul",
           "ProbeReport",
           "diagnose_probe", "parse_probe_smi", "parse_smi_header", "parse_probe_output",
           "script_path", "script_text", "container_command"]

#: Where `test-gpu` mounts the probe in the container (read-only).
CONTAINER_PATH = "/opt/dltasks/probe.py"


def script_path() -> Path:
    """The probe script as a file on this machine (mounted as is for local runs)."""
    return Path(probe_script.__file__).resolve()


def script_text() -> str:
    return script_path().read_text(encoding="utf-8")


def container_command(expect: int) -> str:
    """The shell command that runs the mounted probe with whichever python the image has."""
    # A one-liner kept here, not in scripts/: it is the container's command as `docker run`
    # printouts and the run record show it, and its one value is an int.
    probe = f"{CONTAINER_PATH} --show-nvidia-smi --expect {expect}"
    return (f"for p in python3 python; do command -v $p >/dev/null 2>&1 && exec $p {probe}; "
            "done; echo 'dlt: the GPU probe needs python3 (or python) in the image' >&2; "
            "exit 127")


@dataclass(frozen=True)
class Matmul:
    framework: str
    device: int
    dtype: str
    n: int = 0
    tflops: float = 0.0
    error: str = ""


@dataclass(frozen=True)
class ProbeReport:
    """What one probe run found (its final ``DLT_PROBE_JSON`` line)."""

    ok: bool
    driver_version: str
    cuda_version: str
    gpus: tuple[ProbedGpu, ...]
    matmuls: tuple[Matmul, ...]
    findings: tuple[ProbeFinding, ...]
    frameworks: dict[str, str] = field(default_factory=dict)  # name -> version
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def errors(self) -> tuple[ProbeFinding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    def summary(self) -> str:
        """One line: the verdict, the GPUs and the slowest matmul."""
        if not self.ok:
            first = self.errors[0].message if self.errors else "the probe reported a failure"
            more = f" (and {len(self.errors) - 1} more problem(s))" if len(self.errors) > 1 else ""
            return first + more
        rates = [m.tflops for m in self.matmuls if not m.error]
        names = sorted({g.name for g in self.gpus})
        speed = f", slowest matmul {min(rates):g} TFLOP/s" if rates else ""
        return (f"{len(self.gpus)} GPU(s) OK ({', '.join(names)}), driver "
                f"{self.driver_version or '?'}, CUDA {self.cuda_version or '?'}{speed}")


def _gpu(d: dict[str, Any]) -> ProbedGpu:
    return ProbedGpu(index=int(d.get("index", 0)), name=str(d.get("name", "")),
               memory_mib=int(d.get("memory_mib") or 0), compute_cap=str(d.get("compute_cap", "")),
               uuid=str(d.get("uuid", "")), driver_version=str(d.get("driver_version", "")))


def parse_probe_output(text: str) -> ProbeReport:
    """Read the last ``DLT_PROBE_JSON`` line of a probe's output (other lines are ignored)."""
    line = next((ln for ln in reversed(text.splitlines()) if ln.startswith(MARK + " ")), None)
    if line is None:
        raise DltError("the GPU probe printed no report (no DLT_PROBE_JSON line): see its "
                       "output above; the image needs python3")
    try:
        data = json.loads(line[len(MARK) + 1:])
    except ValueError as e:
        raise DltError(f"the GPU probe's report is not valid JSON ({e}): rerun `inv test-gpu`"
                       ) from None
    if not isinstance(data, dict):
        raise DltError("the GPU probe's report is not a JSON object: rerun `inv test-gpu`")
    smi, lib = data.get("nvidia_smi") or {}, data.get("libcuda") or {}
    fws = data.get("frameworks") or {}
    devices: list[dict[str, Any]] = smi.get("gpus") or lib.get("devices") or next(
        (f["devices"] for f in fws.values() if f.get("devices")), [])
    return ProbeReport(
        ok=bool(data.get("ok")),
        driver_version=str(data.get("driver_version") or ""),
        cuda_version=str(data.get("cuda_version") or ""),
        gpus=tuple(_gpu(d) for d in devices),
        matmuls=tuple(Matmul(str(m.get("framework", "")), int(m.get("device", 0)),
                             str(m.get("dtype", "")), int(m.get("n") or 0),
                             float(m.get("tflops") or 0.0), str(m.get("error") or ""))
                      for m in data.get("matmul") or []),
        findings=tuple(ProbeFinding(str(f.get("severity", "error")), str(f.get("code", "")),
                               str(f.get("message", ""))) for f in data.get("findings") or []),
        frameworks={k: str(v.get("version", "")) for k, v in fws.items()},
        raw=data,
    )
