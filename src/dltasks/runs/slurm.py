"""Submitting a run to Slurm, following it, and finding it again (the batch script itself is
:mod:`dltasks.runs.slurmscript`).

The login host is the target (this machine with ``inv train --slurm``, a remote one with ``fab
-H login1 train --slurm``): the code is synced to its shared filesystem, the path map is its
(``.env.login1``), the script and the per-node wrapper are written into the run's record
folder there, and ``sbatch`` is run there. Following a job is one shell round trip a second:
its state (``squeue``), and the bytes its output file grew by.
"""

from __future__ import annotations

import posixpath
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dltasks.errors import ClusterError
from dltasks.hosts.shell import quote
from dltasks.hosts.target import Target
from dltasks.runs.plan import RunRequest, image_paths_note, plan_run
from dltasks.runs.prepare import host_facts, nothing_left, prepare_host, settings_rows
from dltasks.runs.record import (
    RUNS_DIR,
    RunRecord,
    SlurmInfo,
    git_state_later,
    new_run_id,
    private_file,
    record_file,
    run_dir,
    status_of,
    utcnow,
)
from dltasks.runs.slurmscript import (
    ENV_FILE,
    IMAGE_MAKERS,
    MADE_MEANWHILE,
    SlurmJob,
    docker_wrapper,
    env_file,
    exec_key,
    image_file,
    job_script,
    make_image_script,
    node_line,
    parse_state,
    procs,
    sbatch_error,
)
from dltasks.runs.start import StartFacts, final_spec
from dltasks.settings import Settings
from dltasks.settings.masking import mask, secret_values

POLL_S = 1.0
#: $1: job id. Prints "state|reason|nodes" while Slurm has the job queued or running (nodes:
#: its allocation, empty while pending), "gone" once it has not (ended, or forgotten: "Invalid
#: job id"), "error|what squeue said" when Slurm did not answer (the controller down or busy:
#: the job may well run on).
_QUEUE = ('s=$(squeue -h -j "$1" -o "%T|%r|%N" 2>&1); rc=$?; '
          'if [ $rc -ne 0 ]; then case "$s" in *"Invalid job id"*) echo gone;; '
          '*) echo "error|$(echo "$s" | head -n 1)";; esac; '
          'elif [ -n "$s" ]; then echo "$s" | head -n 1; else echo gone; fi')
#: $1: job id, $2: output file, $3: bytes of it already shown. Prints what :data:`_QUEUE`
#: does, a line "--", then the new bytes.
_POLL = _QUEUE + '; echo --; [ -f "$2" ] && tail -c +"$(($3 + 1))" "$2"; true'
#: Ends that Slurm brings about with SIGTERM (then SIGKILL).
_SIGNALLED = frozenset({"CANCELLED", "TIMEOUT", "PREEMPTED", "DEADLINE"})
#: Job states after which a job does not run again (sacct and scontrol spell them alike).
ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY",
                   "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE"})


