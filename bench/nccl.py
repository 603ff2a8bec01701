"""Bench (multi-GPU host): NCCL all-reduce bus bandwidth in the container through `dlt train
--gpu all --nproc gpu` vs the same script under torchrun on the host, alternating, medians.
Target: container / host >= 0.95. Run it in a project whose .env names a GPU image
(DLT_IMAGE); dev/gpu2-e2e.sh does. Exit 0 when measured (PASS or MISS), 2 when it could not.

    python bench/nccl.py --project DIR [--runs 3] [--dlt CMD]
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "nccl_allreduce.py"
BUSBW = re.compile(r"busbw ([\d.]+) GB/s algbw ([\d.]+) GB/s world (\d+)")


def measure(argv: list[str], cwd: Path) -> tuple[float, float, int]:
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    m = BUSBW.search(r.stdout)
    if r.returncode != 0 or not m:
        print(f"{shlex.join(argv)[:200]} failed: {r.stdout[-1500:]}{r.stderr[-1500:]}",
              file=sys.stderr)
        raise SystemExit(2)
    return float(m.group(1)), float(m.group(2)), int(m.group(3))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dlt", default=f"{sys.executable} -m dltasks")
    a = ap.parse_args()
    proj = a.project.resolve()
    shutil.copy(SCRIPT, proj / SCRIPT.name)
    gpus = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
    n = len([ln for ln in gpus.splitlines() if ln.startswith("GPU ")])
    host = ["torchrun", "--standalone", "--nnodes=1", f"--nproc-per-node={n}",
            str(proj / SCRIPT.name)]
    env_cmd = f"python3 {SCRIPT.name}"
    ours = [*shlex.split(a.dlt), "train", "--gpu", "all", "--nproc", "gpu"]
    (proj / ".env").write_text((proj / ".env").read_text() + f"DLT_TRAIN_CMD={env_cmd}\n")
    inside, outside = [], []
    for _ in range(a.runs):
        inside.append(measure(ours, proj))
        outside.append(measure(host, proj))
    ci = statistics.median(x[0] for x in inside)
    ho = statistics.median(x[0] for x in outside)
    world = inside[0][2]
    if world < 2:
        print(f"nccl: world {world}: no bus traffic to compare (algbw in the container "
              f"{statistics.median(x[1] for x in inside):.1f} GB/s, host "
              f"{statistics.median(x[1] for x in outside):.1f} GB/s)")
        return 0
    ratio = ci / ho
    print(f"nccl all-reduce 256 MiB bf16, {world} GPUs: busbw dlt train {ci:.1f} GB/s (runs "
          f"{[x[0] for x in inside]}) vs host {ho:.1f} GB/s (runs {[x[0] for x in outside]}): "
          f"ratio {ratio:.3f} (target >= 0.95) {'PASS' if ratio >= 0.95 else 'MISS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
