"""`train --slurm`: the same run submitted to a Slurm cluster as one batch job (pure parts).

:func:`job_script` writes the batch script dltasks submits with ``sbatch`` (and keeps in the
run record; ``--dry-run`` prints it): ``#SBATCH`` lines, the head node's address
(``scontrol show hostnames`` + ``srun -w head hostname --ip-address``), then ONE ``srun
--kill-on-bad-exit=1 --wait=60`` step with one task per node that starts torchrun there
(``--node-rank $SLURM_NODEID``, static rendezvous, ``--max-restarts=0``), so one failing rank
ends the job. The container runtime (``DLT_SLURM_RUNTIME``):

- ``pyxis``: ``srun --container-image --container-mounts --container-workdir`` (an enroot
  squashfs file, or a registry reference), the step named as the job (``--job-name``, so
  its tasks see the same SLURM_JOB_NAME): its containers stay unnamed, so pyxis removes them
  when the step ends (a named one would outlive the job in enroot's store), and ``exec``
  finds the step by that name and joins its container with ``--container-name=JOB.STEP:exec``,
  pyxis's own name for an unnamed step's container;
- ``apptainer``: ``apptainer exec --nv --bind`` of a SIF file;

  for both, unless ``DLT_SLURM_IMAGE`` gives the image in the runtime's own form, the file is
  made from the project image on the login host's engine (:data:`IMAGE_MAKERS`) and named by
  the image's ID, so an unchanged image is made once;
- ``docker`` (the last resort, for small clusters whose users are in the docker group): a
  wrapper per node runs ``docker run`` and removes the container when Slurm signals the step
  (scancel, the time limit, a failed sibling): the container is the engine's child, not
  Slurm's, so without the wrapper it would outlive the job. Slurm's cgroups do not confine
  it either: its GPUs are the ones Slurm granted the step (``SLURM_STEP_GPUS``, else
  ``CUDA_VISIBLE_DEVICES``) turned into the device request, never all of them.

The script writes ``exit-<job id>`` next to its output when it ends, so a run's end is known
even where the cluster keeps no accounting and Slurm has forgotten the job.

No container variable's value is on a command line or in the scripts: they are in
``container.env`` (:data:`ENV_FILE`, mode 0600 in the run's 0700 folder), read by ``docker run
--env-file`` on each node (docker), or sourced by the batch script, whose environment srun hands
to pyxis/apptainer (``ps`` shows command lines to every user; a process's environment only to
its owner). Slurm values (``--partition``, ``--sbatch`` ...) with a control character are
refused: a newline would add shell lines to the script; the rest are written as sbatch's
``#SBATCH`` parser reads them back (double quotes, backslash escapes).
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from dltasks.engine.spec import LABEL_GPUS, RunSpec
from dltasks.errors import DltError

RUNTIMES = ("docker", "pyxis", "apptainer")

#: How a runtime's image file is made from an image on the login host's engine: the tool, the
#: file's suffix, and the command (``$1``: the file to write, ``$2``: the image ID, ``$3``: its
#: name; apptainer's docker-daemon source wants a name).
IMAGE_MAKERS = {
    "pyxis": ("enroot", ".sqsh", 'enroot import -o "$1" "dockerd://$2"'),
    "apptainer": ("apptainer", ".sif", 'apptainer build "$1" "docker-daemon://$3"'),
}


def exec_key(runtime: str, name: str) -> str | None:
    """What the record keeps for `exec` to find a job's containers by: ``name``, the docker
    runtime's container name (node K's: ``NAME-nK``) or pyxis's main step's; apptainer: none."""
    return name if runtime in ("docker", "pyxis") else None


def image_file(image_dir: str, project: str, image_id: str, runtime: str) -> str:
    """Where the runtime's file of image ``image_id`` lives: one per project and image ID."""
    digest = image_id.partition(":")[2] or image_id
    return posixpath.join(image_dir, f"{project}-{digest[:12]}{IMAGE_MAKERS[runtime][1]}")


#: What :func:`make_image_script` prints when another submission made the file meanwhile.
MADE_MEANWHILE = "dlt: made meanwhile"


def make_image_script(runtime: str) -> str:
    """``sh -c`` script making the file ``$1`` (``$2``: image ID, ``$3``: name).

    One maker at a time per file (``flock`` on ``.<name>.lock`` next to it, where the host has
    flock): a submission that waited finds the file made and prints :data:`MADE_MEANWHILE`.
    The file is written under a temporary name and renamed, so a file by that name is always
    whole; interrupted (Ctrl-C, a dropped SSH session), the script removes the part it wrote.
    """
    return ('set -e; d=$(dirname "$1"); mkdir -p "$d"; '
            'exec 9>>"$d/.$(basename "$1").lock"; '
            "if command -v flock >/dev/null; then flock 9; fi; "
            f'if [ -f "$1" ]; then echo "{MADE_MEANWHILE}"; exit 0; fi; '
            'tmp="$1.part-$$"; '
            "trap 'rm -f \"$tmp\"' EXIT; trap 'exit 130' INT TERM HUP; "
            f'set -- "$tmp" "$2" "$3" "$1"; {IMAGE_MAKERS[runtime][2]}; mv -f "$1" "$4"')


