"""Settings: one typed object, resolved from five layers, each value remembering where it came from.

Lowest to highest: built-in defaults, invoke/fabric config files (the ``dlt:`` section), the
project's ``.env`` (then ``.env.<host>`` for a remote target), the process environment
(``DLT_*``), command-line flags. Every key is declared once, as a field of :class:`Settings`
whose metadata carries its documentation; ``env.example``, ``inv config`` and validation all
read that one declaration.

Lines of ``.env`` whose key does not start with ``DLT_`` are not settings: they are the
environment given to the container (see :attr:`Settings.container_env`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dltasks.errors import SettingsError
from dltasks.gpu.selection import GPU_MODES
from dltasks.settings.masking import mask

PREFIX = "DLT_"
#: Variables that are not settings, and so no mistyped keys: DLT_RUN_ID, which dltasks gives
#: every container (a `dlt` run inside one sees it), and DLT_WARM, which turned off a warm
#: start that is gone (a shell that still exports it must not break every command).
RUNTIME_VARS = frozenset({"DLT_RUN_ID", "DLT_WARM"})
DEFAULT, CONFIG, DOTENV, ENVIRON, FLAG = "default", "config", ".env", "environment", "flag"

_KINDS = ("str", "path", "int", "bool", "list", "size")


def _key(default: Any, kind: str, doc: str, secret: bool = False,
         choices: tuple[str, ...] = ()) -> Any:
    assert kind in _KINDS
    return field(default=default, metadata={"doc": doc, "kind": kind, "secret": secret,
                                            "choices": choices})


@dataclass(frozen=True)
class Settings:
    """Everything a task needs to know about the project and how to run it."""

    project: str = _key("", "str", "Project name: the image repository and the run labels. "
                        "Default: the project folder's name.")
    base_image: str = _key("pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime", "str",
                           "Image that extend-image starts FROM (any local or pullable image; "
                           "`inv base-image` makes one with no registry).")
    image: str = _key("", "str", "Image to run. Default: the project image made by extend-image "
                      "(<project>:latest), brought up to date before each run.")
    dockerfile: str = _key("Dockerfile", "path", "Dockerfile for `inv build` (relative to the "
                           "build context).")
    requirements: str = _key("requirements.txt", "path", "pip requirements file baked into the "
                             "project image (ignored when the default file does not exist).")
    apt_packages: tuple[str, ...] = _key((), "list", "Debian/Ubuntu packages added to the "
                                         "project image, comma-separated.")
    pip_packages: tuple[str, ...] = _key((), "list", "pip packages added to the project image, "
                                         "comma-separated (requirement specifiers).")
    ca_bundle: str = _key("", "path", "CA bundle (PEM) that pip and apt trust during builds, for "
                          "TLS-inspecting proxies; it stays in the image at "
                          "/etc/dltasks/ca-bundle.crt.")
    workdir: str = _key("/workspace", "str", "Container path of the project code (the working "
                        "directory of every run).")
    data_dir: str = _key("", "path", "Host folder mounted read-only at /data.")
    output_dir: str = _key("", "path", "Host folder mounted read-write at /outputs.")
    mounts: tuple[str, ...] = _key((), "list", "Extra mounts, host:container[:ro], "
                                   "comma-separated.")
    configs: tuple[str, ...] = _key(("*.yaml", "*.yml", "*.json", "*.toml", "*.ini", "*.cfg",
                                     "configs/**/*"), "list",
                                    "Globs (relative to the project) of config files whose host "
                                    "paths are rewritten for the container.")
    train_cmd: str = _key("python main.py", "str", "Command `inv train` runs in the container.")
    gpus: str = _key("auto", "str", "GPUs for runs: free:N (N GPUs no other run holds, "
                     "picked under the host's GPU lock), ids like 0,1, all, none, or auto (all "
                     "when the host has GPUs, else none). Ids, all and auto are refused when "
                     "another dltasks run holds one of those GPUs (or a process uses it): on a "
                     "shared server set free:1.")
    gpu_mode: str = _key("auto", "str", "How GPUs get into containers: runtime (the NVIDIA "
                         "Container Toolkit's runtime), cdi (a CDI spec), direct (the host's "
                         "driver, found by dltasks: no toolkit needed), or auto (runtime if the "
                         "engine has it, else a CDI spec, else the driver).",
                         choices=GPU_MODES)
    nproc: str = _key("", "str", "Start the command with torchrun, this many processes per node: "
                      "gpu (one per selected GPU) or a number. Empty: no launcher.")
    hosts: tuple[str, ...] = _key((), "list", "Hosts of a multi-host job started from here "
                                  "(`inv train --nnodes 2`), node 0 first. With fab: -H.")
    master_addr: str = _key("", "str", "Node 0's address as the other nodes of a job reach it. "
                            "Default: the source address of node 0's route to node 1.")
    master_port: int = _key(0, "int", "The job's rendezvous port on node 0. Default: the first "
                            "free port from 29500.")
    rendezvous: str = _key("static", "str", "How a job's nodes meet: static (ranks in host "
                           "order) or c10d (torchrun's dynamic rendezvous, --rdzv-id = job id).",
                           choices=("static", "c10d"))
    job_image: str = _key("copy", "str", "A job host without node 0's image: copy it there "
                          "(docker save | docker load over SSH) or build it there.",
                          choices=("copy", "build"))
    slurm_nodes: int = _key(1, "int", "train --slurm: nodes of the job.")
    slurm_gpus_per_node: int = _key(0, "int", "train --slurm: GPUs per node (#SBATCH "
                                    "--gpus-per-node, or --gres=gpu:G with DLT_SLURM_GRES).")
    slurm_gres: bool = _key(False, "bool", "train --slurm: ask for GPUs as --gres=gpu:G (for "
                            "clusters whose Slurm wants GRES).")
    slurm_partition: str = _key("", "str", "train --slurm: the partition. Default: the "
                                "cluster's.")
    slurm_time: str = _key("", "str", "train --slurm: the time limit (e.g. 4:00:00).")
    slurm_account: str = _key("", "str", "train --slurm: the account to charge.")
    slurm_qos: str = _key("", "str", "train --slurm: the QOS.")
    slurm_sbatch: tuple[str, ...] = _key((), "list", "train --slurm: more #SBATCH options, "
                                         "KEY=VALUE,... (e.g. mem=64G,exclusive).")
    slurm_runtime: str = _key("docker", "str", "train --slurm: how the nodes run the image: "
                              "pyxis (srun --container-image), apptainer (a SIF file), or "
                              "docker (users in the docker group; the last resort).",
                              choices=("docker", "pyxis", "apptainer"))
    slurm_image: str = _key("", "str", "train --slurm: the image as the runtime wants it, "
                            "passed as is (an enroot .sqsh file or registry reference such as "
                            "nvcr.io#nvidia/pytorch:24.05-py3 for pyxis, a .sif file or "
                            "docker:// URI for apptainer, an image name for docker). Default: "
                            "the project image; for pyxis and apptainer a file made from it on "
                            "the login host (enroot import / apptainer build), once per image "
                            "ID, in DLT_SLURM_IMAGE_DIR.")
    slurm_image_dir: str = _key("", "str", "train --slurm: where the pyxis/apptainer image "
                                "files made from the project image are kept, on the cluster's "
                                "shared filesystem. Relative: to the project's folder on the "
                                "login host; ~/: to the login's home there. Default: "
                                "runs/.images in the project's folder.")
    gpu_free_mib: int = _key(1024, "int", "A GPU with more memory in use than this (MiB), or "
                             "with any compute process, is busy: --gpu free:N skips it and "
                             "--gpu IDS refuses it without --share. -1: count processes only.")
    nvidia_smi: str = _key("", "str", "nvidia-smi on the target host, for picking free GPUs and "
                           "`inv gpus`. Default: the one on PATH, else "
                           "/usr/local/nvidia/bin/nvidia-smi.")
    cdi_spec_dirs: tuple[str, ...] = _key((), "list", "Folders of CDI specs on the target host, "
                                          "comma-separated. Default: /etc/cdi,/var/run/cdi.")
    driver_root: str = _key("/", "str", "Where the NVIDIA driver's files are on the target host "
                            "(e.g. /run/nvidia/driver); they are mounted at their paths under "
                            "it.")
    shm_size: str = _key("", "size", "Size of /dev/shm (e.g. 16g). Default: share the host's "
                         "IPC namespace (--ipc=host).")
    env: tuple[str, ...] = _key((), "list", "Names of process environment variables passed to "
                                "the container (besides the non-DLT_ lines of .env).")
    stop_timeout: int = _key(10, "int", "Seconds a stopped run gets to exit before it is "
                             "killed.")
    docker_host: str = _key("", "str", "Engine URL (e.g. unix:///var/run/docker.sock, "
                            "tcp://host:2376). Default: as the docker CLI chooses: DOCKER_HOST "
                            "(with DOCKER_TLS_VERIFY/DOCKER_CERT_PATH), DOCKER_CONTEXT, the "
                            "current context of ~/.docker/config.json, the local socket; on a "
                            "remote host, its user's.")
    engine_timeout: int = _key(120, "int", "Seconds to wait for the engine's answer to one "
                               "call (not for a run's output).")
    lock_timeout: int = _key(60, "int", "Seconds a GPU run waits for the host's GPU lock "
                             "(held while another run picks its GPUs and starts) before giving "
                             "up with the holder's name.")
    remote_dir: str = _key("~/dltasks/{project}", "str", "Folder on a remote host that `sync` "
                           "mirrors the project into.")
    sudo_password: str = _key("", "str", "Password for sudo on the target host, when it asks "
                              "for one.", secret=True)
    accept_new_host_key: bool = _key(False, "bool", "Accept (and add to ~/.ssh/known_hosts) the "
                                     "key of a remote host never seen before, like ssh's "
                                     "accept-new; a changed key is always refused.")

    # Not keys: where the settings were resolved, and what else came with them.
    project_dir: Path = field(default=Path("."), metadata={})
    sources: Mapping[str, str] = field(default_factory=dict, metadata={})
    container_env: Mapping[str, str] = field(default_factory=dict, metadata={})

    @property
    def project_image(self) -> str:
        """The repository extend-image tags (``<project>:<hash>`` and ``<project>:latest``)."""
        return self.project

    def path(self, value: str) -> Path:
        """A path setting as an absolute local path (``~`` expanded, relative to the project)."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.project_dir / p)

    def source(self, name: str) -> str:
        return self.sources.get(name, DEFAULT)

    def is_default(self, name: str) -> bool:
        return self.source(name) == DEFAULT

    def rows(self) -> list[tuple[str, str, str]]:
        """(KEY, value as text with secrets masked, source) for every key, for `inv config`."""
        out = []
        for k in KEYS:
            text = format_value(getattr(self, k.name))
            out.append((k.env, mask(text) if k.secret and text else text, self.source(k.name)))
        return out