def submit(target: Target, local: Settings, req: RunRequest, job: SlurmJob, *,
           detach: bool = False, dry_run: bool = False) -> int:
    """Write the job's scripts, ``sbatch`` them on the target, follow the job (or not)."""
    s = target.settings
    run_id, started = new_run_id(), utcnow()
    git = git_state_later(local.project_dir)
    image, made = runtime_image(target, job, req.image, dry_run=dry_run)
    host_dir = posixpath.join(target.host_project_dir, "runs", run_id)
    name = f"dlt-{s.project}-{run_id}"
    wrapper, env_path = (posixpath.join(host_dir, f) for f in ("node.sh", ENV_FILE))
    with nothing_left(run_dir(local.project_dir, run_id), git):
        plan = plan_run(local, s, host_facts(target), req, run_id=run_id, started=started,
                        image=image)
        if plan.image_paths:
            print(image_paths_note(plan), file=sys.stderr, flush=True)
        login = prepare_host(target, plan) if not dry_run else None
        # a Slurm node: its GPUs are Slurm's grant, torchrun is the batch script's
        spec = final_spec(plan, StartFacts(uid_gid=login.uid_gid if login else "", slurm=True))
        script = job_script(spec, job, name=name, run_dir=host_dir, wrapper=wrapper,
                            port=s.master_port)
        node = docker_wrapper(spec, job, name, env=env_path) if job.runtime == "docker" else ""
        env = env_file(spec, job.runtime)
    if dry_run:
        print(script, end="")
        if node:
            print(f"\n# {wrapper}\n{node}", end="")
        print(f"\n# {env_path} (mode 0600; values not shown)")
        print("".join(f"{k}={mask(v)}\n" for k, v in spec.env.items()), end="")
        shutil.rmtree(plan.run_dir, ignore_errors=True)  # a dry run leaves no record
        git()
        return 0
    with nothing_left(plan.run_dir, git):  # until sbatch took it
        private_file(plan.run_dir / "job.sbatch", script)
        private_file(plan.run_dir / ENV_FILE, env)
        if node:
            private_file(plan.run_dir / "node.sh", node)
        target.sync_project(s, runs=[run_id])
        job_id = _sbatch(target, posixpath.join(host_dir, "job.sbatch"), job)
    slurm = SlurmInfo(job_id, job.runtime, job.nodes, job.gpus_per_node, procs(job), script,
                      posixpath.join(host_dir, f"slurm-{job_id}.out"), host_dir, **made,
                      container=exec_key(job.runtime, name),
                      workdir=spec.workdir if job.runtime == "pyxis" else None)
    record = RunRecord(run_id, kind=req.kind, host=target.name, image=image,
                       command=spec.command, started=started, git=git(),
                       settings=settings_rows(local), slurm=slurm, detached=detach,
                       status="submitted")
    secrets = secret_values({**s.container_env})
    record.save(plan.run_dir, secrets)
    print(f"dlt: submitted {run_id} to Slurm on {target.name}: job {job_id} ({job.nodes} "
          f"node(s), {job.runtime})", file=sys.stderr, flush=True)
    if detach:
        print(run_id)
        return 0
    end = follow(target, slurm, run_id)
    code, state = end.code, end.state
    record = record.but(ended=utcnow(), exit_code=code, status=status_of(state),
                        slurm=end.into(slurm))
    record.save(plan.run_dir, secrets)
    if state == "TIMEOUT":
        raise ClusterError(f"Slurm job {job_id} on {target.name} hit its time limit "
                           f"({job.time or 'the partition default'}): ask for more with --time",
                           code=code or 1)
    return code



