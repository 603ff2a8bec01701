"""The host steps every kind of run shares: learn about the host, ready it, find the image.

A single run (:mod:`dltasks.runs.single`), each node of a job (:mod:`dltasks.runs.job`) and a
Slurm submission (:mod:`dltasks.runs.slurm`) all go through these before their spec is made
(:func:`dltasks.runs.start.final_spec`): they touch the host (a shell round trip, the engine,
this machine's files), so they live apart from the pure planning.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dltasks.errors import DltError
from dltasks.hosts.shell import quote
from dltasks.hosts.target import Target
from dltasks.runs.plan import RunPlan, RunRequest, TargetFacts, missing_message
from dltasks.runs.record import GitState
from dltasks.settings import Settings


def host_facts(target: Target) -> TargetFacts:
    """The target's name and project folder; the uid:gid comes with :func:`prepare_host`."""
    uid_gid = "" if target.is_remote else f"{os.getuid()}:{os.getgid()}"
    return TargetFacts(target.name, target.host_project_dir, uid_gid, target.host_home)


def resolve_image(target: Target, settings: Settings, req: RunRequest, dry_run: bool) -> str:
    """The image to run: --image, DLT_IMAGE, or the project image brought up to date."""
    if req.image or settings.image:
        return req.image or settings.image
    if dry_run:
        return f"{settings.project}:latest"
    from dltasks.images.build import ensure_project_image

    return ensure_project_image(target, settings)


@contextmanager
def nothing_left(folder: Path, git: Callable[[], GitState]) -> Iterator[None]:
    """A run that fails before it reaches the engine leaves no run folder (and git reaped)."""
    try:
        yield
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # runs/, when this run was going to be its first
        git()
        raise


def image_record(target: Target, image: str) -> dict[str, Any]:
    """The engine's record of ``image``; a one-line error with the fixes when it has none."""
    from dltasks.engine.api import NotFound

    try:
        return target.engine.inspect_image(image)
    except NotFound:
        where = target.name if target.is_remote else \
            f"this machine's engine ({target.endpoint.url})"
        raise DltError(f"image {image} is not on {where}: build it with `inv extend-image`, pull "
                       f"it (`docker pull {image}`), or set DLT_IMAGE to an image it has") \
            from None


@dataclass(frozen=True)
class HostLogin:
    """Who runs on the host, and how many CPUs it has (from :func:`prepare_host`)."""

    uid_gid: str
    user: str
    cpus: int


def prepare_host(target: Target, plan: RunPlan) -> HostLogin:
    """Check on the host that the paths the run mounts exist, create the outputs folder, and
    learn the login's uid:gid, name and the host's CPU count: one round trip for a remote
    host, none for this machine."""
    if not target.is_remote:
        missing = [p for p in plan.must_exist if not os.path.exists(p)]
        if missing:
            raise DltError(missing_message(target.name, missing))
        for d in plan.make_dirs:
            os.makedirs(d, exist_ok=True)
        import getpass

        return HostLogin(f"{os.getuid()}:{os.getgid()}", getpass.getuser(), os.cpu_count() or 1)
    script = ('id -u; id -g; id -un; getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1; '
              'for p in "$@"; do case "$p" in mkdir:*) '
              'mkdir -p "${p#mkdir:}" || exit 3;; *) [ -e "$p" ] || echo "missing:$p";; esac; '
              'done')
    args = [*plan.must_exist, *(f"mkdir:{d}" for d in plan.make_dirs)]
    res = target.shell.run(quote(["sh", "-c", script, "_", *args]), check=True)
    lines = res.stdout.splitlines()
    missing = [ln[len("missing:"):] for ln in lines[4:] if ln.startswith("missing:")]
    if missing:
        raise DltError(missing_message(target.name, missing))
    cpus = lines[3].strip()
    return HostLogin(f"{lines[0].strip()}:{lines[1].strip()}", lines[2].strip(),
                     int(cpus) if cpus.isdigit() else 1)


def settings_rows(settings: Settings) -> dict[str, dict[str, str]]:
    """The resolved settings as a record keeps them: each value and where it came from."""
    return {k: {"value": v, "source": s} for k, v, s in settings.rows()}
