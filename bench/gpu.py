"""Bench (GPU host): GPUs in containers through dltasks against the same work without it.

1. Probe: bf16 matmul TFLOP/s of `dlt test-gpu` (the probe in a container, GPUs given by the
   mode dltasks picks: runtime, CDI or the driver directly) vs `python3 probe_script.py` on the
   host. Alternating runs, medians. Target: container / host >= 0.98.
2. Start: `dlt train --gpu 0` with a trivial command (`true`) vs `docker run` of the same
   container (the line `dlt train --dry-run` prints: same devices, mounts, user, labels).
   Target: dlt / docker <= 1.5.

Run it in a project whose .env names a GPU image (DLT_IMAGE); dev/gpu-e2e.sh does.
Exit status: 0 when measured (PASS or MISS), 2 when it could not run.

    python bench/gpu.py --project DIR [--runs 3] [--start-runs 7]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROBE = Path(__file__).resolve().parent.parent / "src" / "dltasks" / "probe_script.py"
TFLOPS = re.compile(r"matmul torch GPU \d+ bfloat16 \d+x\d+: ([\d.]+) TFLOP/s")


def dlt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dltasks", *args], cwd=cwd, text=True,
                          capture_output=True)


def tflops(text: str) -> float:
    found = TFLOPS.findall(text)
    if not found:
        print(text[-2000:], file=sys.stderr)
        raise SystemExit(2)
    return min(float(x) for x in found)


def timed(argv: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        print(f"{shlex.join(argv)[:200]} failed: {r.stderr[-1000:]}", file=sys.stderr)
        raise SystemExit(2)
    return took


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--start-runs", type=int, default=7)
    a = ap.parse_args()
    proj = a.project.resolve()

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
          f"{'PASS' if ratio >= 0.98 else 'MISS'}")

    env_file = proj / ".env"
    saved = env_file.read_text()
    env_file.write_text(saved + "DLT_TRAIN_CMD=true\n")
    try:
        dry = dlt("train", "--gpu", "0", "--dry-run", cwd=proj)
        if dry.returncode != 0:
            print(dry.stderr, file=sys.stderr)
            return 2
        line = dry.stdout.splitlines()[0]
        docker = shlex.split(line)
        mode = "direct" if "--device" in docker else "runtime"
        ours, theirs, no_gpu, bare, version = [], [], [], [], []
        argv = [sys.executable, "-m", "dltasks", "train", "--gpu", "0"]
        timed(argv, proj)  # warm-up: byte code, page cache
        for _ in range(a.start_runs):
            ours.append(timed(argv, proj))
            theirs.append(timed(docker, proj))
            no_gpu.append(timed(argv[:-1] + ["none"], proj))
            bare.append(timed([sys.executable, "-c", "pass"], proj))
            version.append(timed([sys.executable, "-m", "dltasks", "--version"], proj))
    finally:
        env_file.write_text(saved)
    o, t = statistics.median(ours), statistics.median(theirs)
    print(f"  where the time goes (medians): python3 -c pass {statistics.median(bare) * 1000:.0f}"
          f" ms; dlt --version {statistics.median(version) * 1000:.0f} ms; dlt train --gpu "
          f"none {statistics.median(no_gpu) * 1000:.0f} ms")
    print(f"start ({mode}): dlt train --gpu 0 {o * 1000:.0f} ms vs docker run {t * 1000:.0f} ms "
          f"(+{(o - t) * 1000:.0f} ms): ratio {o / t:.2f} (target <= 1.5) "
          f"{'PASS' if o / t <= 1.5 else 'MISS'}")
    print(f"  docker run line: {line[:300]}{'...' if len(line) > 300 else ''}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
