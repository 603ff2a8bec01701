"""Launching a run on a Target: plan, check the host, record, run, record the end.

Used by `train`, `shell` and `test-gpu`, locally and through Fabric alike.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any

from dltasks.engine import lifecycle as runner
from dltasks.engine.api import NotFound
from dltasks.engine.spec import LABEL_STARTED, RunSpec, docker_run_cmdline
from dltasks.errors import ConnectionLost, DltError
from dltasks.gpu import modes as gpumode
from dltasks.gpu import share as gpushare
from dltasks.hosts.target import HostLogin, Target
from dltasks.runs import output as localio
from dltasks.runs import ports as runports
from dltasks.runs import torchrun
from dltasks.runs.plan import RunPlan, RunRequest, image_paths_note, mapping_table, plan_run
from dltasks.runs.prepare import (
    host_facts,
    image_record,
    nothing_left,
    prepare_host,
    resolve_image,
    settings_rows,
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
from dltasks.runs.start import StartFacts, final_spec
from dltasks.settings import Settings
from dltasks.settings.masking import secret_values


def _image_env_if_any(target: Target, image: str) -> dict[str, str]:
    """The image's environment for --dry-run, {} when the engine cannot say."""
    try:
        return gpumode.image_env(target.engine.inspect_image(image))
    except DltError:
        return {}


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


def manifest(plan: RunPlan, spec: RunSpec, settings: Settings, target: Target, *,
             started: str, image_info: dict[str, Any], detach: bool,
             git: GitState) -> RunRecord:
    """The record of a one-host run as it starts (``spec``: the one it starts)."""
    return RunRecord(
        plan.run_id, kind=spec.labels.get("dltasks.kind", ""), host=target.name,
        image=spec.image, image_id=image_info.get("Id"),
        image_digests=tuple(image_info.get("RepoDigests") or ()), git=git,
        command=spec.command, gpus=spec.gpus.describe(),
        settings=settings_rows(settings),
        path_map=tuple(PathRow(*r) for r in plan.pathmap.table()),
        configs=tuple(ConfigEdit(rel, tuple((str(a), str(b)) for a, b in m.replacements))
                      for rel, m in plan.configs),
        docker_run=docker_run_cmdline(spec, detach=detach), detached=detach,
        started=started)


