"""Run records: ``runs/<run-id>/`` with ``manifest.json``, the rewritten configs and the log.

A record says exactly what ran: image ID and digest, git commit and dirty diff, the command,
resolved settings (secrets masked), GPUs, host, times, exit code, and the equivalent
``docker run`` line. Records live in the project on the machine that launched the run.

:class:`RunRecord` is the record as a typed value: every run
(one host, a job, a Slurm run) writes it with :meth:`RunRecord.save` and every reader gets
it from :meth:`RunRecord.load` or :func:`list_runs`; this module alone names the files of a
run's folder (:func:`record_file`, :func:`log_file`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from dltasks.errors import DltError
from dltasks.hosts.shell import local, local_start
from dltasks.runs.recordshape import OWN, ShapeError, read_object, write_object
from dltasks.settings.masking import scrub

RUNS_DIR = "runs"
MANIFEST = "manifest.json"
LOG = "output.log"


def record_file(folder: Path) -> Path:
    """The record of the run whose folder is ``folder``."""
    return folder / MANIFEST


def log_file(folder: Path) -> Path:
    """The output log of the run (or job node) whose folder is ``folder``."""
    return folder / LOG


FORWARD_PID = "forward.pid"
FORWARD_LOG = "forward.log"


def forward_pid_file(folder: Path) -> Path:
    """The pid (and laptop ports) of the background forwarder of a detached run's ports."""
    return folder / FORWARD_PID


def forward_log_file(folder: Path) -> Path:
    """The background forwarder's own output (no secrets: URLs in it are masked)."""
    return folder / FORWARD_LOG


#: The files of a run's folder that the record owns (the record, the log, this machine's
#: forwarder's files): a fetch from a host never copies the host's over them.
OWN_FILES = (MANIFEST, LOG, FORWARD_PID, FORWARD_LOG)


#: Every run id dltasks makes (:func:`new_run_id`: plain runs, jobs, Slurm runs, test-gpu):
#: the UTC date and time, and 4 hex digits.
RUN_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{4}")
#: A leading part of such an id, as `stop`/`logs` take it (no "/", no "..", nothing else).
RUN_ID_PREFIX = re.compile(r"[0-9]{1,8}|[0-9]{8}-[0-9]{0,6}|[0-9]{8}-[0-9]{6}-[0-9a-f]{0,4}")
#: What a user is told a run id looks like.
RUN_ID_EXAMPLE = "20261126-141502-a3f9"


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique enough: ``20261126-141502-a3f9``."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%d-%H%M%S-") + os.urandom(2).hex()


def is_run_id(text: object) -> bool:
    """Whether ``text`` is a run id as :func:`new_run_id` makes them (so also a safe folder
    name: no "/", no "..", nothing a label, a record or Slurm could smuggle in)."""
    return isinstance(text, str) and RUN_ID.fullmatch(text) is not None


def check_run_id(text: object, where: str = "") -> str:
    """``text`` when it is a run id, else a one-line error saying where it came from."""
    if is_run_id(text):
        return str(text)
    source = f" ({where})" if where else ""
    raise DltError(f"{str(text)[:80]!r}{source} is not a run id (they look like "
                   f"{RUN_ID_EXAMPLE}): `inv ps` and `inv runs` list the runs")


def check_run_arg(text: str) -> str:
    """A RUN argument: a run id or a leading part of one, else a one-line error."""
    if RUN_ID_PREFIX.fullmatch(text) or is_run_id(text):
        return text
    raise DltError(f"{text[:80]!r} is not a run id or the start of one (they look like "
                   f"{RUN_ID_EXAMPLE}): `inv ps` lists the runs on the engine, `inv runs` "
                   "the records")


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class GitState:
    commit: str | None
    dirty: bool
    diff: str
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, metadata=OWN)
    source_keys: tuple[str, ...] | None = field(default=None, compare=False, repr=False,
                                                metadata=OWN)


