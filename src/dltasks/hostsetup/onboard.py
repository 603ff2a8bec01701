"""`inv setup`: the onboarding checklist, one idempotent step after another.

Each step looks first and acts only when the host is not as wanted, so a second run reports
``ok`` everywhere and changes nothing. A step that cannot run because an earlier one failed
says so instead of failing again.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from dltasks.engine.client import try_connect as connect
from dltasks.errors import DltError
from dltasks.hostsetup import apply
from dltasks.hostsetup import checklist as cl
from dltasks.hostsetup import engine as eng
from dltasks.hostsetup.doctor import why_unreachable
from dltasks.hostsetup.facts import SetupFacts, driver_hint
from dltasks.hostsetup.probes import gpu_probe, local_image, probe_images, stale_reason
from dltasks.hostsetup.toolkit import Command

if TYPE_CHECKING:
    from dltasks.hosts.target import Target


@dataclass
class SetupOptions:
    gpu: bool = True
    dry_run: bool = False
    load: Sequence[str] = ()  # image archives (`docker save`) to load before the project image
    toolkit: apply.ToolkitRequest = field(default_factory=apply.ToolkitRequest)


@dataclass
class _State:
    target: Target
    opts: SetupOptions
    out: TextIO
    host: SetupFacts
    engine_ok: bool = False
    driver_ok: bool = False


def _cmds(plan: Sequence[Command]) -> list[str]:
    return [c.cmd for c in plan]


def _engine(st: _State) -> cl.StepResult:
    name, url, addr = "docker engine", st.target.endpoint.url, st.target.engine_addr

    # the host's own engine (locally the default socket; remotely the forwarded one) is ours to
    # install and start; an engine elsewhere (DLT_DOCKER_HOST=tcp://..., another socket) is not
    local_socket = st.target.engine_is_hosts_own
    if not st.host.dockerd_found and local_socket:
        plan = apply.engine_install_plan(st.host)
        if st.opts.dry_run:
            return cl.planned(name, "would install the engine from the distribution and "
                              "start it", _cmds(plan))
        install = plan[:-1]
        apply.run_plan(st.target.shell, install, out=st.out)
        # the package may have started it already; else start it the way the host now can
        # (installing docker.io adds /etc/init.d/docker on hosts without systemd)
        st.host = apply.refresh(st.target)
        ran = _cmds(install)
        why = apply.wait_for_engine(addr, 5)
        if why:
            why, started = _start(st)
            ran += started
        if why:
            return cl.failed(name, f"installed, but it does not answer at {url}: {why}",
                             f"see {eng.DOCKERD_LOG} or `journalctl -u docker`")
        st.engine_ok = True
        return cl.changed(name, f"installed from the distribution and started ({url})", ran)
    client, why = connect(addr)
    if client is not None:
        version = str(client.version().get("Version", ""))
        client.close()
        st.engine_ok = True
        return cl.ok(name, f"Docker {version} answers at {url}")
    if "permission denied" in why.lower():
        return cl.failed(name, f"permission denied on {url}",
                         "see the docker group step, then " + eng.RELOGIN_HINT)
    if not local_socket:
        return cl.failed(name, f"cannot reach {url}: {why_unreachable(why)}",
                         "start the engine on that host, or fix DLT_DOCKER_HOST")
    if st.opts.dry_run:
        return cl.planned(name, "would start the engine", _cmds(apply.engine_start_plan(st.host)))
    why, ran = _start(st)
    if why:
        return cl.failed(name, f"started, but it does not answer at {url}: {why}",
                         f"see {eng.DOCKERD_LOG} or `journalctl -u docker`")
    st.engine_ok = True
    return cl.changed(name, f"started ({url})", ran)


def _start(st: _State) -> tuple[str, list[str]]:
    """Start the engine the host's way; where that fails without systemd (an init script
    that cannot raise ulimits in a container, say), run dockerd itself in the background.
    Returns (why it still does not answer or "", the commands run)."""
    addr = st.target.engine_addr
    plan = apply.engine_start_plan(st.host)
    ran = _cmds(plan)
    try:
        apply.run_plan(st.target.shell, plan, out=st.out)
        why = apply.wait_for_engine(addr, 30)
    except DltError as e:
        why = e.message
    if why and st.host.init == eng.SYSV:
        direct = Command("start dockerd directly (the init script did not start it)",
                         eng.start_command(eng.NONE))
        apply.run_plan(st.target.shell, [direct], out=st.out)
        ran.append(direct.cmd)
        why = apply.wait_for_engine(addr, 60)
    return why, ran


def _group(st: _State) -> cl.StepResult:
    name = "docker group"
    # under `sudo inv setup` the account to add is the one that ran sudo, not root
    user = st.host.sudo_user if st.host.is_root else st.host.user
    if not user or user == "root":
        return cl.ok(name, "running as root (no group needed)")
    members = st.target.shell.run(["getent", "group", "docker"]).stdout
    listed = user in members.strip().rpartition(":")[2].split(",")
    if listed and (st.host.in_docker_group or st.host.is_root):
        return cl.ok(name, f"{user} is in the docker group")
    if listed:
        return cl.failed(name, f"{user} is in the docker group, but this login predates it",
                         eng.RELOGIN_HINT)
    cmd = eng.group_command(user)
    if st.opts.dry_run:
        return cl.planned(name, f"would add {user} to the docker group", [cmd.cmd])
    apply.run_plan(st.target.shell, [cmd], out=st.out)
    return cl.StepResult(name, cl.StepStatus.CHANGED, f"added {user}; {eng.RELOGIN_HINT}",
                         hint=eng.RELOGIN_HINT, commands=(cmd.cmd,))


def _driver(st: _State) -> cl.StepResult:
    name = "nvidia driver"
    if not st.opts.gpu:
        return cl.skipped(name, "--no-gpu")
    if st.host.nvidia_smi_ok:
        st.driver_ok = True
        d = st.host.driver
        return cl.ok(name, f"driver {d.driver_version}, CUDA {d.cuda_version}")
    what = "not found" if not st.host.nvidia_smi_found else "nvidia-smi fails"
    os_id = ""
    try:
        os_id = st.host.os.id
    except DltError:
        pass
    return cl.failed(name, f"{what} (`nvidia-smi`)", driver_hint(os_id) +
                     "; or pass --no-gpu on a CPU-only machine")


def _toolkit(st: _State) -> cl.StepResult:
    name = "nvidia toolkit"
    if not st.opts.gpu:
        return cl.skipped(name, "--no-gpu")
    if not st.driver_ok:
        return cl.skipped(name, "needs the NVIDIA driver first")
    mode = st.target.settings.gpu_mode
    if mode in ("cdi", "direct"):
        return cl.skipped(name, f"DLT_GPU_MODE={mode}: runs get GPUs without the toolkit")
    try:
        plan = apply.toolkit_plan_for(st.target, st.host, st.opts.toolkit)
    except DltError as e:
        return _without_toolkit(st, name, "cannot plan the install", e.message)
    if not plan:
        return cl.ok(name, f"{st.host.ctk_version} installed, docker runtime configured")
    if st.opts.dry_run:
        return cl.planned(name, f"would run {len(plan)} command(s)", _cmds(plan))
    try:
        apply.install_toolkit(st.target, plan, st.host, out=st.out)
    except DltError as e:
        return _without_toolkit(st, name, "install failed", e.message)
    st.host = apply.refresh(st.target)
    return cl.changed(name, f"installed {st.host.ctk_version} and configured Docker",
                      _cmds(plan))


def _without_toolkit(st: _State, name: str, what: str, why: str) -> cl.StepResult:
    """The toolkit cannot be had here (no network to NVIDIA's repository, an unsupported
    system): where the host's driver or a CDI spec can give GPUs instead, say so and go on."""
    from dltasks.gpu.modes import gather_host_gpus

    if st.target.settings.gpu_mode != "auto":
        return cl.failed(name, what, why)
    try:
        found = gather_host_gpus(st.target, st.target.settings)
    except DltError:
        return cl.failed(name, what, why)
    if found.spec is not None:
        how = f"runs use the CDI spec ({', '.join(found.spec.files)})"
    elif found.driver.found:
        how = (f"runs use the host's driver directly ({len(found.driver.gpus)} GPU(s), driver "
               f"{found.driver.version or '?'}; `inv gpu-spec` writes a CDI spec of it)")
    else:
        return cl.failed(name, what, why)
    return cl.skipped(name, f"not installed ({why.split(':')[0]}); {how}")