@dataclass(frozen=True)
class Key:
    """One setting's declaration, read off the :class:`Settings` fields."""

    name: str
    default: Any
    kind: str
    doc: str
    secret: bool
    choices: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        return PREFIX + self.name.upper()


KEYS: tuple[Key, ...] = tuple(
    Key(f.name, f.default, f.metadata["kind"], f.metadata["doc"], f.metadata["secret"],
        f.metadata["choices"])
    for f in dataclasses.fields(Settings)
    if f.metadata
)
_BY_NAME = {k.name: k for k in KEYS}
_BY_ENV = {k.env: k for k in KEYS}


def format_value(value: Any) -> str:
    """A typed value as it would be written in ``.env``."""
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_SIZE = re.compile(r"^\d+(\.\d+)?\s*([bkmgt]i?b?)?$", re.IGNORECASE)
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def parse_value(key: Key, raw: Any, where: str) -> Any:
    """Turn a raw value (text from .env/environment, or YAML data from config) into its type."""
    if key.kind == "list":
        if isinstance(raw, (list, tuple)):
            return tuple(str(x).strip() for x in raw if str(x).strip())
        return tuple(x.strip() for x in str(raw).split(",") if x.strip())
    if key.kind == "int":
        try:
            return int(str(raw).strip())
        except ValueError:
            raise SettingsError(f"{key.env}={raw!r} ({where}): expected a whole number, "
                                f"e.g. {key.env}={key.default}") from None
    if key.kind == "bool":
        text = str(raw).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise SettingsError(f"{key.env}={raw!r} ({where}): expected true or false")
    text = str(raw).strip()
    if key.choices and text.lower() not in key.choices:
        raise SettingsError(f"{key.env}={raw!r} ({where}): expected one of "
                            f"{', '.join(key.choices)}")
    if key.choices:
        return text.lower()
    if key.kind == "size" and text and not _SIZE.match(text):
        raise SettingsError(f"{key.env}={raw!r} ({where}): expected a size like 512m or 16g")
    return text


