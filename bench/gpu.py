"""Bench (GPU host): GPUs in containers through dltasks against the same work without it.

1. Probe: bf16 matmul TFLOP/s of `dlt test-gpu` (the probe in a container, GPUs given by the
   mode dltasks picks: runtime, CDI or the driver directly) vs `python3 probe_script.py` on the
   host. Alternating runs, medians. Target: container / host >= 0.98.
2. Start: `dlt train --gpu 0` with a trivial command (`true`) vs `docker run` of the same
   container (the line `dlt train --dry-run` prints: same devices, mounts, user, labels).
   Target: dlt / docker <= 1.5. dlt as it runs by default, through its warm server (the
   warm-ups start it); the cold start (DLT_WARM=0) is printed too.

Run it in a project whose .env names a GPU image (DLT_IMAGE); dev/gpu-e2e.sh does.
Exit status: 0 when measured (PASS or MISS), 2 when it could not run.

`--dlt CMD` times that dlt (e.g. the console script of a venv of its own, as `pipx install`
makes it) instead of `python -m dltasks` with this interpreter; `--also-dlt CMD` times a
second one in the same runs, for comparison (ratio printed, not judged). Each one's
interpreter floor (`-c pass`) is printed: a Python whose site runs heavy .pth hooks pays them
on every command. `--profile` prints where one `dlt train --gpu 0` spends its time (cProfile).

    python bench/gpu.py --project DIR [--runs 3 (0: no probe)] [--start-runs 7] [--dlt CMD]
                        [--also-dlt CMD] [--profile]
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


DLT = [sys.executable, "-m", "dltasks"]


def dlt(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DLT, *args], cwd=cwd, text=True, capture_output=True)


def interpreter(cmd: list[str]) -> str:
    """The Python that runs ``cmd`` (a console script's shebang, or cmd[0])."""
    if cmd[0].endswith(("python", "python3")) or "python3." in cmd[0]:
        return cmd[0]
    first = Path(cmd[0]).read_text(errors="replace").splitlines()[0]
    return first[2:].strip().split()[0] if first.startswith("#!") else sys.executable


def tflops(text: str) -> float:
    found = TFLOPS.findall(text)
    if not found:
        print(text[-2000:], file=sys.stderr)
        raise SystemExit(2)
    return min(float(x) for x in found)


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env)
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
    ap.add_argument("--dlt", default="", help="the dlt command to time")
    ap.add_argument("--also-dlt", default="", help="a second dlt command, for comparison")
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    proj = a.project.resolve()
    if a.dlt:
        DLT[:] = shlex.split(a.dlt)
    also = shlex.split(a.also_dlt) if a.also_dlt else []

    inside, host = [], []
    for _ in range(a.runs):  # --runs 0: the start only
        r = dlt("test-gpu", cwd=proj)
        if r.returncode != 0:
            print(r.stdout[-2000:], r.stderr[-2000:], file=sys.stderr)
            return 2
        inside.append(tflops(r.stdout))
        h = subprocess.run([sys.executable, str(PROBE)], capture_output=True, text=True)
        host.append(tflops(h.stdout))
    if inside:
        ci, hi = statistics.median(inside), statistics.median(host)
        ratio = ci / hi
        print(f"probe: dlt test-gpu {ci:.1f} TFLOP/s (runs {inside}) vs host {hi:.1f} TFLOP/s "
              f"(runs {host}): ratio {ratio:.3f} (target >= 0.98) "
              f"{'PASS' if ratio >= 0.98 else 'MISS'}", flush=True)

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
        ours, theirs, no_gpu, bare, version, other, other_bare = [], [], [], [], [], [], []
        cold: list[float] = []
        cold_env = {**os.environ, "DLT_WARM": "0"}
        argv = [*DLT, "train", "--gpu", "0"]
        for _ in range(3):  # warm-up: byte code, page cache; the first starts the warm server
            timed(argv, proj)
            time.sleep(0.5)
        if also:
            timed([*also, "train", "--gpu", "0"], proj)
        py, other_py = interpreter(DLT), interpreter(also) if also else ""
        for _ in range(a.start_runs):
            ours.append(timed(argv, proj))
            theirs.append(timed(docker, proj))
            cold.append(timed(argv, proj, cold_env))
            no_gpu.append(timed(argv[:-1] + ["none"], proj))
            bare.append(timed([py, "-c", "pass"], proj))
            version.append(timed([*DLT, "--version"], proj))
            if also:
                other.append(timed([*also, "train", "--gpu", "0"], proj))
                other_bare.append(timed([other_py, "-c", "pass"], proj))
        if a.profile:
            prof = dlt_profile(proj)
    finally:
        env_file.write_text(saved)
    med = statistics.median
    o, t = med(ours), med(theirs)
    print(f"  dlt: {shlex.join(DLT)}")
    print(f"  where the time goes (medians): {py} -c pass {med(bare) * 1000:.0f} ms; "
          f"dlt --version {med(version) * 1000:.0f} ms; dlt train --gpu none "
          f"{med(no_gpu) * 1000:.0f} ms")
    print(f"start ({mode}): dlt train --gpu 0 {o * 1000:.0f} ms vs docker run {t * 1000:.0f} ms "
          f"(+{(o - t) * 1000:.0f} ms): ratio {o / t:.2f} (target <= 1.5) "
          f"{'PASS' if o / t <= 1.5 else 'MISS'}")
    print(f"  cold (DLT_WARM=0: no warm server, everything imported by the command): "
          f"{med(cold) * 1000:.0f} ms, ratio {med(cold) / t:.2f}")
    if also:
        print(f"  for comparison, {shlex.join(also)}: train --gpu 0 {med(other) * 1000:.0f} ms "
              f"(ratio {med(other) / t:.2f}); its interpreter: {other_py} -c pass "
              f"{med(other_bare) * 1000:.0f} ms")
    print(f"  docker run line: {line[:300]}{'...' if len(line) > 300 else ''}")
    if a.profile:
        print(prof)
    return 0


def dlt_profile(proj: Path) -> str:
    """The top of a cProfile of one `dlt train --gpu 0` (cumulative time)."""
    out = proj / ".dlt-bench.prof"
    py = interpreter(DLT)
    subprocess.run([py, "-m", "cProfile", "-o", str(out), "-m", "dltasks", "train", "--gpu",
                    "0"], cwd=proj, capture_output=True)
    show = ("import pstats, sys; p = pstats.Stats(sys.argv[1]); "
            "p.sort_stats('cumulative').print_stats(35)")
    r = subprocess.run([py, "-c", show, str(out)], capture_output=True, text=True)
    out.unlink(missing_ok=True)
    return "profile of one `dlt train --gpu 0`:\n" + "\n".join(
        ln for ln in r.stdout.splitlines() if ln.strip())[:6000]


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
