"""Read-only probes of a target for setup and doctor: engine info, short-lived containers.

Every container made here is labelled ``dltasks.probe=1`` and removed again, whatever happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dltasks.engine.client import try_connect as connect
from dltasks.errors import DltError
from dltasks.hostsetup.doctor import GIB, DoctorFacts, parse_df, shm_of_df
from dltasks.hostsetup.engine import restart_command, start_command
from dltasks.hostsetup.facts import SetupFacts

if TYPE_CHECKING:
    import docker

    from dltasks.engine.api import Engine
    from dltasks.gpu.modes import GpuAccess
    from dltasks.hosts.target import Target
    from dltasks.settings import Settings

PROBE_LABEL = "dltasks.probe"


@dataclass(frozen=True)
class Ran:
    """A finished probe container: its exit code (None: it never started) and output."""

    code: int | None
    output: str

    @property
    def ok(self) -> bool:
        return self.code == 0


def run_once(target: Target, image: str, command: list[str], *, gpus: bool = False,
             shm_size: str = "", ipc_host: bool = False, timeout: int = 120,
             access: GpuAccess | None = None) -> Ran:
    """One short-lived container through the one lifecycle (dltasks.engine.lifecycle.container):
    created, started, read, waited for and removed, whatever happens. With ``gpus`` it gets
    every GPU the way a run would (``access``, when already decided)."""
    from dltasks.engine.lifecycle import run_captured
    from dltasks.engine.spec import RunSpec
    from dltasks.gpu.selection import ALL, NONE, GpuSelection

    spec = RunSpec(image=image, command=tuple(command), gpus=GpuSelection(ALL if gpus else NONE),
                   workdir="/", ipc_host=ipc_host, shm_size=shm_size, init=False,
                   labels={PROBE_LABEL: "1"})
    try:
        if gpus:  # the GPUs come the way a run's would (runtime, CDI or the driver itself)
            from dltasks.gpu.modes import access_for, apply_access

            access = access or access_for(target, spec.gpus, tolerant=True)
            if access.mode == "none":  # no way to give the GPUs: why, as the probe's answer
                return Ran(None, access.why)
            spec = apply_access(spec, access, {})
        code, output = run_captured(target, spec, timeout=timeout)
    except DltError as e:  # the engine's own words, where it refused: doctor reads them
        return Ran(None, getattr(e, "engine_text", "") or e.message)
    return Ran(code, output)


def local_image(client: docker.DockerClient, candidates: list[str]) -> str:
    """The first of ``candidates`` the engine has, "" when none."""
    import docker.errors

    for ref in candidates:
        if not ref:
            continue
        try:
            client.images.get(ref)
            return ref
        except docker.errors.ImageNotFound:
            continue
        except docker.errors.APIError:
            continue
    return ""


def probe_images(settings: Settings) -> list[str]:
    """Where to run probes: the configured image, the project image, then the base image."""
    return [settings.image, f"{settings.project_image}:latest", settings.base_image]


def gpu_probe(target: Target, image: str, access: GpuAccess | None = None) -> Ran:
    """``nvidia-smi`` in a container with all GPUs requested (the runtime mounts it in)."""
    return run_once(target, image, ["nvidia-smi"], gpus=True, timeout=60, access=access)


def nvml_broken_containers(client: docker.DockerClient) -> tuple[str, ...]:
    """Running containers that were given GPUs but whose NVML no longer initialises."""
    import docker.errors

    out = []
    for c in client.containers.list(ignore_removed=True)[:20]:
        if not (c.attrs.get("HostConfig") or {}).get("DeviceRequests"):
            continue
        try:
            code, data = c.exec_run(["nvidia-smi", "-L"])
        except docker.errors.APIError:
            continue
        if "Failed to initialize NVML" in data.decode(errors="replace"):
            out.append(c.name)
    return tuple(out)


def stale_reason(engine: Engine, settings: Settings) -> str | None:
    """"" when ``<project>:<hash>`` exists for today's inputs, else why not; None: unknown.

    Computes the hash exactly as extend-image does (dltasks.images.build and
    dltasks.images.dockerfile), without building or pulling anything."""
    try:
        from dltasks.images import dockerfile as df
        from dltasks.images.build import extend_spec
    except ImportError:
        return None
    try:
        spec = extend_spec(settings)
    except Exception as e:  # noqa: BLE001 - a DltError about the project's own files
        return str(e)
    base_id = engine.image_id(spec.base_image)
    if base_id is None:
        return None
    want = f"{settings.project_image}:{df.plan(spec, base_id).tag}"
    if engine.image_id(want):
        return ""
    if engine.image_id(f"{settings.project_image}:latest"):
        return (f"{settings.project_image}:latest was built from other inputs (requirements, "
                f"packages or base image changed; today's inputs make {want})")
    return f"no project image yet (today's inputs make {want})"


def doctor_facts(target: Target, host: SetupFacts, *, gpu_checks: bool,
                 shm_need: int = GIB) -> DoctorFacts:
    """Everything :func:`diagnose` needs, gathered without changing the host."""
    s = target.settings
    base = DoctorFacts(engine_url=target.endpoint.url, engine_source=_source(target),
                       dockerd_found=host.dockerd_found,
                       start_command=start_command(host.init),
                       restart_command=restart_command(host.init),
                       user=host.user, in_docker_group=_in_group_file(target, host.user),
                       is_root=host.is_root, daemon_json=host.daemon_json,
                       ctk_version=host.ctk_version, gpu_checks=gpu_checks,
                       driver=host.driver if host.nvidia_smi_found else None,
                       smi_error="" if host.nvidia_smi_ok else host.nvidia_smi_out,
                       shm_need=shm_need)
    client, why = connect(target.engine_addr)
    if client is None:
        return _replace(base, engine_error=why or "no answer")
    try:
        info = client.info()
        root = str(info.get("DockerRootDir") or "")
        df = target.shell.run(["df", "-Pk", root]) if root else None
        disk = parse_df(df.stdout) if df is not None and df.ok else None
        image = local_image(client, probe_images(s))
        env: dict[str, str] = {}
        if image:
            for item in client.images.get(image).attrs.get("Config", {}).get("Env") or []:
                k, _, v = item.partition("=")
                env[k] = v
        access = _gpu_access(target) if gpu_checks else None
        probe = gpu_probe(target, image, access) if gpu_checks and image else None
        shm = None
        mode = f"--shm-size={s.shm_size}" if s.shm_size else "--ipc=host"
        if image:
            ran = run_once(target, image, ["df", "-Pk", "/dev/shm"], shm_size=s.shm_size,
                           ipc_host=not s.shm_size, timeout=60)
            shm = shm_of_df(ran.output) if ran.ok else None
        return _replace(
            base, gpu_mode=access.mode if access else "", gpu_mode_why=access.why if access else "",
            engine_version=str(info.get("ServerVersion") or ""),
            runtimes=tuple(sorted((info.get("Runtimes") or {}).keys())),
            docker_root_dir=root, disk_free=disk[1] if disk else None,
            gpu_probe=probe.output if probe is not None else None,
            gpu_probe_ok=bool(probe and probe.ok),
            nvml_broken=nvml_broken_containers(client) if gpu_checks else (),
            image=image, image_is_project=image == f"{s.project_image}:latest",
            image_env=env, shm_bytes=shm, shm_mode=mode,
            stale=stale_reason(target.engine, s))
    finally:
        client.close()


def _gpu_access(target: Target) -> GpuAccess:
    """How a run with every GPU would get them, and why (``none`` with the reason when none
    can be had)."""
    from dltasks.gpu.modes import GpuAccess, access_for
    from dltasks.gpu.selection import ALL, NONE, GpuSelection

    try:
        return access_for(target, GpuSelection(ALL), tolerant=True)
    except DltError as e:
        return GpuAccess(GpuSelection(NONE), NONE, e.message)


def _source(target: Target) -> str:
    """Why that engine, as `doctor` and `config` say it."""
    return target.endpoint.source + target.on_host


def _in_group_file(target: Target, user: str) -> bool:
    """Whether /etc/group lists ``user`` in docker (their session may not have it yet)."""
    if not user:
        return False
    r = target.shell.run(["getent", "group", "docker"])
    members = r.stdout.strip().rpartition(":")[2].split(",") if r.ok else []
    return user in members


def _replace(f: DoctorFacts, **changes: Any) -> DoctorFacts:
    import dataclasses

    return dataclasses.replace(f, **changes)
