"""Onboarding tasks: `install-nvidia-docker`, `setup`, `doctor` (cores in dltasks.hostsetup)."""

from __future__ import annotations

import os
from typing import Any

from invoke.exceptions import Exit

from dltasks.tasks._common import dlt_task, target_for
from dltasks.tasks.invocation import spelled


@dlt_task(help={
    "dry_run": "Print the exact commands for this host and change nothing.",
    "version": "Pin the toolkit packages to this version (e.g. 1.17.8-1); default: "
               "$NVIDIA_CONTAINER_TOOLKIT_VERSION, else the newest.",
    "offline": "Install from this folder of downloaded .deb/.rpm packages instead of NVIDIA's "
               "repository.",
})
def install_nvidia_docker(c: Any, dry_run: bool = False, version: str = "",
                          offline: str = "") -> None:
    """Install and configure the NVIDIA Container Toolkit for Docker (idempotent)."""
    from dltasks.hostsetup import apply, toolkit
    from dltasks.hostsetup.facts import gather_setup_facts

    version = version or os.environ.get("NVIDIA_CONTAINER_TOOLKIT_VERSION", "")
    with target_for(c) as t:
        host = gather_setup_facts(t.shell)
        req = apply.ToolkitRequest(version=version, offline=offline)
        no_driver = apply.driver_problem(t, host)
        plan = apply.toolkit_plan_for(t, host, req, require_driver=not dry_run)
        if not plan:
            print(f"NVIDIA Container Toolkit {host.ctk_version} is already installed and "
                  f"configured for Docker on {t.name}: nothing changed")
            return
        if dry_run:
            print(f"# {host.os.label}: {len(plan)} command(s) to install and configure the "
                  "NVIDIA Container Toolkit (dry run, nothing changed)")
            print(toolkit.render(plan, sudo=not host.is_root))
            if no_driver:
                print(f"# note: a real run stops before these: {no_driver}")
            return
        apply.install_toolkit(t, plan, host)
        after = gather_setup_facts(t.shell)
        print(f"NVIDIA Container Toolkit {after.ctk_version} installed and configured for "
              f"Docker on {t.name}")


@dlt_task(help={
    "no_gpu": "CPU-only machine: skip the driver, toolkit and GPU-container steps.",
    "dry_run": "Show what each step would do and change nothing.",
    "load": "An image archive (`docker save`, a file on this machine) to load into the "
            "target's engine before the project image step, for hosts without a registry; "
            "repeatable.",
    "version": "Pin the NVIDIA Container Toolkit version (see install-nvidia-docker).",
    "offline": "Install the toolkit from this folder of downloaded packages.",
}, iterable=["load"])
def setup(c: Any, no_gpu: bool = False, dry_run: bool = False, load: Any = None,
          version: str = "", offline: str = "") -> None:
    """Onboard this host: engine, docker group, driver, toolkit, project image, GPU check, .env."""
    from dltasks.hostsetup import checklist, onboard
    from dltasks.hostsetup.apply import ToolkitRequest

    version = version or os.environ.get("NVIDIA_CONTAINER_TOOLKIT_VERSION", "")
    opts = onboard.SetupOptions(gpu=not no_gpu, dry_run=dry_run, load=tuple(load or ()),
                                toolkit=ToolkitRequest(version=version, offline=offline))
    with target_for(c) as t:
        results = onboard.run_setup(t, opts)
    commands = [f"[{r.name}] {cmd}" for r in results for cmd in r.commands]
    if dry_run and commands:
        print("commands a real run would run:")
        print("\n".join(commands) + "\n")
    print(spelled(c, checklist.render(results)))
    code = checklist.exit_code(results)
    if code:
        raise Exit(code=code)


@dlt_task(help={
    "no_gpu": "CPU-only machine: skip the driver, toolkit, GPU and CUDA checks.",
    "min_shm": "The /dev/shm size a run needs (default 1g).",
    "min_free": "Free disk space wanted where the engine keeps images (default 20g).",
})
def doctor(c: Any, no_gpu: bool = False, min_shm: str = "1g", min_free: str = "20g") -> None:
    """Diagnose this host read-only: engine, driver, toolkit, GPU, CUDA, /dev/shm, disk, image."""
    from dltasks.errors import DltError
    from dltasks.hostsetup import doctor as dr
    from dltasks.hostsetup.facts import gather_setup_facts
    from dltasks.hostsetup.probes import doctor_facts

    try:
        shm_need, free_need = dr.parse_size(min_shm), dr.parse_size(min_free)
    except ValueError as e:
        raise DltError(f"{e}: write sizes like 512m or 16g") from None
    with target_for(c) as t:
        facts = doctor_facts(t, gather_setup_facts(t.shell), gpu_checks=not no_gpu,
                             shm_need=shm_need)
    findings = dr.diagnose(facts, min_free=free_need)
    print(spelled(c, dr.render(findings)))
    code = dr.exit_code(findings)
    if code:
        raise Exit(code=code)