def _unknown(name: str, where: str) -> SettingsError:
    names = [k.env for k in KEYS]
    import difflib

    near = difflib.get_close_matches(name.upper(), names, n=1, cutoff=0.5)
    hint = f"; did you mean {near[0]}?" if near else f"; `inv config` lists the {len(names)} keys"
    return SettingsError(f"unknown setting {name} ({where}){hint}")


# ---------------------------------------------------------------------------------------------
# .env files


@dataclass(frozen=True)
class DotEnvLine:
    key: str
    value: str
    line: int


def read_dotenv(path: Path) -> list[DotEnvLine]:
    """Parse a .env file with python-dotenv, refusing malformed lines with ``file:line``."""
    from dotenv.parser import parse_stream

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SettingsError(f"{path}: not UTF-8 text ({e.reason}); save it as UTF-8") from None
    out = []
    import io

    for b in parse_stream(io.StringIO(text)):
        raw = b.original.string
        line = b.original.line + (len(raw) - len(raw.lstrip("\n"))) if raw.strip() else 0
        if b.error:
            first = b.original.string.strip().splitlines()[0] if b.original.string.strip() else ""
            raise SettingsError(f"{path}:{line}: cannot parse {first!r}; write KEY=value")
        if b.key is None:
            continue
        if b.value is None:
            raise SettingsError(f"{path}:{line}: {b.key} has no value; write {b.key}=value")
        out.append(DotEnvLine(b.key, b.value, line))
    return out


