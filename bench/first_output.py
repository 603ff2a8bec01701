"""Bench: from the command to a real training script's first output line, dlt vs docker run.

A temporary project (a git repo with one commit and a `.env`, like a real one) holds a small
torch script: it imports torch, builds a model and its optimizer, prints its first line, then
trains for ``--steps`` steps and prints its steps/second. Two sides, the same container:

- **dlt**: `dlt train` in the project (`--gpu 0` with ``--gpu``, else `DLT_GPUS=none`);
- **docker**: the `docker run` line dlt recorded for a run of its own (the run record's
  `docker_run`: same image, command, mounts, user, env, devices, `--init`, `--ipc=host`),
  without `--name`, run with the docker CLI. The configs dlt rewrote for that run are gone with
  it, so their mounts get copies of the project's originals, at the same container paths.

Runs alternate between the sides (the order swaps every round), after one warm-up each. For
each run: spawn to the first output line (the target), spawn to exit, and the script's own
steps/second. Medians are printed; the target is dlt / docker <= 1.05 for the first output
line, and the cold overhead (dlt's median minus docker's, in ms) is printed, not judged. dlt
runs cold: a fresh process per command, as a user's shell starts it.

Python byte-code: invoke turns off writing byte-code (unless --write-pyc), so an editable
install compiles what dlt imports lazily on every command, which a pip-installed copy
(compiled at install) never does. Both sides get a temporary PYTHONPYCACHEPREFIX, filled by
the warm-up with `--write-pyc`.

Exit status: 0 when measured (PASS or MISS), 2 when the bench could not run (no engine, no
image, a run failing).

    python bench/first_output.py [--runs 9] [--steps 100] [--image dlt-test-torch:latest]
                                 [--gpu] [--dlt CMD]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
MARK = "first output"
BENCH_LABEL = "dltasks.bench=first_output"
RETRY_MARKERS = ("docker0", "no such network interface")  # another tenant's dockerd, transient

SCRIPT = '''"""A training script's start: import torch, build a model, say so, train."""
import sys
import time

import torch

device = "cuda" if torch.cuda.is_available() else "cpu"
torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Linear(256, 512), torch.nn.ReLU(),
    torch.nn.Linear(512, 512), torch.nn.ReLU(),
    torch.nn.Linear(512, 10),
).to(device)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x = torch.randn(64, 256, device=device)
y = torch.randint(0, 10, (64,), device=device)
print(f"first output: model on {device}", flush=True)


def step():
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def sync():
    if device == "cuda":
        torch.cuda.synchronize()


steps = int(sys.argv[1])
for _ in range(10):  # warm-up: kernels chosen, memory allocated
    step()
sync()
t0 = time.perf_counter()
for _ in range(steps):
    step()