#: The run folder's file of the container's variables (mode 0600): see :func:`env_file`.
ENV_FILE = "container.env"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: What goes into an #SBATCH line as it is; anything else is double-quoted (:func:`sbatch_value`).
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+=,%-]*$")
#: Each checked field of :class:`SlurmJob`: the flag and the setting it comes from.
_FLAGS = {"partition": "--partition (or DLT_SLURM_PARTITION)",
          "time": "--time (or DLT_SLURM_TIME)", "account": "--account (or DLT_SLURM_ACCOUNT)",
          "qos": "--qos (or DLT_SLURM_QOS)"}


def check_line(what: str, value: str, fix: str) -> None:
    """Refuse ``value`` when it holds a control character (a newline would start a new line of
    the batch script: a shell command of the user's job, or another #SBATCH option)."""
    m = _CONTROL.search(value)
    if m:
        raise DltError(f"{what} {value!r} holds a control character ({m.group()!r}), which "
                       f"cannot go into a Slurm batch script: {fix}")


def sbatch_value(value: str) -> str:
    """``value`` as sbatch's ``#SBATCH`` parser reads it back: as it is when plain, else in
    double quotes with ``\\`` and ``"`` escaped (a space would end the option, ``#`` start a
    comment)."""
    if _PLAIN.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class SlurmJob:
    """What the user asked of Slurm (checked when made: one line for a value Slurm's batch
    script cannot carry)."""

    nodes: int = 1
    gpus_per_node: int = 0
    partition: str = ""
    time: str = ""
    account: str = ""
    qos: str = ""
    sbatch: tuple[str, ...] = ()     # free-form KEY=VALUE
    runtime: str = "docker"
    gres: bool = False               # --gres=gpu:G instead of --gpus-per-node=G
    nproc: int = 0                   # torchrun processes per node (0: GPUs, else 1)

    def __post_init__(self) -> None:
        for field, flag in _FLAGS.items():
            check_line(flag, getattr(self, field), "write the value on one line")
        for kv in self.sbatch:
            check_line("--sbatch (or DLT_SLURM_SBATCH)", kv, "write each KEY=VALUE on one line")
            key, _, _ = kv.partition("=")
            if not key or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", key.lstrip("-")):
                raise DltError(f"--sbatch {kv!r}: write KEY=VALUE (e.g. --sbatch mem=64G)")


def sbatch_lines(job: SlurmJob, name: str, output: str) -> list[str]:
    """The ``#SBATCH`` lines; ``output``: sbatch's file name pattern (``%j``: the job id)."""
    check_line("the job's output file", output, "move the project to a path without one")
    lines = [f"--job-name={sbatch_value(name)}", f"--nodes={job.nodes}", "--ntasks-per-node=1",
             f"--output={sbatch_value(output)}"]
    if job.gpus_per_node:
        lines.append(f"--gres=gpu:{job.gpus_per_node}" if job.gres
                     else f"--gpus-per-node={job.gpus_per_node}")
    for key, value in (("partition", job.partition), ("time", job.time),
                       ("account", job.account), ("qos", job.qos)):
        if value:
            lines.append(f"--{key}={sbatch_value(value)}")
    for kv in job.sbatch:  # checked by SlurmJob
        key, sep, value = kv.partition("=")
        lines.append(f"--{key.lstrip('-')}" + (f"={sbatch_value(value)}" if sep else ""))
    return [f"#SBATCH {x}" for x in lines]


def torchrun_line(job: SlurmJob, command: Sequence[str]) -> str:
    """The torchrun command line of every node, for ``bash -c`` there: $SLURM_NODEID,
    $DLT_HEAD_ADDR and $DLT_PORT are the node's own (the batch script exports the last two;
    srun passes them on)."""
    nproc = procs(job)
    return " ".join(["exec torchrun", f"--nnodes={job.nodes}", '--node-rank="$SLURM_NODEID"',
                     '--master-addr="$DLT_HEAD_ADDR"', '--master-port="$DLT_PORT"',
                     f"--nproc-per-node={nproc}", "--max-restarts=0", "--tee=3",
                     "--no-python", shlex.join(command)])


_MOUNT_FLAGS = {"docker": "docker run -v", "pyxis": "srun --container-mounts",
                "apptainer": "apptainer --bind"}