def runtime_image(target: Target, job: SlurmJob, flag_image: str = "", *,
                  dry_run: bool = False) -> tuple[str, dict[str, Any]]:
    """The image as the job's runtime takes it, and what the record keeps about it.

    ``flag_image`` (``--image``) names an image on the engine, as DLT_IMAGE does. docker takes
    it (else DLT_SLURM_IMAGE, else the project image) by name. For pyxis/apptainer,
    DLT_SLURM_IMAGE is already in the runtime's own form and goes as is unless ``--image`` was
    given; otherwise the file is made from the image on the login host (enroot import /
    apptainer build), kept by image ID in DLT_SLURM_IMAGE_DIR on the shared filesystem: made
    once, then reused while the image is unchanged."""
    s = target.settings
    project_image = flag_image or s.image or f"{s.project}:latest"
    if job.runtime == "docker":
        return flag_image or s.slurm_image or project_image, {}
    if s.slurm_image and not flag_image:
        return s.slurm_image, {}
    tool, _, _ = IMAGE_MAKERS[job.runtime]
    where = target.name
    r = target.shell.run(quote(["sh", "-c", 'for t in "$1" docker; do command -v "$t" '
                                '>/dev/null || echo "missing $t"; done; docker image inspect '
                                '-f "{{.Id}}" "$2" 2>&1 || true', "_", tool, project_image]))
    out = r.stdout.strip()
    fix = (f"or set DLT_SLURM_IMAGE to a {IMAGE_MAKERS[job.runtime][1]} file"
           + (" or a registry reference (nvcr.io#nvidia/pytorch:24.05-py3)"
              if job.runtime == "pyxis" else " or a docker:// URI"))
    if f"missing {tool}" in out:
        raise ClusterError(f"{job.runtime} runs an image file that {tool} makes from the project "
                           f"image, and {where} has no {tool}: install it there, {fix}")
    if "missing docker" in out:
        raise ClusterError(f"no docker on {where} to make the {job.runtime} image from "
                           f"{project_image}: run --slurm from a login host with the project's "
                           f"engine, {fix}")
    image_id = out.splitlines()[-1] if out else ""
    build = target.task_command("extend-image")
    if not image_id.startswith("sha256:"):
        raise ClusterError(f"no image {project_image} on {where}'s engine to make the "
                           f"{job.runtime} image from ({' '.join(out.split())[:160]}): build it "
                           f"there ({build}), {fix}")
    path = image_file(_image_dir(target), s.project, image_id, job.runtime)
    info: dict[str, Any] = {"image_file": path, "image_id": image_id}
    if target.shell.run(quote(["test", "-f", path])).ok:
        print(f"dlt: {job.runtime} image {path} (made earlier from {project_image}, same "
              "image ID)", file=sys.stderr, flush=True)
        return path, {**info, "image_made": False}
    if dry_run:
        print(f"dlt: would make {path} from {project_image} ({tool})", file=sys.stderr)
        return path, info
    from dltasks.images.progress import Steps

    with Steps(1, sys.stderr, title=f"{job.runtime} image").step(
            f"{tool} makes {path} from {project_image}"):
        made = target.shell.run(quote(["sh", "-c", make_image_script(job.runtime), "_", path,
                                       image_id, project_image]))
        if made.code == 130:  # Ctrl-C reached it too: it removed its part and stopped
            raise ClusterError(f"interrupted: the {job.runtime} image was not made (nothing of it "
                               "is left)", code=130)
        if not made.ok:
            raise ClusterError(f"{tool} could not make the {job.runtime} image on {where} "
                               f"(exit {made.code}): {made.tail(2)}")
    if MADE_MEANWHILE in made.stdout:  # another submission held the file's lock and made it
        print(f"dlt: {job.runtime} image {path} was made meanwhile by another submission; "
              "using it", file=sys.stderr, flush=True)
        return path, {**info, "image_made": False}
    return path, {**info, "image_made": True}


def _image_dir(target: Target) -> str:
    """DLT_SLURM_IMAGE_DIR on the login host: relative to the project's folder there, ``~/``
    to the login's home."""
    d = target.settings.slurm_image_dir or posixpath.join("runs", ".images")
    if d.startswith("~") and not (d == "~" or d.startswith("~/")):
        raise ClusterError(f"DLT_SLURM_IMAGE_DIR={d!r}: ~user paths are not supported; write an "
                           "absolute path or ~/path")
    if d == "~" or d.startswith("~/"):
        home = target.home_dir
        if not home:
            home = target.shell.run('printf %s "$HOME"', check=True).stdout.strip()
        d = posixpath.join(home, d[2:])
    return posixpath.normpath(posixpath.join(target.host_project_dir, d))


def _sbatch(target: Target, script: str, job: SlurmJob) -> str:
    have = target.shell.run("command -v sbatch >/dev/null 2>&1")
    if not have.ok:
        raise ClusterError(f"no sbatch on {target.name}: run --slurm on the cluster's login node "
                           "(fab -H login1 train --slurm), or install Slurm's client there")
    r = target.shell.run(quote(["sbatch", "--parsable", script]))
    if not r.ok:
        raise ClusterError(sbatch_error(r.stderr or r.stdout, target.name, job))
    return r.stdout.strip().split(";")[0]


