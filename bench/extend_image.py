"""Bench: `dlt extend-image` on an unchanged project vs `docker build` with a full cache.

Both build the same thing: the Dockerfile that `dlt extend-image --print` generates, with the
same files in the context. docker-py has no BuildKit, so the fair comparison is the legacy
builder: `DOCKER_BUILDKIT=0 docker build` (pass --buildkit to time BuildKit as well). Prints
absolute medians and the ratio (target <= 0.5). Cleans up what it made.

    python bench/extend_image.py [--runs 7] [--base dlt-test-base:latest]
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
import uuid
from pathlib import Path

CA = "/etc/ssl/certs/ca-certificates.crt"


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(f"bench: `{' '.join(argv)}` failed: {r.stdout[-800:]}{r.stderr[-800:]}")
    return took


def in_process(proj: Path) -> float:
    """One up-to-date check as `inv train` pays it: Settings, a Target (engine connect + ping),
    then ensure_project_image, inside an already running process (modules imported)."""
    import contextlib
    import io

    from invoke import Context

    from dltasks.hosts.target import local_target
    from dltasks.images.build import ensure_project_image
    from dltasks.settings import resolve

    start = time.perf_counter()
    settings = resolve(proj)
    target = local_target(Context(), settings)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            ensure_project_image(target, settings)
    finally:
        target.close()
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--base", default=os.environ.get("DLTASKS_TEST_BASE_IMAGE",
                                                     "dlt-test-base:latest"))
    ap.add_argument("--buildkit", action="store_true", help="also time DOCKER_BUILDKIT=1")
    ap.add_argument("--context-mb", type=int, default=0,
                    help="also time the naive way: docker build with the project folder as "
                         "context, holding this many MB of data (dlt never sends it)")
    args = ap.parse_args()

    dlt = [shutil.which("dlt") or sys.executable]
    if dlt[0] == sys.executable:
        dlt += ["-m", "dltasks"]
    repo = f"dlt-bench-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    with tempfile.TemporaryDirectory() as tmp:
        proj = Path(tmp) / "proj"
        proj.mkdir()
        (proj / ".env").write_text(f"DLT_PROJECT={repo}\nDLT_BASE_IMAGE={args.base}\n"
                                   f"DLT_CA_BUNDLE={CA}\n")
        (proj / "requirements.txt").write_text("# bench: nothing to download\n")
        # The same context for docker build: the generated Dockerfile and the files it copies.
        ctx = Path(tmp) / "ctx"
        ctx.mkdir()
        text = subprocess.run([*dlt, "extend-image", "--print"], cwd=proj, env=env,
                              capture_output=True, text=True, check=True).stdout
        (ctx / "Dockerfile").write_text(text)
        shutil.copy(proj / "requirements.txt", ctx / "requirements.txt")
        shutil.copy(CA, ctx / "ca-bundle.crt")

        builds = {"DOCKER_BUILDKIT=0 docker build": ({**env, "DOCKER_BUILDKIT": "0"}, ctx)}
        if args.context_mb:
            big = Path(tmp) / "big"
            shutil.copytree(ctx, big)
            (big / "data").mkdir()
            with open(big / "data" / "train.bin", "wb") as f:
                for _ in range(args.context_mb):
                    f.write(os.urandom(1 << 20))
            builds[f"  same, {args.context_mb} MB project as context"] = (
                {**env, "DOCKER_BUILDKIT": "0"}, big)
        if args.buildkit:
            builds["DOCKER_BUILDKIT=1 docker build"] = ({**env, "DOCKER_BUILDKIT": "1"}, ctx)
        try:
            # Warm up: the image exists and every layer is cached.
            timed([*dlt, "extend-image"], proj, env)
            for benv, bctx in builds.values():
                timed(["docker", "build", "-q", "-t", f"{repo}:docker", "."], bctx, benv)
            times: dict[str, list[float]] = {"dlt extend-image (unchanged)": []}
            times.update({name: [] for name in builds})
            times["in-process ensure_project_image"] = []
            saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("DLT_")}
            in_process(proj)  # warm the imports once
            for _ in range(args.runs):
                times["in-process ensure_project_image"].append(in_process(proj))
                times["dlt extend-image (unchanged)"].append(
                    timed([*dlt, "extend-image"], proj, env))
                for name, (benv, bctx) in builds.items():
                    times[name].append(timed(["docker", "build", "-q", "-t", f"{repo}:docker",
                                              "."], bctx, benv))
            os.environ.update(saved)
        finally:
            out = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
                                  repo], capture_output=True, text=True).stdout.split()
            if out:
                subprocess.run(["docker", "rmi", "-f", *out], capture_output=True)

    med = {name: statistics.median(ts) for name, ts in times.items()}
    for name, m in med.items():
        print(f"{name:<34} median {m * 1000:7.0f} ms  (runs: "
              f"{', '.join(f'{t * 1000:.0f}' for t in times[name])})")
    ours = med["dlt extend-image (unchanged)"]
    legacy = med["DOCKER_BUILDKIT=0 docker build"]
    ratio = ours / legacy
    print(f"ratio dlt extend-image / DOCKER_BUILDKIT=0 docker build (full cache): {ratio:.2f} "
          f"(target <= 0.5: {'ok' if ratio <= 0.5 else 'MISSED'})")
    print(f"ratio in-process ensure_project_image (what `inv train` pays per run) / "
          f"DOCKER_BUILDKIT=0 docker build: {med['in-process ensure_project_image'] / legacy:.2f}")
    if args.context_mb:
        print(f"ratio dlt extend-image / docker build with a {args.context_mb} MB project as "
              f"context: {ours / med[f'  same, {args.context_mb} MB project as context']:.2f}")
    if args.buildkit:
        print(f"ratio vs DOCKER_BUILDKIT=1 docker build: "
              f"{ours / med['DOCKER_BUILDKIT=1 docker build']:.2f}")
    return 0 if ratio <= 0.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