def check_mounts(spec: RunSpec, runtime: str) -> None:
    """Refuse a mounted path the runtime's mount syntax cannot carry: ``:`` separates source,
    target and options in all three; ``,`` separates the mounts of pyxis's and apptainer's
    lists. One line naming the path and the fix."""
    seps = ":" if runtime == "docker" else ":,"
    for m in spec.mounts:
        for path in (m.source, m.target):
            check_line("the mounted path", path, "move or link it to a path without one")
            bad = next((c for c in seps if c in path), "")
            if bad == ":":
                raise DltError(f"the mounted path {path!r} holds ':', which separates "
                               f"SOURCE:TARGET[:ro] in {_MOUNT_FLAGS[runtime]}: move or link "
                               "it to a path without ':'")
            if bad:
                raise DltError(f"the mounted path {path!r} holds ',', which separates the "
                               f"mounts of {_MOUNT_FLAGS[runtime]}: move or link it to a path "
                               "without ',', or set DLT_SLURM_RUNTIME=docker")


def _mounts(spec: RunSpec) -> str:
    return ",".join(f"{m.source}:{m.target}" + (":ro" if m.readonly else "")
                    for m in spec.mounts)


def env_file(spec: RunSpec, runtime: str) -> str:
    """The text of :data:`ENV_FILE`: the container's variables, never on a command line.

    docker: ``docker run --env-file``'s format, ``KEY=VALUE`` a line, taken literally (so a
    value cannot hold a line break: refused, naming the variable, never its value).
    pyxis/apptainer: ``export`` lines the batch script sources (shell-quoted)."""
    if runtime != "docker":
        return "".join(f"export {shlex.quote(f'{k}={v}')}\n" for k, v in spec.env.items())
    for k, v in spec.env.items():
        if "\n" in v or "\r" in v:
            raise DltError(f"the container variable {k!r} holds a line break, "
                           "which docker's --env-file (one KEY=VALUE a line) cannot carry to "
                           "the Slurm nodes: write it on one line, or set "
                           "DLT_SLURM_RUNTIME=pyxis")
    return "".join(f"{k}={v}\n" for k, v in spec.env.items())


def docker_wrapper(spec: RunSpec, job: SlurmJob, name: str, *, env: str) -> str:
    """The per-node script of the docker runtime (run by srun, one task per node); ``env``:
    the run's :data:`ENV_FILE`, which holds the container's variables. The GPUs are the ones
    Slurm granted the step (``SLURM_STEP_GPUS``, else ``CUDA_VISIBLE_DEVICES``), and so is the
    container's GPU label: ``spec`` has none (it never holds the request)."""
    check_mounts(spec, "docker")
    args = ["--rm", "--name", '"$name"', "--network=host", "--init", "--ipc=host"]
    if spec.user:
        args += ["--user", shlex.quote(spec.user)]
    for m in spec.mounts:
        args += ["-v", shlex.quote(f"{m.source}:{m.target}" + (":ro" if m.readonly else ""))]
    args += ["-w", shlex.quote(spec.workdir)]
    if spec.env:
        args += ["--env-file", shlex.quote(env)]
    args += ["-e", "DLT_HEAD_ADDR", "-e", "DLT_PORT", "-e", "SLURM_NODEID", "-e", "SLURM_JOB_ID"]
    for k, v in spec.labels.items():
        args += ["--label", shlex.quote(f"{k}={v}")]
    args += ["--label", '"dltasks.node=$SLURM_NODEID"']
    return "\n".join([
        "#!/bin/bash",
        "# dltasks: one node of a Slurm job (docker runtime). The container is the engine's",
        "# child, not Slurm's: it is removed here when Slurm signals the step.",
        f'name="{name}-n$SLURM_NODEID"' if _PLAIN.match(name)
        else f'name={shlex.quote(name)}"-n$SLURM_NODEID"',  # DLT_PROJECT is the user's
        'gpus="${SLURM_STEP_GPUS:-${CUDA_VISIBLE_DEVICES:-}}"',
        # the GPUs Slurm granted this step, and the claim label naming them (gpu/claims:
        # a run of dltasks on this host sees them held); no GPUs, no label
        'gpuflag=(); [ -n "$gpus" ] && gpuflag=(--gpus "\\"device=$gpus\\"" '
        f'--label "{LABEL_GPUS}=$gpus")',
        'cleanup() { docker rm -f "$name" >/dev/null 2>&1; }',
        "trap 'cleanup; exit 143' TERM INT HUP",
        f'docker run "${{gpuflag[@]}}" {" ".join(args)} {shlex.quote(spec.image)} '
        f"bash -c {shlex.quote(torchrun_line(job, spec.command))} &",
        "wait $!; code=$?",
        "cleanup",
        "exit $code",
        "",
    ])