def _gpu_container(st: _State) -> cl.StepResult:
    name = "gpu in container"
    if not st.opts.gpu:
        return cl.skipped(name, "--no-gpu")
    if not st.driver_ok:
        return cl.skipped(name, "needs the NVIDIA driver first")
    if not st.engine_ok:
        return cl.skipped(name, "needs the engine first")
    client, why = connect(st.target.engine_addr)
    if client is None:
        return cl.failed(name, why)
    try:
        image = local_image(client, probe_images(st.target.settings))
        if not image:
            return cl.skipped(name, "no image yet to test in (rerun after the image step)")
        if st.opts.dry_run and "nvidia" not in client.info().get("Runtimes", {}):
            return cl.planned(name, "would run nvidia-smi in a container after the toolkit")
        ran = gpu_probe(st.target, image)
    finally:
        client.close()
    if ran.ok:
        return cl.ok(name, f"nvidia-smi runs in {image}")
    return cl.failed(name, " ".join(ran.output.split())[:160],
                     "run `inv doctor` for the cause and its fix")


def _load(st: _State) -> cl.StepResult:
    name = "load images"
    if not st.engine_ok:
        return cl.skipped(name, "needs the engine first")
    client, why = connect(st.target.engine_addr)
    if client is None:
        return cl.failed(name, why)
    loaded: list[str] = []
    try:
        for path in st.opts.load:
            tags = archive_tags(path)
            if tags and all(local_image(client, [t]) == t for t in tags):
                continue
            if st.opts.dry_run:
                loaded.append(path)
                continue
            with open(path, "rb") as f:
                for image in client.images.load(f):
                    loaded += image.tags
    except (OSError, DltError) as e:
        return cl.failed(name, f"cannot load {path}", str(e))
    finally:
        client.close()
    if not loaded:
        return cl.ok(name, "every image in the archives is present")
    if st.opts.dry_run:
        return cl.planned(name, f"would load {', '.join(loaded)}")
    return cl.changed(name, f"loaded {', '.join(loaded)}")