def git_state_later(project_dir: Path) -> Callable[[], GitState]:
    """Start asking git now; call the result for the project's commit and its uncommitted
    changes (tracked files) as a diff.

    One `git status` names the commit and says whether the tree is dirty; `git diff` runs only
    when it is (each git process is felt in the start-up time of every run, so the first one
    runs while the run is being planned).
    """
    git = ["git", "-C", str(project_dir)]
    try:
        status = local_start([*git, "status", "--porcelain=v2", "--branch"])
    except DltError:  # git is not installed: no commit to record
        return lambda: GitState(None, False, "")

    def finish() -> GitState:
        res = status.result()
        lines = res.stdout.splitlines()
        oid = next((ln.split()[2] for ln in lines if ln.startswith("# branch.oid ")),
                   "(initial)")
        if not res.ok or oid == "(initial)":  # not a repository, or no commit yet
            return GitState(None, False, "")
        dirty = any(not ln.startswith("#") for ln in lines)
        diff = local([*git, "diff", "HEAD"]).stdout if dirty else ""
        return GitState(oid, dirty, diff)

    return finish


def git_state(project_dir: Path) -> GitState:
    """The project's commit and uncommitted changes (see :func:`git_state_later`)."""
    return git_state_later(project_dir)()


def run_dir(project_dir: Path, run_id: str) -> Path:
    """``runs/<run_id>`` of the project. The id is checked here, so no caller can build a path
    outside runs/ from an id that came from a label, a record or an argument."""
    return project_dir / RUNS_DIR / check_run_id(run_id)


def private_dir(path: Path) -> None:
    """A run's folder, readable by its user alone (0700): it holds the run's configs, its
    output and (Slurm) the file its variables travel in; rsync -a carries the mode to a host."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)  # made earlier, or under a umask that left bits out


def private_file(path: Path, text: str) -> None:
    """A new file readable by its user alone (0600), so from its creation: never a moment
    when another user could open it, never through a planted link."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(text)


def write_manifest(path: Path, manifest: dict[str, Any], secret_values: list[str]) -> None:
    """Write atomically, every secret value scrubbed from the text."""
    text = json.dumps(_scrubbed(manifest, secret_values), indent=2, default=str)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _scrubbed(value: Any, secrets: list[str]) -> Any:
    """``value`` with every secret removed from its strings (before JSON escapes them)."""
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {k: _scrubbed(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v, secrets) for v in value]
    return value


def read_manifest(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def list_runs(project_dir: Path) -> list[RunRecord]:
    """Every record under runs/, newest first (unreadable ones reported as such: status
    ``unreadable manifest``, the reason in ``error``).

    Only folders named by a run id count, and a record whose ``run_id`` is not its folder's
    name is reported, not returned: what callers write back goes to ``runs/<run_id>``, so a
    record's id must never point elsewhere."""
    base = project_dir / RUNS_DIR
    if not base.is_dir():
        return []
    out: list[RunRecord] = []
    for d in sorted(base.iterdir(), reverse=True):
        m = record_file(d)
        if not is_run_id(d.name) or not m.is_file():
            continue
        try:
            data: Any = read_manifest(m)
        except (OSError, ValueError):
            out.append(RunRecord(d.name, status=UNREADABLE, error="unreadable manifest"))
            continue
        if not isinstance(data, dict) or data.get("run_id") != d.name:
            said = data.get("run_id") if isinstance(data, dict) else None
            out.append(RunRecord(d.name, status=UNREADABLE, error=(
                f"record names run id {str(said)[:40]!r}, not its folder's")))
            continue
        try:  # one odd record is one unreadable run, never every reader's failure
            out.append(RunRecord.from_json(data))
        except ShapeError as e:
            out.append(RunRecord(d.name, status=UNREADABLE, error=f"unreadable manifest: {e}"))
    return out


def _read_record(path: Path) -> dict[str, Any]:
    """The object in the record file ``path`` (OSError, ValueError when there is none)."""
    data: Any = read_manifest(path)
    if not isinstance(data, dict):
        raise ShapeError(f"it holds {type(data).__name__}, not an object")
    return data


def _why(e: Exception) -> str:
    """``e`` in a few words, on one line."""
    if isinstance(e, OSError):
        return e.strerror or type(e).__name__
    text = " ".join(str(e).split())
    return text[:160] if isinstance(e, ShapeError) else f"not JSON: {text[:120]}"


# -- the record as a value ---------------------------------------------------------------------

#: Every state a record can say its run is in. dltasks' own: ``running`` (a detached run
#: started), ``exited``, ``interrupted`` (Ctrl-C), ``stopped`` (`stop`), ``failed to start``,
#: ``connection lost``, ``submitted`` (to Slurm), ``unknown`` (Slurm did not answer; also any
#: state this version does not know, read from a record), ``unreadable manifest`` (only from
#: :func:`list_runs`, never written). Then Slurm's job states as it spells them, lower case.
RunStatus = Literal[
    "running", "exited", "interrupted", "stopped", "failed to start", "connection lost",
    "submitted", "unknown", "unreadable manifest",
    "pending", "configuring", "completing", "completed", "failed", "cancelled", "timeout",
    "out_of_memory", "node_fail", "preempted", "boot_fail", "deadline", "suspended",
    "requeued", "requeue_hold", "requeue_fed", "resizing", "revoked", "signaling",
    "special_exit", "stage_out", "resv_del_hold",
]
STATUSES: frozenset[str] = frozenset(get_args(RunStatus))
UNREADABLE: RunStatus = "unreadable manifest"


def status_of(text: str) -> RunStatus:
    """``text`` (ours, or a Slurm state in any case) as a :data:`RunStatus`; ``unknown`` when it
    is none of them (an edited record, a state of a newer Slurm)."""
    low = text.lower()
    return low if low in STATUSES else "unknown"  # type: ignore[return-value]


@dataclass(frozen=True)
class PathRow:
    """One root of the run's path map, on its three sides."""

    root: str
    local: str
    host: str
    container: str
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, metadata=OWN)
    source_keys: tuple[str, ...] | None = field(default=None, compare=False, repr=False,
                                                metadata=OWN)


