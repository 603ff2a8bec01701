"""Launching a run on a Target: plan, check the host, record, run, record the end.

Used by `train`, `shell` and `test-gpu`, locally and through Fabric alike.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from dltasks.engine import lifecycle as runner
from dltasks.engine.spec import LABEL_GPUS, LABEL_STARTED, LABEL_USER, RunSpec, docker_run_cmdline
from dltasks.errors import ConnectionLost, DltError
from dltasks.gpu import modes as gpumode
from dltasks.gpu import share as gpushare
from dltasks.hosts.target import HostLogin as HostLogin  # job.py takes it from here
from dltasks.hosts.target import Target
from dltasks.runs import output as localio
from dltasks.runs import torchrun
from dltasks.runs.plan import (
    RunPlan,
    RunRequest,
    TargetFacts,
    image_paths_note,
    mapping_table,
    missing_message,
    plan_run,
)
from dltasks.runs.record import (
    ConfigEdit,
    GitState,
    PathRow,
    RunRecord,
    git_state_later,
    log_file,
    new_run_id,
    run_dir,
    utcnow,
)
from dltasks.settings import Settings
from dltasks.settings.masking import secret_values


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


def _image_env_if_any(target: Target, image: str) -> dict[str, str]:
    """The image's environment for --dry-run, {} when the engine cannot say."""
    try:
        return gpumode.image_env(target.engine.inspect_image(image))
    except DltError:
        return {}


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


def _ready_host(target: Target, plan: RunPlan,
                image: str) -> tuple[HostLogin, dict[str, Any]]:
    """Get the host ready for the run: (who runs there, the image's engine record).

    On a remote host the code is synced and each check is a round trip, so the sync, the
    host check (:func:`prepare_host`) and the image lookup run at the same time; only a
    path that must exist inside the synced folder waits for the sync. Errors come in that
    order: sync, host, image.
    """
    if not target.syncs_project:
        return prepare_host(target, plan), image_record(target, image)
    from concurrent.futures import ThreadPoolExecutor

    code_dir = target.host_project_dir.rstrip("/") + "/"
    needs_code = any(p == code_dir[:-1] or p.startswith(code_dir) for p in plan.must_exist)
    with ThreadPoolExecutor(2, thread_name_prefix="dlt-ready") as pool:
        synced = pool.submit(target.sync_project, runs=[plan.run_id])
        looked_up = pool.submit(image_record, target, image)
        if needs_code:
            synced.result()
        try:
            who = prepare_host(target, plan)
        except DltError:
            synced.result()  # a failed sync says more than a path it would have made
            raise
        synced.result()
        return who, looked_up.result()


def settings_rows(settings: Settings) -> dict[str, dict[str, str]]:
    """The resolved settings as a record keeps them: each value and where it came from."""
    return {k: {"value": v, "source": s} for k, v, s in settings.rows()}


def manifest(plan: RunPlan, settings: Settings, target: Target, *, started: str,
             image_info: dict[str, Any], detach: bool, git: GitState) -> RunRecord:
    """The record of a one-host run as it starts."""
    return RunRecord(
        plan.run_id, kind=plan.spec.labels.get("dltasks.kind", ""), host=target.name,
        image=plan.spec.image, image_id=image_info.get("Id"),
        image_digests=tuple(image_info.get("RepoDigests") or ()), git=git,
        command=plan.spec.command, gpus=plan.spec.gpus.describe(),
        settings=settings_rows(settings),
        path_map=tuple(PathRow(*r) for r in plan.pathmap.table()),
        configs=tuple(ConfigEdit(rel, tuple((str(a), str(b)) for a, b in m.replacements))
                      for rel, m in plan.configs),
        docker_run=docker_run_cmdline(plan.spec, detach=detach), detached=detach,
        started=started)