def follow(target: Target, slurm: SlurmInfo, run_id: str, *,
           cancel_on_ctrl_c: bool = True) -> Ended:
    """Stream the job's output until it ends, and say how it ended. Ctrl-C cancels it
    (``cancel_on_ctrl_c``), else reaches the caller."""
    job_id, output = slurm.job_id, slurm.output
    nproc = int(slurm.nproc or 1)
    shown, said, partial, silent, seen = 0, "", "", False, ""
    try:
        while True:
            r = target.shell.run(quote(["sh", "-c", _POLL, "_", job_id, output, str(shown)]))
            head, _, data = r.stdout.partition("--\n")
            if data:
                shown += len(data.encode())
                *lines, partial = (partial + data).split("\n")
                if lines:
                    sys.stdout.write("".join(node_line(ln, nproc) + "\n" for ln in lines))
                    sys.stdout.flush()
            state, _, reason = head.strip().partition("|")
            if state != "error":
                reason, _, nodes = reason.partition("|")
                if state == "RUNNING" and not seen:  # the whole allocation (it shrinks as
                    seen = nodes                     # its nodes finish)
            if state == "error":
                if not silent:
                    print(f"dlt: Slurm on {target.name} did not answer ({reason}); still "
                          f"following job {job_id}", file=sys.stderr, flush=True)
                silent = True
                time.sleep(POLL_S)
                continue
            if silent:
                print(f"dlt: Slurm answers again; job {job_id} is {state.lower()}",
                      file=sys.stderr, flush=True)
                silent = False
            if state == "PENDING" and reason != said and reason not in ("None", ""):
                print(f"dlt: job {job_id} pending ({reason})", file=sys.stderr, flush=True)
                said = reason
            if state == "gone":
                break
            time.sleep(POLL_S)
        if partial:
            print(node_line(partial, nproc), flush=True)
    except KeyboardInterrupt:
        if not cancel_on_ctrl_c:
            raise
        print(f"\ndlt: interrupted: cancelling Slurm job {job_id}", file=sys.stderr)
        target.shell.run(quote(["scancel", job_id]))
        _wait_gone(target, job_id)
        return Ended(130, "CANCELLED", "dlt")
    return final_state(target, slurm, seen=seen)