@dataclass(frozen=True)
class ConfigEdit:
    """A config file rewritten for the container, and each (old, new) path in it."""

    file: str
    replacements: tuple[tuple[str, str], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, metadata=OWN)
    source_keys: tuple[str, ...] | None = field(default=None, compare=False, repr=False,
                                                metadata=OWN)


@dataclass(frozen=True)
class NodePart:
    """A job node's part of the run."""

    rank: int
    host: str
    image_id: str = ""
    gpus: str = ""
    container_id: str = ""
    exit_code: int | None = None
    ended_by: str = ""
    docker_run: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, metadata=OWN)
    source_keys: tuple[str, ...] | None = field(default=None, compare=False, repr=False,
                                                metadata=OWN)


@dataclass(frozen=True)
class JobInfo:
    """Where a job's nodes meet."""

    nnodes: int
    master_addr: str = ""
    master_port: int = 0
    rendezvous: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, metadata=OWN)
    source_keys: tuple[str, ...] | None = field(default=None, compare=False, repr=False,
                                                metadata=OWN)


@dataclass(frozen=True)
class FailedFirst:
    """The node whose end ended a job, and why."""

    rank: int
    host: str
    why: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, metadata=OWN)
    source_keys: tuple[str, ...] | None = field(default=None, compare=False, repr=False,
                                                metadata=OWN)


@dataclass(frozen=True)
class SlurmInfo:
    """A Slurm run's batch job: what was submitted, and (once known) how it ended."""

    job_id: str
    runtime: str = ""
    nodes: int = 1
    gpus_per_node: int = 0
    nproc: int = 1
    script: str = ""
    output: str = ""
    run_dir: str = ""
    image_file: str | None = None
    image_id: str | None = None
    image_made: bool | None = None
    state: str | None = None         # Slurm's word for the end (COMPLETED, TIMEOUT, ...)
    state_from: str | None = None    # who said it: sacct, scontrol, exit file, nothing, dlt
    nodelist: str | None = None      # the nodes it ran on (n[1-2])
    #: What `exec` finds the run's containers by: the docker runtime's container name (node
    #: K's: NAME-nK), pyxis's step name (its containers are the step's own, unnamed); None
    #: for apptainer and in records made before it was kept.
    container: str | None = None
    workdir: str | None = None       # the container's folder (pyxis: where exec starts)
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, metadata=OWN)
    source_keys: tuple[str, ...] | None = field(default=None, compare=False, repr=False,
                                                metadata=OWN)

    #: Facts not known yet are absent, as before RunRecord (a node's are null).
    NONE_WRITTEN: ClassVar[frozenset[str]] = frozenset()