def launch(target: Target, local: Settings, req: RunRequest, *, detach: bool = False,
           dry_run: bool = False, run_id: str = "",
           gpu_facts: Callable[[], gpumode.GpuFacts] | None = None) -> int:
    """Run ``req`` on ``target``; returns the exit code to exit with.

    ``run_id`` (default: a new one) names the run and its record folder ``runs/<run_id>``.
    A run with GPUs takes them under the host's GPU lock (:mod:`dltasks.gpu.share`), held from
    the pick until its container has started. ``gpu_facts``: the facts of
    :func:`dltasks.gpu.modes.facts_later`, when the caller started them already (while it
    imported this module, say).
    """
    settings = target.settings
    run_id, started = run_id or new_run_id(), utcnow()
    if gpu_facts is None:  # the host's round trip and the engine's /info go on while we plan
        gpu_facts = gpumode.facts_later(target, req.gpus, tolerant=dry_run)
    git = git_state_later(settings.project_dir)  # for the record; git works while we plan
    image = resolve_image(target, settings, req, dry_run)
    facts = host_facts(target)
    with nothing_left(run_dir(local.project_dir, run_id), git):
        plan = plan_run(local, settings, facts, req, run_id=run_id, started=started, image=image)
    secrets = secret_values({**settings.container_env})
    if plan.image_paths and not dry_run:
        print(image_paths_note(plan), file=sys.stderr, flush=True)

    if dry_run:
        found = gpu_facts()
        access = gpushare.preview(target, found, req.gpus, share=req.share)
        _warn(access)
        plan.spec = _with_gpus(gpumode.apply_access(plan.spec, access,
                                                    _image_env_if_any(target, image)),
                               access, "")
        who = target.who()  # locally the uid:gid the plan already has
        cpus = who.cpus
        if not req.root:
            plan.spec = replace(plan.spec, user=who.uid_gid)
        if req.nproc:
            plan.spec = under_torchrun(plan.spec, req, access, found, cpus, target.name)
        print(docker_run_cmdline(plan.spec, detach=detach))
        print()
        print(mapping_table(plan.pathmap, target.syncs_project))
        for rel, m in plan.configs:
            for old, new in m.replacements:
                print(f"  {rel}: {old} -> {new}")
        for u in plan.unmapped:
            print(f"  unmapped (allowed): {u.path} ({u.where})")
        for u in plan.image_paths:
            print(f"  in the image (no such path here): {u.path} ({u.where})")
        shutil.rmtree(plan.run_dir, ignore_errors=True)
        git()  # reap it
        return 0

    plan.run_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        with nothing_left(plan.run_dir, git):
            try:
                login, info = _ready_host(target, plan, image)
            finally:
                found = gpu_facts()
            got = held.enter_context(gpushare.claimed(target, found, req.gpus, share=req.share,
                                                      wait=req.wait))
        if req.nproc:
            plan.spec = under_torchrun(plan.spec, req, got.access, found, login.cpus,
                                        target.name)
        return _run(target, plan, req, got, info=info, uid_gid=login.uid_gid, user=login.user,
                    git=git, secrets=secrets, detach=detach)


def gpu_count(access: gpumode.GpuAccess, facts: gpumode.GpuFacts) -> int | None:
    """How many GPUs a run with ``access`` gets (None: all of the host's, number unknown)."""
    from dltasks.gpu.selection import ALL, IDS, NONE

    sel = access.selection
    if access.mode == NONE or not sel.wants_gpus:
        return 0
    if sel.mode == IDS:
        return len(sel.ids)
    host = facts.host
    if sel.mode == ALL and host is not None:
        return len(host.status.gpus) or len(host.driver.gpus) or None
    return None


def under_torchrun(spec: RunSpec, req: RunRequest, access: gpumode.GpuAccess,
                    facts: gpumode.GpuFacts, cpus: int, where: str,
                    launch: torchrun.Launch | None = None) -> RunSpec:
    """``spec``'s command started by torchrun (one host: --standalone), OMP_NUM_THREADS a
    fair share of the host's CPUs unless set, the shell's NCCL_* (and kin) passed in."""
    n = torchrun.count(req.nproc, gpu_count(access, facts), where)
    how = replace(launch, nproc=n) if launch else torchrun.Launch(n)
    env = {**torchrun.passed_env(os.environ), **spec.env}
    env.setdefault("OMP_NUM_THREADS", str(torchrun.omp_threads(cpus, n)))
    return replace(spec, command=torchrun.wrap(spec.command, how), env=env)