def _wait_gone(target: Target, job_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = target.shell.run(quote(["squeue", "-h", "-j", job_id, "-o", "%T"]))
        if not r.stdout.strip():
            return
        time.sleep(POLL_S)


@dataclass(frozen=True)
class Ended:
    """How a Slurm job ended, and who said so."""

    code: int
    state: str
    source: str       # sacct, scontrol, exit file, nothing (no one knew), dlt (Ctrl-C here)
    nodes: str = ""   # the nodes it ran on, as Slurm writes them (n[1-2])

    def into(self, slurm: SlurmInfo) -> SlurmInfo:
        """``slurm`` with this end (state, who said it, the nodes when known)."""
        return replace(slurm, state=self.state, state_from=self.source,
                       nodelist=self.nodes or slurm.nodelist)


def final_state(target: Target, slurm: SlurmInfo, *, lag_s: float = 5,
                seen: str = "") -> Ended:
    """How an ended job ended, asked in one round trip:
    ``sacct`` where the cluster keeps accounting (and has heard of the job's end: slurmctld
    tells slurmdbd a moment later), else ``scontrol show job`` while Slurm remembers the job,
    else the exit file the job script wrote. While sacct knows the job but not yet its end,
    it is asked again for up to ``lag_s`` seconds: scontrol's NodeList shrinks as the nodes
    finish, so only sacct keeps the whole allocation. Where sacct has not told the end, the
    nodes are those the job was ``seen`` on while running (squeue's, or sacct's own), and
    scontrol's only where no one saw the job run."""
    job_id = slurm.job_id
    exit_file = posixpath.join(slurm.run_dir, f"exit-{job_id}")
    deadline = time.monotonic() + lag_s
    while True:
        r = target.shell.run(quote(["sh", "-c", 'sacct -n -P -X -j "$1" -o '
                                    'State,ExitCode,NodeList 2>/dev/null | head -n 1; echo --; '
                                    'scontrol show job -o "$1" 2>/dev/null; echo --; '
                                    'cat "$2" 2>/dev/null', "_", job_id, exit_file]))
        acct, _, rest = r.stdout.partition("--\n")
        info, _, written = rest.partition("--\n")
        state, exit_code, nodes = parse_sacct(acct)
        seen = nodes if state == "RUNNING" and nodes not in ("", "None") else seen
        if state in ENDED or not state or time.monotonic() >= deadline:
            break
        time.sleep(0.5)  # accounting has the job, and will have its end in a moment
    source = "sacct"
    if state not in ENDED:
        state, _, exit_code, nodes = parse_state(info)
        nodes = seen or nodes
        source = "scontrol"
    if state not in ENDED:
        state, exit_code, nodes = "", "", seen
        source = "exit file" if written.strip() else "nothing"
    code, state = outcome(state, exit_code, written)
    return Ended(code, state, source, "" if nodes in ("None", "(null)") else nodes)


def parse_sacct(line: str) -> tuple[str, str, str]:
    """(State, ExitCode, NodeList) of ``sacct -n -P -o State,ExitCode,NodeList``'s first line
    ("CANCELLED by 0|0:15|n[1-2]"); empty when accounting said nothing."""
    state, code, nodes = (line.strip().split("|") + ["", ""])[:3]
    return (state.split()[0], code, nodes) if state and "|" in line else ("", "", "")


def outcome(state: str, exit_code: str, written: str) -> tuple[int, str]:
    """(exit code, state) from Slurm's state and ``code:signal``, and the exit file."""
    code = None
    if written.strip().lstrip("-").isdigit():
        code = int(written.strip())
    elif exit_code:  # "code:signal"
        first, _, sig = exit_code.partition(":")
        if sig.isdigit() and int(sig):
            code = 128 + int(sig)
        elif first.isdigit():
            code = int(first)
    if not state:
        state = "COMPLETED" if code == 0 else "FAILED" if code is not None else "UNKNOWN"
    if not code and state != "COMPLETED":
        # a job ended by Slurm's signal (scancel, its time limit) has no code of its own
        # (sacct: "CANCELLED by 0|0:0", the 15 only on the batch step): SIGTERM's, as a
        # stopped container's; any other end that is not a success is not 0 either
        code = 143 if state in _SIGNALLED else 1
    return code or 0, state


def cancel(target: Target, record: RunRecord) -> str:
    """``scancel`` the job of Slurm run ``record`` (its job id checked: a record is a file,
    and ``--user=me`` or a stranger's id must never reach scancel)."""
    job_id = slurm_job_id(record)
    r = target.shell.run(quote(["scancel", job_id]))
    if not r.ok:
        raise ClusterError(f"scancel {job_id} on {target.name} failed: {r.tail(1)}")
    _wait_gone(target, job_id)
    return job_id


def _is_job_id(text: str) -> bool:
    """A job id as ``sbatch --parsable`` prints it (the cluster name cut off): digits."""
    return text.isascii() and text.isdigit() and len(text) <= 12


def slurm_job_id(record: RunRecord) -> str:
    """The Slurm job id of ``record``, or a one-line error when it is none."""
    job_id = record.slurm.job_id if record.slurm else ""
    if not _is_job_id(job_id):
        raise ClusterError(f"the record of run {record.run_id} names Slurm job "
                           f"{job_id[:40]!r}, which is no job id: the record was edited; look "
                           f"in {record_file(Path(RUNS_DIR, record.run_id))}")
    return job_id


def slurm_records(project_dir: Any, host: str) -> list[RunRecord]:
    """The records of this project's Slurm runs submitted on ``host`` (newest first): only
    records whose run id and job id check out (:func:`.record.list_runs` checks the run id
    against its folder), since `stop` cancels their jobs."""
    from dltasks.runs.record import list_runs

    return [m for m in list_runs(project_dir)
            if m.slurm is not None and m.host == host and _is_job_id(m.slurm.job_id)]


def settle_slurm(target: Target, project_dir: Any, record: RunRecord) -> RunRecord:
    """A Slurm run's record with what Slurm says now; written once the job has ended."""
    if record.exit_code is not None or record.slurm is None:
        return record
    slurm = record.slurm
    r = target.shell.run(quote(["sh", "-c", _QUEUE, "_", slurm.job_id]))
    state, _, said = r.stdout.strip().partition("|")
    if state == "error" or not state:  # Slurm did not answer: the job's end is not known
        print(f"dlt: Slurm on {target.name} did not answer ({said or r.tail(1)}): the state of "
              f"job {slurm.job_id} is not known now", file=sys.stderr)
        return record.but(status="unknown")
    if state != "gone":
        return record.but(status=status_of(state))
    end = final_state(target, slurm)
    record = record.but(exit_code=end.code, status=status_of(end.state),
                        ended=record.ended or utcnow(), slurm=end.into(slurm))
    record.save(run_dir(project_dir, record.run_id), [])
    return record
