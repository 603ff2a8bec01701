"""From settings and a request to a RunPlan: the path map, mapped configs/args/env, a RunSpec.

This is where the path problem is solved for a run: every root (code, data, outputs, extra
mounts) is known on three sides (the laptop, the target host, the container), and configs,
arguments and environment values all go through the same map before anything starts.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dltasks.engine.spec import (
    LABEL_HOST,
    LABEL_KIND,
    LABEL_PROJECT,
    LABEL_RECORD,
    LABEL_RUN,
    LABEL_STARTED,
    Mount,
    PortBinding,
    RunSpec,
    command_argv,
    url_labels,
    words_argv,
)
from dltasks.errors import DltError
from dltasks.gpu.selection import GpuSelection
from dltasks.paths.scan import (
    Mapped,
    PathMap,
    Root,
    Unmapped,
    find_configs,
    map_args,
    map_command,
    map_env,
    rewrite_config,
    unmapped_message,
)
from dltasks.runs.record import RUNS_DIR, private_dir, private_file
from dltasks.settings import PREFIX, Settings

DATA, OUTPUTS = "/data", "/outputs"
#: HOME for runs as the invoking user (whose uid has no home in the image): always writable.
RUN_HOME = "/tmp"


@dataclass(frozen=True)
class RunRequest:
    """What the user asked for on the command line."""

    kind: str                            # train | shell | run | notebook | tensorboard | test-gpu
    command: str                         # the command string (DLT_TRAIN_CMD, bash, ...)
    args: tuple[str, ...] = ()
    #: The user's own words (`run -- CMD`): run as argv exactly (engine.spec.words_argv), each
    #: word's paths mapped as the command's are; ``command`` is then only their spelling.
    argv: tuple[str, ...] | None = None
    gpus: GpuSelection = GpuSelection("none")
    image: str = ""
    root: bool = False
    allow_unmapped: bool = False
    interactive: bool = False
    share: bool = False                  # take GPUs other runs hold (--share)
    wait: float | None = None            # seconds to wait for taken GPUs (None: refuse)
    nproc: str = ""                      # torchrun's processes per node: "", "gpu" or "N"
    extra_mounts: tuple[Mount, ...] = ()
    ports: tuple[PortBinding, ...] = ()  # published on the host's loopback (--port)
    #: More container environment, set as given (never path-mapped): what a task makes for
    #: this run alone (notebook's JUPYTER_TOKEN); secret-looking names are masked like DLT_ENV's
    env: tuple[tuple[str, str], ...] = ()
    readonly: bool = False               # every mount read-only (tensorboard only reads)


@dataclass(frozen=True)
class TargetFacts:
    """What we learned about the target host before planning."""

    name: str
    project_dir: str                     # the project folder on the host
    uid_gid: str                         # "1000:1000"
    home: str = ""                       # the login's home on the host (for ~ in settings)


@dataclass(frozen=True)
class RunPlan:
    """One run, decided before anything starts (pure: nothing here changes once made).

    ``spec`` is the run as far as it is known without the host: what only the host can tell
    (who runs there, its GPUs, the image's ID, a job node's place) comes later, and
    :func:`dltasks.runs.start.final_spec` makes the spec to start from both. It carries no
    GPU label: that label is a claim, and holds the GPUs a run got, never what it asked."""

    run_id: str
    run_dir: Path                        # local record folder
    pathmap: PathMap
    spec: RunSpec
    request: RunRequest
    host: str                            # the target's name, as messages name it
    configs: tuple[tuple[str, Mapped], ...] = ()
    unmapped: tuple[Unmapped, ...] = ()
    image_paths: tuple[Unmapped, ...] = ()    # the command's, in the image
    must_exist: tuple[str, ...] = ()     # host paths checked before start
    make_dirs: tuple[str, ...] = ()      # host paths created before start


def _host_path(value: str, host_project_dir: str, host_home: str = "") -> str:
    """A path setting as seen on the host: ~ (the host login's home) and relative paths
    resolved there."""
    if value == "~" or value.startswith("~/"):
        if not host_home:
            return value
        value = host_home + value[1:]
    if posixpath.isabs(value):
        return posixpath.normpath(value)
    return posixpath.normpath(posixpath.join(host_project_dir, value))


def _aliases(path: str) -> tuple[str, ...]:
    real = os.path.realpath(path)
    return (real,) if real != path else ()


def parse_mount(text: str) -> tuple[str, str, bool]:
    """``host:container[:ro|:rw]`` -> (host, container, readonly)."""
    parts = text.split(":")
    ro = False
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        ro = parts[2] == "ro"
        parts = parts[:2]
    if len(parts) != 2 or not parts[0] or not posixpath.isabs(parts[1]):
        raise DltError(f"DLT_MOUNTS entry {text!r}: write host:container[:ro] with an absolute "
                       "container path, e.g. /mnt/datasets:/datasets:ro")
    return parts[0], parts[1], ro


def build_pathmap(local: Settings, host: Settings, host_project_dir: str,
                  host_home: str = "") -> PathMap:
    """Roots on three sides. ``local`` resolves without the host's .env.<host> layer."""
    roots: list[Root] = []
    lp = str(local.project_dir)
    roots.append(Root("code", lp, host_project_dir, host.workdir, False, _aliases(lp)))
    for name, cpath, ro in (("data", DATA, True), ("outputs", OUTPUTS, False)):
        hval = host.data_dir if name == "data" else host.output_dir
        lval = local.data_dir if name == "data" else local.output_dir
        if not hval and not lval:
            continue
        lpath = str(local.path(lval or hval))
        if host_project_dir == lp:  # local target: the host IS this machine
            hpath = str(host.path(hval or lval))
        else:
            hpath = _host_path(hval or lval, host_project_dir, host_home)
        roots.append(Root(name, lpath, hpath, cpath, ro, _aliases(lpath)))
    local_mounts = {cpath: src for src, cpath, _ in map(parse_mount, local.mounts)}
    for m in host.mounts:
        hsrc, cpath, ro = parse_mount(m)
        lsrc = local_mounts.get(cpath, hsrc)
        lpath = str(local.path(lsrc))
        hpath = str(host.path(hsrc)) if host_project_dir == lp else _host_path(
            hsrc, host_project_dir, host_home)
        roots.append(Root(f"mount:{cpath}", lpath, hpath, cpath, ro, _aliases(lpath)))
    return PathMap(tuple(roots))


def plan_run(local: Settings, host: Settings, facts: TargetFacts, req: RunRequest, *,
             run_id: str, started: str, image: str, part: str = "") -> RunPlan:
    """Everything about one run, decided before anything starts. Writes rewritten configs.

    ``part``: a sub-folder of the run's record for this part of it (a job's node: each
    host's configs are rewritten for that host's paths)."""
    pathmap = build_pathmap(local, host, facts.project_dir, facts.home)
    run_dir = local.project_dir / RUNS_DIR / run_id
    host_run_dir = posixpath.join(facts.project_dir, RUNS_DIR, run_id)
    if part:
        run_dir, host_run_dir = run_dir / part, posixpath.join(host_run_dir, part)
    mounts: list[Mount] = [Mount(r.host, r.container, r.readonly) for r in pathmap.roots]
    configs: list[tuple[str, Mapped]] = []
    unmapped: list[Unmapped] = []
    must_exist: list[str] = []
    make_dirs: list[str] = []
    private_dir(local.project_dir / RUNS_DIR / run_id)

    exclude = [RUNS_DIR + "/**", ".git/**"]
    out_root = next((r for r in pathmap.roots if r.name == "outputs"), None)
    if out_root and out_root.local.startswith(str(local.project_dir) + "/"):
        exclude.append(os.path.relpath(out_root.local, local.project_dir) + "/**")
    for src in find_configs(local.project_dir, local.configs, exclude):
        rel = src.relative_to(local.project_dir).as_posix()
        dest = run_dir / "configs" / rel
        mapped = rewrite_config(src, dest, pathmap, where=rel)
        unmapped.extend(mapped.unmapped)
        if mapped.replacements:
            configs.append((rel, mapped))
            mounts.append(Mount(posixpath.join(host_run_dir, "configs", rel),
                                posixpath.join(host.workdir, rel), True))
        else:
            dest.unlink(missing_ok=True)
    if facts.project_dir == str(local.project_dir):  # the code folder is this one: its .env
        for rel, _ in dotenv_copies(local.project_dir, run_dir / "configs",
                                       [rel for rel, _ in configs]):
            # every place the container sees the file: the code folder, and any other root
            # that holds the project (DLT_DATA_DIR=its parent)
            for target in in_container(pathmap, str(local.project_dir / rel)):
                mounts = [m for m in mounts if m.target != target]
                mounts.append(Mount(posixpath.join(host_run_dir, "configs", rel), target, True))

    where = _COMMAND_NAME.get(req.kind, "the command")
    if req.argv is not None:  # each word scanned as the command string is (scan.py, rule 7)
        words = [map_command(w, pathmap, where=where) for w in req.argv]  # (word, unmapped)
        command, bad_command = "", list(dict.fromkeys(u for _, bad in words for u in bad))
    else:
        command, bad_command = map_command(req.command, pathmap, where=where)
    # under a folder dltasks mounts itself (test-gpu's probe): the container's, said nowhere
    bad_command = [u for u in bad_command if not _under_mounts(u.path, req.extra_mounts)]
    in_image = [u for u in bad_command if _in_image(u.path)]
    args, bad_args = map_args(list(req.args), pathmap)
    env, bad_env = map_env(dict(host.container_env), pathmap)
    argv = words_argv([w for w, _ in words] + args) if req.argv is not None \
        else command_argv(command, tuple(args))
    unmapped.extend(u for u in bad_command if u not in in_image)
    unmapped.extend(bad_args)
    unmapped.extend(bad_env)
    if unmapped and not req.allow_unmapped:
        raise DltError(unmapped_message(unmapped))

    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(req.env)
    env["DLT_RUN_ID"] = run_id  # one of settings.RUNTIME_VARS
    if not req.root:
        env["HOME"] = RUN_HOME
    mounts.extend(req.extra_mounts)
    if req.readonly:  # a run that only reads (tensorboard): nothing it does can change a file
        mounts = [Mount(m.source, m.target, True) for m in mounts]
    for r in pathmap.roots:
        if r.name == "outputs":
            make_dirs.append(r.host)
        elif r.name != "code":
            must_exist.append(r.host)

    # no GPU label: it is set to the GPUs the run gets (runs.start.final_spec), never the request
    labels = {LABEL_RUN: run_id, LABEL_PROJECT: host.project, LABEL_KIND: req.kind,
              LABEL_HOST: facts.name, LABEL_STARTED: started,
              LABEL_RECORD: str(local.project_dir / RUNS_DIR / run_id),
              **url_labels(req.ports)}
    spec = RunSpec(
        image=image, command=argv, gpus=req.gpus,
        mounts=tuple(mounts), env=env, workdir=host.workdir,
        user=None if req.root else facts.uid_gid, ipc_host=not host.shm_size,
        shm_size=host.shm_size, labels=labels,
        name=f"dlt-{host.project}-{run_id}" + (f"-{part}" if part else ""),
        interactive=req.interactive, ports=req.ports)
    return RunPlan(run_id, run_dir, pathmap, spec, req, facts.name, configs=tuple(configs),
                   unmapped=tuple(unmapped), image_paths=tuple(in_image),
                   must_exist=tuple(must_exist), make_dirs=tuple(make_dirs))


#: Where users keep their own files on any host (homes, disks, shared filesystems): a path of
#: the command under one of these is a host path even when it does not exist yet (an outputs
#: folder the run would make), never one inside the image.
USER_PLACES = ("/home", "/Users", "/root", "/mnt", "/media", "/run/media", "/scratch", "/srv",
               "/data", "/datasets", "/nfs", "/lustre", "/gpfs", "/work", "/shared", "/storage")


def _under_mounts(path: str, mounts: Sequence[Mount]) -> bool:
    return any(path == m.target or path.startswith(m.target.rstrip("/") + "/") for m in mounts)


def _in_image(path: str) -> bool:
    """Whether an absolute path of the command that no root covers names something inside
    the image (``/opt/venv/bin/python``, ``/app/train.py``) rather than a host file: it is not
    where users keep files (:data:`USER_PLACES`, ``/data2/x`` too) and neither it nor its
    folder exists here (so the user cannot mean a file of this machine). ``~/x`` is never the
    image's."""
    if not path.startswith("/"):
        return False
    norm = posixpath.normpath(path)
    top = "/" + norm.split("/")[1]
    if any(top == p or (top.startswith(p) and top[len(p):].isdigit()) or
           norm.startswith(p + "/") for p in USER_PLACES):      # /data2 too
        return False
    return not (os.path.lexists(norm) or os.path.isdir(posixpath.dirname(norm)))


def in_container(pathmap: PathMap, path: str) -> list[str]:
    """Every container path of the host file ``path``: one per root that holds it (the
    longest spelling of each root)."""
    out = []
    for r in pathmap.roots:
        for sp in sorted(r.spellings, key=len, reverse=True):
            if path == sp or path.startswith(sp.rstrip("/") + "/"):
                out.append(r.container + path[len(sp.rstrip("/")):])
                break
    return list(dict.fromkeys(out))


def image_paths_note(plan: RunPlan) -> str:
    """One line naming the command's paths left as paths inside the image ("" when none): a
    path the user wrote is never passed over without a word."""
    if not plan.image_paths:
        return ""
    listed = ", ".join(f"{u.path} ({u.where})" for u in plan.image_paths)
    return (f"dlt: left as paths inside the image (not on this machine, no root covers them): "
            f"{listed}")


#: What the user calls the command of each kind of run, in messages about its paths.
_COMMAND_NAME = {"train": "DLT_TRAIN_CMD", "shell": "shell --cmd", "run": "run's command"}


_SETTING_LINE = re.compile(r"\s*(?:export\s+)?" + PREFIX)


def dotenv_without_settings(text: str) -> str:
    """A ``.env`` text without its ``DLT_*`` lines (dltasks' own settings, such as
    ``DLT_SUDO_PASSWORD``, which the user's code has no business reading); every other line,
    comment and blank kept byte for byte (multi-line values included)."""
    import io

    from dotenv.parser import parse_stream

    out = []
    for b in parse_stream(io.StringIO(text)):
        line = b.original.string
        # a line python-dotenv cannot parse has no key: judged by its text
        if (b.key or "").startswith(PREFIX) or _SETTING_LINE.match(line):
            # its blank lines before it stay
            lead = line[:len(line) - len(line.lstrip(" \t\r\n"))]
            line = lead[:lead.rfind("\n") + 1]
        out.append(line)
    return "".join(out)


def dotenv_copies(project_dir: Path, dest_dir: Path,
                  rewritten: Sequence[str] = ()) -> list[tuple[str, Path]]:
    """(name, filtered copy) of each ``.env``/``.env.*`` file of the project that holds a
    ``DLT_*`` line: the copy, written under ``dest_dir``, is mounted over the original in the
    container. ``rewritten``: files already rewritten there as configs (filtered in place)."""
    out = []
    for src in sorted(project_dir.glob(".env*")):
        name = src.name
        if not (name == ".env" or name.startswith(".env.")) or not src.is_file():
            continue
        dest = dest_dir / name
        text = (dest if name in rewritten else src).read_text(encoding="utf-8",
                                                               errors="surrogateescape")
        kept = dotenv_without_settings(text)
        if kept == text and name not in rewritten:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)  # a rewritten config: made anew, private from the start
        private_file(dest, kept)
        out.append((name, dest))
    return out


def mapping_table(pathmap: PathMap, remote: bool) -> str:
    """The path-mapping table shown by --dry-run."""
    head = ("ROOT", "LOCAL", "HOST", "CONTAINER") if remote else ("ROOT", "HOST", "", "CONTAINER")
    rows = [head]
    for name, lpath, hpath, cpath in pathmap.table():
        rows.append((name, lpath, hpath, cpath) if remote else (name, hpath, "", cpath))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for r in rows:
        cells = [r[i].ljust(widths[i]) for i in range(4) if remote or i != 2]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def missing_message(host: str, missing: Sequence[str]) -> str:
    return (f"{len(missing)} path(s) the run mounts do not exist on {host}: "
            f"{', '.join(missing)}; create them or fix DLT_DATA_DIR / DLT_MOUNTS "
            f"(in .env or .env.{host})")
