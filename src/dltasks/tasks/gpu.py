"""`test-gpu`: nvidia-smi and the GPU probe in the project's image, on the GPUs asked for."""

from __future__ import annotations

from typing import Any

from invoke.exceptions import Exit

from dltasks.tasks._common import dlt_task, settings_for, target_for


def _selection(gpu: list[str] | None, default: str) -> Any:
    """The GPUs to test: refuse bad ids and `none` before anything starts; auto means all."""
    from dltasks.errors import DltError
    from dltasks.gpu.selection import ALL, AUTO, NONE, GpuSelection, parse_gpu_request

    sel = parse_gpu_request(gpu or None, default=default)
    if sel.mode == NONE:
        if gpu:
            raise DltError("test-gpu --gpu none tests nothing: use --gpu all, or ids like "
                           "--gpu 0,1")
        sel = GpuSelection(ALL)  # DLT_GPUS=none is for runs, not for the GPU test
    return GpuSelection(ALL) if sel.mode == AUTO else sel


def _probe_on_host(target: Any) -> str:
    """The probe as a file on the target host: the package's file locally, uploaded remotely."""
    from dltasks.probe import script_path

    return str(target.copy_of(script_path(), "probe"))


@dlt_task(iterable=["gpu"], short={"gpu": "g"}, help={
    "gpu": "GPU ids to test (repeatable or 0,1), free:N, or all. Default: DLT_GPUS (auto/none: "
           "all).",
    "image": "Image to test instead of the project image.",
    "dry_run": "Print the `docker run` equivalent; start nothing.",
    "share": "Test GPUs even when another run holds them.",
})
def test_gpu(c: Any, gpu: list[str] | None = None, image: str = "",
             dry_run: bool = False, share: bool = False) -> None:
    """Run nvidia-smi and the GPU probe (devices, versions, a timed matmul) in the image."""
    from dltasks.engine.spec import Mount
    from dltasks.errors import DltError
    from dltasks.gpu.selection import FREE, IDS
    from dltasks.probe import CONTAINER_PATH, container_command, parse_probe_output
    from dltasks.runs.plan import RunRequest
    from dltasks.runs.record import log_file, new_run_id, run_dir
    from dltasks.runs.single import launch

    local = settings_for(c, host_layer=False, image=image or None)
    sel = _selection(gpu, local.gpus)
    expect = len(sel.ids) if sel.mode == IDS else sel.count if sel.mode == FREE else 1
    with target_for(c, image=image or None) as target:
        run_id = new_run_id()
        req = RunRequest(kind="test-gpu", command=container_command(expect), gpus=sel,
                         image=image, share=share,
                         extra_mounts=(Mount(_probe_on_host(target), CONTAINER_PATH, True),))
        code = launch(target, local, req, dry_run=dry_run, run_id=run_id)
        host = target.name
    if dry_run:
        return
    log = log_file(run_dir(local.project_dir, run_id))
    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
    if code == 130:
        raise Exit(code=code)
    try:
        report = parse_probe_output(text)
    except DltError:
        raise DltError(f"the GPU probe on {host} ended with exit code {code} and no report: "
                       "see its output above", code=code or 1) from None
    if code or not report.ok:
        raise DltError(f"GPU test failed on {host}: {report.summary()}", code=code or 1)
    print(f"dlt: GPU test passed on {host}: {report.summary()}")


@dlt_task(help={
    "print": "Print the spec instead of writing it.",
    "output": "Where to write it on the target host (default /etc/cdi/dltasks-nvidia.yaml).",
})
def gpu_spec(c: Any, print: bool = False, output: str = "") -> None:  # noqa: A002
    """Write the CDI spec of the NVIDIA driver found on the host (for Podman, Docker 25+...)."""
    import builtins

    from dltasks.gpu.cdi import dump, spec_for
    from dltasks.gpu.modes import gather_host_gpus
    from dltasks.hosts.shell import quote

    with target_for(c, engine_soon=False) as target:
        host = target.name
        driver = gather_host_gpus(target, target.settings).driver
        text = dump(spec_for(driver, host), driver, host)
        if print:
            builtins.print(text, end="")
            return
        path = output or "/etc/cdi/dltasks-nvidia.yaml"
        put = 'mkdir -p "$(dirname "$1")" && printf %s "$2" > "$1.tmp" && mv -f "$1.tmp" "$1"'
        argv = quote(["sh", "-c", put, "_", path, text])
        r = target.shell.run(argv)
        if not r.ok:
            r = target.shell.sudo(argv)
        if not r.ok:
            from dltasks.errors import DltError

            raise DltError(f"cannot write {path} on {host} ({r.tail(1)}): pass --output, or "
                           "rerun with sudo rights")
        n = len(driver.gpus)
        builtins.print(f"dlt: wrote {path} on {host}: {n} GPU(s) and 'all' as "
                       f"nvidia.com/gpu=0..{n - 1}, driver {driver.version or '?'}")


@dlt_task(help={"json": "Print JSON for scripts (one object per host, one line each)."})
def gpus(c: Any, json: bool = False) -> None:
    """Show the host's GPUs and who holds each (run, user, project) or what else runs on it.

    Memory, utilisation and temperature come from nvidia-smi; holders from the labels of the
    running dltasks containers of every user."""
    import json as json_module

    from dltasks.errors import DltError
    from dltasks.gpu.modes import gather_host_gpus
    from dltasks.gpu.report import report, table
    from dltasks.gpu.share import claims_on

    with target_for(c) as target:
        found = gather_host_gpus(target, target.settings, status=True)
        problem = ""
        try:
            claims = claims_on(target)
        except DltError as e:
            claims, problem = [], f"who holds what is unknown: {e.message}"
        rep = report(target.name, found.status, claims, free_mib=target.settings.gpu_free_mib,
                     indices=tuple(found.driver.gpus), problem=problem)
    print(json_module.dumps(rep) if json else table(rep))