def launch(target: Target, local: Settings, req: RunRequest, *, detach: bool = False,
           dry_run: bool = False, run_id: str = "",
           gpu_facts: Callable[[], gpumode.GpuFacts] | None = None,
           forwarder: Callable[[str, str], None] | None = None) -> int:
    """Run ``req`` on ``target``; returns the exit code to exit with.

    ``run_id`` (default: a new one) names the run and its record folder ``runs/<run_id>``.
    A run with GPUs takes them under the host's GPU lock (:mod:`dltasks.gpu.share`), held from
    the pick until its container has started. ``gpu_facts``: the facts of
    :func:`dltasks.gpu.modes.facts_later`, when the caller started them already (while it
    imported this module, say). ``forwarder(run_id, container_id)``: for a detached run with
    ports whose forwards must outlive this program (a remote host), starts them and prints
    the URLs;
    without one the URLs are printed here (this machine's ports need no forward).
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
    secrets = secret_values({**settings.container_env, **dict(req.env)})
    if plan.image_paths and not dry_run:
        print(image_paths_note(plan), file=sys.stderr, flush=True)

    if dry_run:
        found = gpu_facts()
        access = gpushare.preview(target, found, req.gpus, share=req.share)
        _warn(access)
        who = target.who()  # locally the uid:gid the plan already has
        uid_gid, cpus = who.uid_gid, who.cpus
        # who runs is not asked here (no USER/LOGNAME, no user label): the rest as it starts
        spec = final_spec(plan, StartFacts(
            uid_gid=uid_gid, access=access, gpu_facts=found, cpus=cpus,
            image_env=_image_env_if_any(target, image),
            shell_env=torchrun.passed_env(os.environ)))
        print(docker_run_cmdline(spec, detach=detach))
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
            runports.check_publishable(target, plan.spec.ports, plan.spec.network)
            try:
                login, info = _ready_host(target, plan, image)
            finally:
                found = gpu_facts()
            got = held.enter_context(gpushare.claimed(target, found, req.gpus, share=req.share,
                                                      wait=req.wait))
        spec = final_spec(plan, StartFacts(
            uid_gid=login.uid_gid, user=login.user, access=got.access, gpu_facts=found,
            image_env=gpumode.image_env(info), cpus=login.cpus,
            shell_env=torchrun.passed_env(os.environ)))
        return _run(target, plan, spec, got, info=info, git=git, secrets=secrets,
                    detach=detach, forwarder=forwarder)


def _warn(access: gpumode.GpuAccess) -> None:
    if access.warning:
        print(access.warning, file=sys.stderr)


def _run(target: Target, plan: RunPlan, spec: RunSpec, got: gpushare.Claimed, *,
         info: dict[str, Any], git: Callable[[], GitState], secrets: Any, detach: bool,
         forwarder: Callable[[str, str], None] | None = None) -> int:
    """Record and run ``spec`` (``plan``'s, as it starts) with the GPUs ``got`` holds (its
    lock let go once started); its ports forwarded here while it runs attached."""
    settings = target.settings
    req = plan.request
    access = got.access
    _warn(access)
    started = spec.labels.get(LABEL_STARTED, "")
    record = manifest(plan, spec, settings, target, started=started, image_info=info,
                      detach=detach, git=git())
    record = record.but(
        gpu_mode=access.mode, gpu_mode_why=access.why,
        gpus_asked=req.gpus.describe() if req.gpus.describe() != access.selection.describe()
        else None,
        gpus_shared=tuple(got.choice.shared) if got.choice.shared else None)
    folder = plan.run_dir
    record.save(folder, secrets)  # before the start: a failure here stops nothing

    if detach:
        try:
            cid = runner.start_detached(target, spec)
        finally:
            got.release()
        record = record.but(container_id=cid, status="running")
        # the id first: whatever fails below, `stop` finds the running container by its record
        localio.save_record(folder, record, secrets, what="the container's id")
        if spec.ports:
            # a remote host's forwards are the background forwarder's (they outlive us)
            try:
                with runports.forwarded(target, plan.run_id, cid, spec.ports, kind=req.kind,
                                        say=forwarder is None,
                                        forward=forwarder is None) as urls:
                    if urls:
                        record = record.but(ports=runports.port_rows(urls))
            except DltError as e:  # the run goes on: say why its ports are not shown
                print(f"dlt: warning: {e.message}", file=sys.stderr, flush=True)
            else:
                localio.save_record(folder, record, secrets, what="the run's ports")
        print(plan.run_id)
        follow, stop = (target.task_command(f"{t} {plan.run_id}") for t in ("logs", "stop"))
        print(f"dlt: started {plan.run_id} on {target.name}; follow it with `{follow} --follow`, "
              f"stop it with `{stop}`", file=sys.stderr)
        if spec.ports and forwarder is not None:
            try:
                forwarder(plan.run_id, cid)
            except (DltError, OSError) as e:  # the run is started: exit 0, say what is missing
                why = e.message if isinstance(e, DltError) else str(e)
                print(f"dlt: warning: the ports of {plan.run_id} are not forwarded to this "
                      f"machine ({why}); the run goes on: forward them with "
                      f"`{target.task_command(f'forward {plan.run_id}')}`", file=sys.stderr)
        return 0
    room = localio.reserve(folder)  # the end fits even if output.log fills the disk
    forwards = contextlib.ExitStack()

    def on_start() -> None:
        """The GPU lock goes; the ports (the container started: the engine bound them) are
        forwarded until the run ends, and kept in the record."""
        nonlocal record
        got.release()
        if not spec.ports:
            return
        try:
            urls = forwards.enter_context(runports.forwarded(
                target, plan.run_id, spec.name or plan.run_id, spec.ports, kind=req.kind))
        except NotFound:  # its start failed (the engine's reason comes next): nothing to say
            return
        except DltError as e:  # the run goes on without a forward: say why, once
            print(f"dlt: warning: {e.message}", file=sys.stderr, flush=True)
            return
        if urls:  # none bound (it ended already): the record keeps no empty list
            record = record.but(ports=runports.port_rows(urls))
            localio.save_record(folder, record, secrets, what="the run's ports")

    try:
        with forwards:
            if req.interactive:
                from dltasks.engine.tty import run_interactive

                code = run_interactive(target, spec, stop_timeout=settings.stop_timeout,
                                       started=on_start)
            else:
                code = runner.run_attached(target, spec, stop_timeout=settings.stop_timeout,
                                           log_path=log_file(folder), started=on_start,
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