def job_script(spec: RunSpec, job: SlurmJob, *, name: str, run_dir: str, wrapper: str = "",
               port: int = 0) -> str:
    """The batch script; ``run_dir``: the run's folder on the cluster's shared filesystem
    (output, exit code, :data:`ENV_FILE` and, for docker, the per-node ``wrapper`` live
    there)."""
    if job.runtime not in RUNTIMES:
        raise DltError(f"DLT_SLURM_RUNTIME={job.runtime!r}: expected one of "
                       f"{', '.join(RUNTIMES)}")
    check_mounts(spec, job.runtime)
    lines = [
        "#!/bin/bash",  # %% in sbatch's output pattern: a % of the path itself
        *sbatch_lines(job, name, f"{run_dir.replace('%', '%%')}/slurm-%j.out"),
        f"# written by dltasks (run {name})" if _PLAIN.match(name) else "# written by dltasks",
        'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        'export DLT_HEAD_ADDR=$(srun --nodes=1 --ntasks=1 -w "$head" hostname --ip-address '
        "| awk '{print $1}')",
        f"export DLT_PORT={port or '$((29500 + SLURM_JOB_ID % 1000))'}",
        'echo "dlt: job $SLURM_JOB_ID on $SLURM_JOB_NODELIST, head $head '
        '($DLT_HEAD_ADDR:$DLT_PORT)"',
    ]
    step = ("srun --label --kill-on-bad-exit=1 --wait=60 --nodes=$SLURM_NNODES "
            "--ntasks-per-node=1")
    inner = shlex.quote(torchrun_line(job, spec.command))
    if job.runtime == "docker":
        lines.append(f"{step} bash {shlex.quote(wrapper)}")
    else:
        if spec.env:  # the values, from the run's private file: in no script, no argv
            lines.append(f". {shlex.quote(posixpath.join(run_dir, ENV_FILE))}")
        if job.runtime == "pyxis":
            lines.append(f"{step} --job-name={shlex.quote(name)} "
                         f"--container-image={shlex.quote(spec.image)} "
                         f"--container-mounts={shlex.quote(_mounts(spec))} "
                         f"--container-workdir={shlex.quote(spec.workdir)} bash -c {inner}")
        else:
            lines.append(f"{step} apptainer exec --nv --bind {shlex.quote(_mounts(spec))} "
                         f"--pwd {shlex.quote(spec.workdir)} {shlex.quote(spec.image)} "
                         f"bash -c {inner}")
    lines += ["code=$?", f'echo "$code" > {shlex.quote(run_dir)}/exit-"$SLURM_JOB_ID"',
              "exit $code", ""]
    return "\n".join(lines)


_LABEL = re.compile(r"^\s*(\d+): ")


def node_line(line: str, nproc: int) -> str:
    """An output line of the job as people read it: srun's ``--label`` (the node) and
    torchrun's ``--tee`` prefix (the local rank) become ``[node N rank R] ``."""
    from dltasks.runs.torchrun import rank_prefix

    m = _LABEL.match(line)
    if not m:
        return line
    node, rest = int(m.group(1)), line[m.end():]
    rank, text = rank_prefix(rest.encode(), node, nproc)
    if rank is None:
        return f"[node {node}] {rest}"
    return f"[node {node} rank {rank}] {text.decode(errors='replace')}"


def procs(job: SlurmJob) -> int:
    return job.nproc or max(1, job.gpus_per_node)


def parse_state(text: str) -> tuple[str, str, str, str]:
    """(JobState, Reason, ExitCode, NodeList) from ``scontrol show job -o``'s line."""
    fields = dict(re.findall(r"(\w+)=(\S*)", text))
    return (fields.get("JobState", ""), fields.get("Reason", ""), fields.get("ExitCode", ""),
            fields.get("NodeList", ""))


def sbatch_error(stderr: str, where: str, job: SlurmJob) -> str:
    """One line for sbatch's refusal, with the fix."""
    low = stderr.lower()
    said = " ".join(stderr.split())[:200]
    if "invalid partition" in low:
        return (f"Slurm on {where} has no partition {job.partition!r} ({said}): `sinfo` lists "
                "them; set --partition or DLT_SLURM_PARTITION")
    if "requested node configuration is not available" in low:
        what = f"{job.gpus_per_node} GPU(s) per node on {job.nodes} node(s)"
        return (f"no node set on {where} offers {what} ({said}): ask for fewer "
                "(--gpus-per-node, --nodes), or another partition")
    if "invalid account" in low or "invalid qos" in low:
        return f"Slurm on {where} refused the job ({said}): check --account / --qos"
    return f"sbatch on {where} refused the job: {said}"
