"""The host steps every kind of run shares: learn about the host, ready it, find the image.

A single run (:mod:`dltasks.runs.single`), each node of a job (:mod:`dltasks.runs.job`) and a
Slurm submission (:mod:`dltasks.runs.slurm`) all go through these before their spec is made
(:func:`dltasks.runs.start.final_spec`): they touch the host (a shell round trip, the engine,
this machine's files), so they live apart from the pure planning.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dltasks.errors import DltError
from dltasks.hosts.target import HostLogin, Target
from dltasks.runs.plan import RunPlan, RunRequest, TargetFacts, missing_message
from dltasks.runs.record import GitState
from dltasks.settings import Settings


def host_facts(target: Target) -> TargetFacts:
    """The target's name and project folder; the uid:gid comes with :func:`prepare_host`."""
    return TargetFacts(target.name, target.host_project_dir, target.own_uid_gid, target.host_home)


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
        raise DltError(f"image {image} is not on {target.engine_where}: build it with `inv "
                       f"extend-image`, pull it (`docker pull {image}`), or set DLT_IMAGE to "
                       "an image it has") from None


def prepare_host(target: Target, plan: RunPlan) -> HostLogin:
    """Check on the host that the paths the run mounts exist, create the outputs folder, and
    learn the login's uid:gid, name and the host's CPU count: one round trip for a remote
    host, none for this machine."""
    who, missing = target.prepare(plan.must_exist, plan.make_dirs)
    if missing:
        raise DltError(missing_message(target.name, missing))
    return who


def settings_rows(settings: Settings) -> dict[str, dict[str, str]]:
    """The resolved settings as a record keeps them: each value and where it came from."""
    return {k: {"value": v, "source": s} for k, v, s in settings.rows()}
