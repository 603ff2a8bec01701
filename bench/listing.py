"""Bench: `inv --list` in a project using dltasks vs `inv --list` on a one-task tasks.py.

The dltasks project's tasks.py is the one line users get (`from dltasks.tasks import ns`); the
other holds a single `@task`. Runs alternate between the two; medians and the ratio are
printed (target <= 1.3). Then, in fresh interpreters, it checks that listing and parsing
(`inv --list`, `inv --help train`, `dlt --list`, `dlt --help train`) import no docker, fabric
or paramiko (from `python -X importtime`), and prints what the dltasks import costs.

Python byte-code: invoke turns off writing byte-code (unless --write-pyc), and this repo is
installed editable, so each run would compile tasks.py and dltasks.tasks from source, which a
pip-installed copy (compiled at install) never does. The bench keeps byte-code for both sides
under a temporary PYTHONPYCACHEPREFIX, filled by a warm-up with `--write-pyc`. `--as-is`
keeps the environment (and shows what an editable install pays).
Exit status: 0 when measured (PASS or MISS), 2 when the bench could not run.

    python bench/listing.py [--runs 25] [--as-is]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("docker", "fabric", "paramiko")
ONE_TASK = '''from invoke import task


@task
def hello(c):
    """Say hello."""
    print("hello")
'''


def inv_argv() -> list[str]:
    script = Path(sys.executable).parent / "inv"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "invoke"]


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if res.returncode != 0:
        print(f"bench: `{' '.join(argv)}` failed in {cwd}: {res.stderr.strip()[-600:]}",
              file=sys.stderr)
        raise SystemExit(2)
    return took


def imported(argv: list[str], cwd: Path, env: dict[str, str]) -> dict[str, int]:
    """Top-level modules a fresh interpreter imports for argv, with cumulative microseconds."""
    res = subprocess.run([sys.executable, "-X", "importtime", *argv], cwd=cwd, env=env,
                         capture_output=True, text=True)
    if res.returncode != 0:
        print(f"bench: `{' '.join(argv)}` failed: {res.stderr.strip()[-600:]}", file=sys.stderr)
        raise SystemExit(2)
    mods: dict[str, int] = {}
    for line in res.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if cumulative.strip().isdigit():
            mods[name.strip()] = int(cumulative)
    return mods


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--as-is", action="store_true",
                    help="no byte-code cache of our own: what an editable install pays")
    args = ap.parse_args()

    inv = inv_argv()
    with tempfile.TemporaryDirectory(prefix="dlt-bench-list-") as t:
        tmp = Path(t)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
        if not args.as_is:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        ours, one = tmp / "dltproj", tmp / "onetask"
        ours.mkdir()
        one.mkdir()
        shutil.copy(Path(__file__).resolve().parent.parent / "tasks.py", ours / "tasks.py")
        (one / "tasks.py").write_text(ONE_TASK)
        print(f"inv: {' '.join(inv)}\ndltasks project tasks.py: "
              f"{(ours / 'tasks.py').read_text().strip().splitlines()[-1]}\n"
              f"byte-code: {'as the environment says' if args.as_is else 'cached'}")

        pyc = [] if args.as_is else ["--write-pyc"]
        timed([*inv, *pyc, "--list"], ours, env)  # warm-up: byte-code, page cache
        timed([*inv, *pyc, "--list"], one, env)
        timed([sys.executable, "-m", "dltasks", *pyc, "--list"], one, env)
        t_ours: list[float] = []
        t_one: list[float] = []
        for _ in range(args.runs):
            t_ours.append(timed([*inv, "--list"], ours, env))
            t_one.append(timed([*inv, "--list"], one, env))
        m_ours, m_one = statistics.median(t_ours), statistics.median(t_one)
        ratio = m_ours / m_one
        print(f"\n== inv --list ({args.runs} runs each, alternating) ==")
        print(f"  dltasks project   median {m_ours * 1000:5.0f} ms  (min {min(t_ours) * 1000:.0f})")
        print(f"  one-task project  median {m_one * 1000:5.0f} ms  (min {min(t_one) * 1000:.0f})")
        print(f"  difference {(m_ours - m_one) * 1000:+.0f} ms; ratio {ratio:.2f} (target <= 1.3): "
              f"{'PASS' if ratio <= 1.3 else 'MISS'}")

        print("\n== heavy imports when listing or parsing (python -X importtime) ==")
        clean = True
        checks = [(["-m", "invoke", "--list"], ours), (["-m", "invoke", "--help", "train"], ours),
                  (["-m", "dltasks", "--list"], one), (["-m", "dltasks", "--help", "train"], one)]
        for argv, cwd in checks:
            mods = imported(argv, cwd, env)
            heavy = sorted(m for m in mods if m.split(".")[0] in HEAVY)
            clean = clean and not heavy
            cost = mods.get("dltasks.tasks", 0) / 1000
            print(f"  python {' '.join(argv):<28} {len(mods):4d} modules; dltasks.tasks "
                  f"{cost:5.1f} ms; docker/fabric/paramiko: {', '.join(heavy) or 'none'}")
        print(f"  no docker, fabric or paramiko: {'PASS' if clean else 'MISS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