def _warn(access: gpumode.GpuAccess) -> None:
    if access.warning:
        print(access.warning, file=sys.stderr)


def _with_gpus(spec: RunSpec, access: gpumode.GpuAccess, user: str) -> RunSpec:
    """The labels that say which host GPUs the run holds (its claim) and for whom."""
    labels = {**spec.labels, LABEL_GPUS: access.selection.describe()}
    if user:
        labels[LABEL_USER] = user
    return replace(spec, labels=labels)


def _run(target: Target, plan: RunPlan, req: RunRequest, got: gpushare.Claimed, *,
         info: dict[str, Any], uid_gid: str, user: str, git: Callable[[], GitState],
         secrets: Any, detach: bool) -> int:
    """Record and run ``plan`` with the GPUs ``got`` holds (its lock let go once started)."""
    settings = target.settings
    access = got.access
    _warn(access)
    plan.spec = _with_gpus(gpumode.apply_access(plan.spec, access, gpumode.image_env(info)), access,
                           user)
    if not req.root:
        # the uid may be in no passwd file of the image: USER and LOGNAME name it for tools
        # that ask who they are (getpass.getuser(), used by torch's compile caches)
        env = {"USER": user, "LOGNAME": user, **plan.spec.env} if user else dict(plan.spec.env)
        plan.spec = replace(plan.spec, user=uid_gid, env=env)
    started = plan.spec.labels.get(LABEL_STARTED, "")
    record = manifest(plan, settings, target, started=started, image_info=info, detach=detach,
                      git=git())
    record = record.but(
        gpu_mode=access.mode, gpu_mode_why=access.why,
        gpus_asked=req.gpus.describe() if req.gpus.describe() != access.selection.describe()
        else None,
        gpus_shared=tuple(got.choice.shared) if got.choice.shared else None)
    folder = plan.run_dir
    record.save(folder, secrets)  # before the start: a failure here stops nothing

    if detach:
        try:
            cid = runner.start_detached(target, plan.spec)
        finally:
            got.release()
        record = record.but(container_id=cid, status="running")
        localio.save_record(folder, record, secrets, what="the container's id")
        print(plan.run_id)
        print(f"dlt: started {plan.run_id} on {target.name}; follow it with `inv logs "
              f"{plan.run_id} --follow`, stop it with `inv stop {plan.run_id}`", file=sys.stderr)
        return 0
    room = localio.reserve(folder)  # the end fits even if output.log fills the disk
    try:
        if req.interactive:
            from dltasks.engine.tty import run_interactive

            code = run_interactive(target, plan.spec, stop_timeout=settings.stop_timeout,
                                   started=got.release)
        else:
            code = runner.run_attached(target, plan.spec, stop_timeout=settings.stop_timeout,
                                       log_path=log_file(folder), started=got.release,
                                       secrets=secrets)
    except DltError as e:
        lost = isinstance(e, ConnectionLost)
        record = record.but(ended=utcnow(),
                            status="connection lost" if lost else "failed to start",
                            error=e.message)
        localio.save_record(folder, record, secrets, room=room, what="the run's end")
        raise
    finally:  # let the room go: the end's write below (or a kill) leaves no reserve behind
        if room is not None:
            with contextlib.suppress(OSError):
                room.unlink(missing_ok=True)
    record = record.but(ended=utcnow(), exit_code=code,
                        status="interrupted" if code == runner.INTERRUPTED else "exited")
    localio.save_record(folder, record, secrets, room=room,
                        what=f"the run's end (exit code {code})")
    return code