sync()
print(f"steps/s {steps / (time.perf_counter() - t0):.1f}", flush=True)
'''


@dataclass
class Run:
    first: float   # seconds from spawn to the first output line
    exit: float    # seconds from spawn to exit
    steps: float   # the script's steps/second


def fail(message: str) -> NoReturn:
    print(message, file=sys.stderr)
    raise SystemExit(2)


def make_project(tmp: Path, image: str, gpu: bool, steps: int) -> Path:
    proj = tmp / "firstout"
    proj.mkdir()
    gpus = "" if gpu else "DLT_GPUS=none\n"
    (proj / ".env").write_text(f"DLT_IMAGE={image}\n{gpus}DLT_TRAIN_CMD=python3 train.py {steps}\n")
    (proj / "train.py").write_text(SCRIPT)
    (proj / ".gitignore").write_text("runs/\n")
    if not shutil.which("git"):  # a GPU host may have none: the run records no commit then
        return proj
    git = ["git", "-C", str(proj), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "bench"], check=True)
    return proj


def one(argv: list[str], *, cwd: Path, env: dict[str, str]) -> Run:
    """Run argv, timing its first output line and its exit; retried (not timed twice) while
    the engine's bridge is missing, or when the container was killed (137) by someone else."""
    for _ in range(30):
        with tempfile.TemporaryFile() as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                    stderr=err, text=True)
            assert proc.stdout is not None
            first, steps = 0.0, 0.0
            for line in proc.stdout:
                if not first and line.startswith(MARK):
                    first = time.perf_counter() - t0
                elif line.startswith("steps/s "):
                    steps = float(line.split()[1])
            code = proc.wait()
            done = time.perf_counter() - t0
            proc.stdout.close()
            if code == 0 and first and steps:
                return Run(first, done, steps)
            err.seek(0)
            text = err.read().decode(errors="replace")
            if code == 137:  # killed from outside (a shared engine's cleanup): not timed
                print(f"bench: a run was killed (137), run again: {shlex.join(argv)[:80]}",
                      file=sys.stderr)
                continue
            if code == 0 or not any(m in text for m in RETRY_MARKERS):
                fail(f"bench: `{shlex.join(argv)[:200]}` failed ({code}; first line seen: "
                     f"{bool(first)}): {text.strip()[-600:]}")
            time.sleep(2)
    fail("bench: the engine's docker0 bridge stayed missing for a minute")


def docker_equivalent(proj: Path, copies: Path) -> list[str]:
    """The `docker run` line of dlt's last run here, without --name, with our label; mounts
    of that run's rewritten configs (removed with the run) get copies of the originals."""
    records = sorted(proj.glob("runs/*/manifest.json"), key=lambda p: p.stat().st_mtime)
    if not records:
        fail(f"bench: dlt train left no run record in {proj}/runs")
    argv = shlex.split(json.loads(records[-1].read_text())["docker_run"])
    if "--name" in argv:
        i = argv.index("--name")
        del argv[i:i + 2]
    for i, word in enumerate(argv[:-1]):
        if word != "-v":
            continue
        src, _, rest = argv[i + 1].partition(":")
        if not Path(src).exists() and "/configs/" in src:
            original = proj / src.split("/configs/", 1)[1]
            copy = copies / original.relative_to(proj)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(original, copy)
            argv[i + 1] = f"{copy}:{rest}"
    argv[0] = DOCKER
    argv[2:2] = ["--label", BENCH_LABEL]
    return argv


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9, help="timed runs per side")
    ap.add_argument("--steps", type=int, default=100, help="training steps per run")
    ap.add_argument("--image", default=os.environ.get("DLTASKS_TEST_TORCH_IMAGE",
                                                      "dlt-test-torch:latest"))
    ap.add_argument("--gpu", action="store_true", help="dlt train --gpu 0 (a GPU host)")
    ap.add_argument("--dlt", default="", help="the dlt command (default: python -m dltasks)")
    a = ap.parse_args()
    dlt = shlex.split(a.dlt) if a.dlt else [sys.executable, "-m", "dltasks"]

    if subprocess.run([DOCKER, "image", "inspect", a.image], capture_output=True).returncode:
        print(f"bench: image {a.image} is not on the engine: make it with `bash dev/images.sh` "
              "or pass --image", file=sys.stderr)
        return 2
    version = subprocess.run([DOCKER, "version", "--format",
                              "client {{.Client.Version}}, engine {{.Server.Version}}"],
                             capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="dlt-bench-first-") as t:
        tmp = Path(t)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        proj = make_project(tmp, a.image, a.gpu, a.steps)
        ours = [*dlt, "train", *(["--gpu", "0"] if a.gpu else [])]
        try:
            one([*dlt, "--write-pyc", *ours[len(dlt):]], cwd=proj, env=env)  # warm-up
            docker = docker_equivalent(proj, tmp / "configs")
            one(docker, cwd=proj, env=env)  # warm-up: the image in the page cache
            print(f"dlt:    {shlex.join(ours)}   (cwd: the project)\n"
                  f"docker: {shlex.join(docker)}\n"
                  f"engine: {version}; image {a.image}; {a.steps} steps a run")
            runs: dict[str, list[Run]] = {"dlt": [], "docker": []}
            for i in range(a.runs):
                order = [("dlt", ours), ("docker", docker)]
                for name, argv in order if i % 2 == 0 else order[::-1]:
                    runs[name].append(one(argv, cwd=proj, env=env))
        finally:
            left = subprocess.run([DOCKER, "ps", "-aq", "--filter", f"label={BENCH_LABEL}",
                                   "--filter", f"label=dltasks.project={proj.name}"],
                                  capture_output=True, text=True).stdout.split()
            if left:
                subprocess.run([DOCKER, "rm", "-f", *left], capture_output=True)
    report(runs, a.runs)
    return 0


def report(runs: dict[str, list[Run]], n: int) -> None:
    med = statistics.median
    print(f"\n== {n} runs each, alternating; medians (all runs in ms) ==")
    for name, rs in runs.items():
        print(f"  {name:<7} first output {med(r.first for r in rs) * 1000:6.0f} ms  "
              f"exit {med(r.exit for r in rs) * 1000:6.0f} ms  "
              f"steps/s {med(r.steps for r in rs):8.1f}   "
              f"[{', '.join(f'{r.first * 1000:.0f}' for r in rs)}]")
    d, o = runs["docker"], runs["dlt"]
    first_d, first_o = med(r.first for r in d), med(r.first for r in o)
    ratio = first_o / first_d
    print(f"first output line: dlt / docker {ratio:.3f} (target <= 1.05): "
          f"{'PASS' if ratio <= 1.05 else 'MISS'}")
    print(f"cold overhead: {(first_o - first_d) * 1000:+.0f} ms to the first line, "
          f"{(med(r.exit for r in o) - med(r.exit for r in d)) * 1000:+.0f} ms to exit "
          "(not judged)")
    print(f"steps/s: dlt / docker {med(r.steps for r in o) / med(r.steps for r in d):.3f} "
          "(not judged)")


if __name__ == "__main__":
    raise SystemExit(main())