# ---------------------------------------------------------------------------------------------
# resolution


def default_project_name(project_dir: Path) -> str:
    """A folder name made fit for a Docker repository name."""
    name = re.sub(r"[^a-z0-9._-]+", "-", project_dir.resolve().name.lower())
    name = re.sub(r"[._-]{2,}", "-", name).strip("-._")
    return name or "project"


_REPO = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")  # Docker's repository rule


def resolve(
    project_dir: Path,
    *,
    config: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    host: str | None = None,
) -> Settings:
    """Resolve every key from its five layers. Pure apart from reading the .env files."""
    project_dir = Path(os.path.abspath(project_dir))  # keep a symlink's spelling: both map
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    container_env: dict[str, str] = {}

    def put(name: str, raw: Any, source: str) -> None:
        values[name] = parse_value(_BY_NAME[name], raw, source)
        sources[name] = source

    for name, raw in (config or {}).items():
        key = str(name).replace("-", "_").lower()
        if key.upper().startswith(PREFIX):
            key = key[len(PREFIX):]
        if key not in _BY_NAME:
            raise _unknown(PREFIX + key.upper(), "invoke/fabric config, section dlt")
        put(key, raw, CONFIG)

    envfiles = [project_dir / ".env"] + ([project_dir / f".env.{host}"] if host else [])
    for envfile in envfiles:
        if not envfile.is_file():
            continue
        for item in read_dotenv(envfile):
            where = f"{envfile.name}:{item.line}"
            if item.key.startswith(PREFIX):
                if item.key not in _BY_ENV:
                    raise _unknown(item.key, where)
                put(_BY_ENV[item.key].name, item.value, where)
            else:
                container_env[item.key] = item.value

    for name, raw in environ.items():
        if name.startswith(PREFIX) and name not in RUNTIME_VARS:
            if name not in _BY_ENV:
                raise _unknown(name, "process environment")
            put(_BY_ENV[name].name, raw, ENVIRON)

    for name, raw in (flags or {}).items():
        if raw is None or raw == () or raw == []:
            continue
        put(name, raw, FLAG)

    if not values.get("project"):
        values["project"] = default_project_name(project_dir)
    if not _REPO.match(values["project"]):
        raise SettingsError(f"DLT_PROJECT={values['project']!r} "
                            f"({sources.get('project', DEFAULT)}): "
                            "use lowercase letters, digits and . _ - (a Docker repository name)")
    values["remote_dir"] = str(values.get("remote_dir", _BY_NAME["remote_dir"].default)).replace(
        "{project}", values["project"])
    for name in values.get("env", ()):
        if name in environ:
            container_env[name] = environ[name]

    return Settings(**values, project_dir=project_dir, sources=sources,
                    container_env=container_env)


def env_example() -> str:
    """The text of ``env.example``: every key, its documentation and its default."""
    lines = [
        "# dltasks settings. Copy to .env and uncomment what you change.",
        "# Precedence, lowest to highest: these defaults, invoke/fabric config (section dlt),",
        "# .env (then .env.<host> for `fab -H <host>`), DLT_* in the environment, flags.",
        "# Lines whose key does not start with DLT_ are passed to the container as environment.",
        "",
    ]
    for k in KEYS:
        lines.append(f"# {k.doc}")
        lines.append(f"# {k.env}={format_value(k.default)}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m dltasks.settings > env.example
    print(env_example(), end="")