@dataclass(frozen=True)
class PortRow:
    """A port the run's container published: the container's port, on the host's
    ``host_ip:host_port`` (the engine's pick when `--port` gave no host port)."""

    container: int
    host_ip: str = "127.0.0.1"
    host_port: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, metadata=OWN)
    source_keys: tuple[str, ...] | None = field(default=None, compare=False, repr=False,
                                                metadata=OWN)


#: Keys written even when None: a reader tells "not ended yet" by them.
_ALWAYS = frozenset({"run_id", "ended", "exit_code"})


@dataclass(frozen=True)
class RunRecord:
    """What ran and how it ended: the content of ``runs/<run-id>/manifest.json``.

    Fields that only some runs have are None where absent (and absent from the file, as
    today's records are): a plain run has ``path_map``/``docker_run``/``gpu_mode``..., a job
    ``job``/``nodes``/``failed_first``, a Slurm run ``slurm``. Keys this version does not
    know (a newer dltasks', a user's note), at the top or inside a part, are kept in that
    part's ``extra``; a null that was in the file and a status this version does not know
    (``status_text``) are kept too, and keys keep their order (``source_keys``): a settle,
    a fetch or a stop that writes the record back changes only what it changed."""

    run_id: str
    kind: str = ""
    host: str = ""
    image: str = ""
    image_id: str | None = None
    image_digests: tuple[str, ...] | None = None
    git: GitState = field(default_factory=lambda: GitState(None, False, ""))
    command: tuple[str, ...] = ()
    gpus: str | None = None
    settings: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    path_map: tuple[PathRow, ...] | None = None
    configs: tuple[ConfigEdit, ...] | None = None
    docker_run: str | None = None
    detached: bool | None = None
    job: JobInfo | None = None
    nodes: tuple[NodePart, ...] | None = None
    slurm: SlurmInfo | None = None
    started: str = ""
    ended: str | None = None
    exit_code: int | None = None
    status: RunStatus | None = None     # None: an attached run that has not ended
    error: str | None = None
    failed_first: FailedFirst | None = None
    gpu_mode: str | None = None
    gpu_mode_why: str | None = None
    gpus_asked: str | None = None     # the request, when it differs from the GPUs held
    gpus_shared: tuple[str, ...] | None = None  # a note per GPU taken although held
    container_id: str | None = None
    ports: tuple[PortRow, ...] | None = None  # written once the container started (--port)
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, metadata=OWN)
    source_keys: tuple[str, ...] | None = field(default=None, compare=False, repr=False,
                                                metadata=OWN)
    #: The status as the record said it, when this version reads it as another (``unknown``
    #: for a state it does not know): written back while ``status`` is still what it read as.
    status_text: str | None = field(default=None, metadata=OWN)

    NONE_WRITTEN: ClassVar[frozenset[str]] = _ALWAYS

    def but(self, **changes: Any) -> RunRecord:
        """This record with ``changes``."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The record as ``manifest.json`` holds it."""
        out = write_object(self)
        if self.status_text is not None and status_of(self.status_text) == self.status:
            out["status"] = self.status_text
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """A record as any dltasks wrote it: missing keys take their defaults, unknown ones
        go to ``extra``, a status this version does not know reads as ``unknown``;
        :class:`~.recordshape.ShapeError` (a ValueError) naming the key when a part has a
        shape no field can hold."""
        rec: RunRecord = read_object(cls, dict(data), "")
        said: Any = rec.status
        if said is None:
            return rec
        if not isinstance(said, str):
            raise ShapeError(f"status is {type(said).__name__} {str(said)[:30]!r}, not text")
        status = status_of(said)
        return rec.but(status=status, status_text=None if said == status else said)

    @classmethod
    def load(cls, folder: Path) -> RunRecord:
        """The record in the run folder ``folder``; a one-line DltError naming the file when it
        cannot be read or holds no record."""
        path = record_file(folder)
        try:
            return cls.from_json(_read_record(path))
        except (OSError, ValueError) as e:
            raise DltError(f"the run record {path} cannot be read ({_why(e)}): fix or move "
                           "that file") from None

    def save(self, folder: Path, secret_values: list[str]) -> None:
        """The one writer: atomically, every secret value scrubbed from the text."""
        write_manifest(record_file(folder), self.to_json(), secret_values)
