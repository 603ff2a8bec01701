"""Bench (GPU host): GPUs in containers through dltasks against the same work without it.

Probe: bf16 matmul TFLOP/s of `dlt test-gpu` (the probe in a container, GPUs given by the mode
dltasks picks: runtime, CDI or the driver directly) vs `python3 src/dltasks/probe/script.py` on
the host. Alternating runs, medians. Target: container / host >= 0.98. (The time from
`dlt train` to a training script's first output line, against `docker run`, is
bench/first_output.py.)

Run it in a project whose .env names a GPU image (DLT_IMAGE); dev/gpu-e2e.sh does.
Exit status: 0 when measured (PASS or MISS), 2 when it could not run.

`--dlt CMD` times that dlt (e.g. the console script of a venv of its own, as `pipx install`
makes it) instead of `python -m dltasks` with this interpreter.

    python bench/gpu.py --project DIR [--runs 3] [--dlt CMD]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

PROBE = Path(__file__).resolve().parent.parent / "src" / "dltasks" / "probe" / "script.py"
TFLOPS = re.compile(r"matmul torch GPU \d+ bfloat16 \d+x\d+: ([\d.]+) TFLOP/s")


DLT = [sys.executable, "-m", "dltasks"]


def dlt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DLT, *args], cwd=cwd, text=True, capture_output=True)


def tflops(text: str) -> float:
    found = TFLOPS.findall(text)
    if not found:
        print(text[-2000:], file=sys.stderr)
        raise SystemExit(2)
    return min(float(x) for x in found)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dlt", default="", help="the dlt command to time")
    a = ap.parse_args()
    proj = a.project.resolve()
    if a.dlt:
        DLT[:] = shlex.split(a.dlt)

    inside, host = [], []
    for _ in range(a.runs):
        r = dlt("test-gpu", cwd=proj)
        if r.returncode != 0:
            print(r.stdout[-2000:], r.stderr[-2000:], file=sys.stderr)
            return 2
        inside.append(tflops(r.stdout))
        h = subprocess.run([sys.executable, str(PROBE)], capture_output=True, text=True)
        host.append(tflops(h.stdout))
    ci, hi = statistics.median(inside), statistics.median(host)
    ratio = ci / hi
    print(f"probe: dlt test-gpu {ci:.1f} TFLOP/s (runs {inside}) vs host {hi:.1f} TFLOP/s "
          f"(runs {host}): ratio {ratio:.3f} (target >= 0.98) "
          f"{'PASS' if ratio >= 0.98 else 'MISS'}", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