def archive_tags(path: str) -> list[str]:
    """The RepoTags of a `docker save` archive (from its manifest.json)."""
    import json
    import tarfile

    try:
        with tarfile.open(path) as tar:
            member = tar.extractfile("manifest.json")
            data = json.load(member) if member else []
    except (OSError, KeyError, tarfile.TarError, ValueError) as e:
        raise DltError(f"{path} is not a `docker save` archive ({e})") from None
    return [t for entry in data for t in (entry.get("RepoTags") or [])]


def _image(st: _State) -> cl.StepResult:
    name = "project image"
    if not st.engine_ok:
        return cl.skipped(name, "needs the engine first")
    s = st.target.settings
    try:
        stale = stale_reason(st.target.engine, s)
    except DltError as e:
        return cl.failed(name, str(e))
    if stale == "":
        return cl.ok(name, f"{s.project_image}:latest is up to date")
    if st.opts.dry_run:
        return cl.planned(name, "would build it (extend-image): "
                          f"{stale or 'its base image is not local yet'}")
    from dltasks.images.build import ensure_project_image

    try:
        ref = ensure_project_image(st.target, s, out=st.out)
    except DltError as e:
        hint = e.message
        if "neither local nor pullable" in hint:
            hint += "; or load one saved elsewhere: `inv setup --load base.tar` (`docker save`)"
        return cl.failed(name, "cannot build the project image", hint)
    return cl.changed(name, f"built {ref}")


def _dotenv(st: _State) -> cl.StepResult:
    name = ".env"
    path = Path(st.target.settings.project_dir) / ".env"
    if path.exists():
        return cl.ok(name, f"{path} exists")
    if st.opts.dry_run:
        return cl.planned(name, f"would write {path} from env.example")
    from dltasks.settings import env_example

    path.write_text(env_example() + "\n", encoding="utf-8")
    return cl.changed(name, f"wrote {path} from env.example (every key commented out)")


Step = Callable[[_State], cl.StepResult]


def run_setup(target: Target, opts: SetupOptions, *, out: TextIO | None = None,
              on_result: Callable[[cl.StepResult], None] | None = None) -> list[cl.StepResult]:
    """Run every step in order and return their results (the caller renders the table)."""
    out = out or sys.stdout
    st = _State(target, opts, out, apply.refresh(target))
    steps: list[tuple[str, Step]] = [("docker engine", _engine), ("docker group", _group),
                                     ("nvidia driver", _driver), ("nvidia toolkit", _toolkit)]
    if opts.load:
        steps.append(("load images", _load))
    steps += [("project image", _image), ("gpu in container", _gpu_container), (".env", _dotenv)]
    results = []
    for name, step in steps:
        try:
            r = step(st)
        except (DltError, OSError) as e:
            r = cl.failed(name, "could not finish", str(e))
        results.append(r)
        if on_result:
            on_result(r)
    return results
