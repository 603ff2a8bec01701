"""Runs: `train` and `shell` (the run-finding tasks `ps`, `logs`, `stop`, `runs` are in
:mod:`dltasks.tasks.runs`).

Each task parses flags into a RunRequest and hands it to ``dltasks.runs.single``; the same body
serves `inv` (this machine) and `fab -H host` (a remote host).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from typing import Any

from invoke.exceptions import Exit

from dltasks.tasks._common import (
    command_after,
    dlt_task,
    job_targets,
    settings_for,
    settings_for_host,
    target_for,
)

_RUN_HELP = {
    "gpu": "free:N (N GPUs no other run holds), GPU ids (repeatable or 0,1), all, none or "
           "auto. Default: DLT_GPUS.",
    "share": "Take the GPUs asked for even when another run holds them or a process uses them.",
    "nproc": "Start the command with torchrun: gpu (one process per selected GPU) or N "
             "processes. Default: DLT_NPROC.",
    "wait": "When the GPUs are taken, wait for them (as long as it takes, or SECONDS / 5m / "
            "2h) instead of refusing.",
    "image": "Image to run instead of the project image.",
    "detach": "Start in the background and print the run id.",
    "dry_run": "Print the `docker run` equivalent and the path map; start nothing.",
    "root": "Run as root instead of your uid:gid.",
    "allow_unmapped": "Go on although some host paths are under no mounted root.",
    "args": "Arguments for the command, as one string (also: `inv train -- ARGS`).",
    "port": "[HOST:]CONTAINER: publish the container's port on the host's 127.0.0.1 (HOST: "
            "that port there, else a free one) and, with fab, forward it to this machine; the "
            "URL is printed (repeatable).",
}


def _remainder(c: Any) -> list[str]:
    """Arguments after `--`, quoting intact (invoke only keeps a space-joined string)."""
    from dltasks.tasks.invocation import invocation

    after = invocation(c).remainder
    if after is None:
        return []
    from dltasks.hosts.target import ssh_host_of

    if ssh_host_of(c):
        raise Exit("dlt: error: with fab, pass arguments as --args '...' (fab would run the "
                   "text after -- as a shell command on the host)", code=2)
    return list(after)


def _launch(c: Any, kind: str, command: str, *, gpu: list[str] | None, image: str,
            detach: bool, dry_run: bool, root: bool, allow_unmapped: bool, args: list[str],
            interactive: bool = False, share: bool = False, wait: Any = None,
            nproc: str = "", argv: tuple[str, ...] | None = None, ports: Sequence[Any] = (),
            finish: Any = None) -> None:
    """Start one run of ``kind`` on the context's target. ``ports``: the
    :class:`~dltasks.engine.spec.PortBinding` values to publish (``--port``, or a task's own
    such as a notebook's, with its URL path). ``finish(target, request)``: the task's last
    word on the request, once the target is open (notebook's look into the image)."""
    from dltasks.gpu.modes import facts_later
    from dltasks.gpu.selection import parse_gpu_request

    with target_for(c, image=image or None) as target:
        s = target.settings
        gpus = parse_gpu_request(gpu or None, default=s.gpus)
        # the host's GPU facts (nvidia-smi: tens of ms) come while the rest is imported
        facts = facts_later(target, gpus, tolerant=dry_run)
        from dltasks.gpu.share import parse_wait
        from dltasks.runs.plan import RunRequest
        from dltasks.runs.single import launch
        from dltasks.runs.torchrun import parse_nproc

        local = settings_for(c, host_layer=False, image=image or None) \
            if target.syncs_project else s
        req = RunRequest(kind=kind, command=command or s.train_cmd, args=tuple(args), argv=argv,
                         gpus=gpus, image=image, root=root, allow_unmapped=allow_unmapped,
                         interactive=interactive, share=share, wait=parse_wait(wait),
                         nproc=parse_nproc(nproc or s.nproc, "--nproc" if nproc else
                                           "DLT_NPROC") if kind == "train" else "",
                         ports=tuple(ports))
        if finish is not None:
            req = finish(target, req)
        forwarder = None
        # forwards that outlive us (the request's ports: a task's own, such as a notebook's)
        if detach and req.ports and not dry_run and target.forwards_need_a_process:
            from dltasks.tasks.ports import start_background_forward

            def forwarder(run_id: str, cid: str) -> None:
                start_background_forward(c, target, run_id, cid, req.kind)

        code = launch(target, local, req, detach=detach, dry_run=dry_run, gpu_facts=facts,
                      forwarder=forwarder)
    if code:
        raise Exit(code=code)


def _is_job(flags: dict[str, Any]) -> bool:
    """Whether `train` with ``flags`` is one job across hosts (it covers every host of -H)."""
    return int(flags.get("nnodes") or 0) > 1 and not flags.get("slurm")


@dlt_task(iterable=["gpu", "sbatch", "port"], optional=["wait"], short={"gpu": "g", "detach": "d"},
          group=_is_job, help={
    **_RUN_HELP,
    "nnodes": "One job across this many hosts (fab -H gpu1,gpu2, or DLT_HOSTS): torchrun on "
              "each, one run id, supervised as a whole.",
    "slurm": "Submit to Slurm (sbatch on this host; with fab, on the login node) instead.",
    "nodes": "--slurm: nodes (DLT_SLURM_NODES).",
    "gpus_per_node": "--slurm: GPUs per node (DLT_SLURM_GPUS_PER_NODE).",
    "partition": "--slurm: partition (DLT_SLURM_PARTITION).",
    "time": "--slurm: time limit (DLT_SLURM_TIME).",
    "account": "--slurm: account (DLT_SLURM_ACCOUNT).",
    "qos": "--slurm: QOS (DLT_SLURM_QOS).",
    "sbatch": "--slurm: more #SBATCH options, KEY=VALUE (repeatable).",
})
def train(c: Any, gpu: list[str] | None = None, image: str = "", detach: bool = False,
          dry_run: bool = False, root: bool = False, allow_unmapped: bool = False,
          args: str = "", share: bool = False, wait: Any = None, nproc: str = "",
          nnodes: int = 0, slurm: bool = False, nodes: int = 0, gpus_per_node: int = -1,
          partition: str = "", time: str = "", account: str = "", qos: str = "",
          sbatch: list[str] | None = None, port: list[str] | None = None) -> None:
    """Run DLT_TRAIN_CMD (plus ARGS) in the project's image, paths mapped, output streamed."""
    from dltasks.engine.spec import parse_ports
    from dltasks.runs.ports import check_ports_allowed

    ports = parse_ports(port or [])
    check_ports_allowed(ports, nnodes=nnodes, slurm=slurm)
    extra = shlex.split(args) + _remainder(c)
    if slurm:
        _slurm(c, extra, image=image, detach=detach, dry_run=dry_run, root=root,
               allow_unmapped=allow_unmapped, nproc=nproc, nodes=nodes,
               gpus_per_node=gpus_per_node, partition=partition, time=time, account=account,
               qos=qos, sbatch=sbatch or [])
        return
    if nnodes > 1:
        _job(c, nnodes, gpu=gpu, image=image, detach=detach, dry_run=dry_run, root=root,
             allow_unmapped=allow_unmapped, args=extra, share=share, nproc=nproc)
        return
    _launch(c, "train", "", gpu=gpu, image=image, detach=detach, dry_run=dry_run, root=root,
            allow_unmapped=allow_unmapped, args=extra, share=share, wait=wait, nproc=nproc,
            ports=ports)


def _slurm(c: Any, args: list[str], *, image: str, detach: bool, dry_run: bool, root: bool,
           allow_unmapped: bool, nproc: str, nodes: int, gpus_per_node: int, partition: str,
           time: str, account: str, qos: str, sbatch: list[str]) -> None:
    from dltasks.runs.plan import RunRequest
    from dltasks.runs.slurm import submit
    from dltasks.runs.slurmscript import SlurmJob
    from dltasks.runs.torchrun import parse_nproc

    with target_for(c, image=image or None) as target:
        s = target.settings
        local = settings_for(c, host_layer=False, image=image or None) \
            if target.syncs_project else s
        n = parse_nproc(nproc or s.nproc)
        job = SlurmJob(nodes=nodes or s.slurm_nodes,
                       gpus_per_node=s.slurm_gpus_per_node if gpus_per_node < 0
                       else gpus_per_node,
                       partition=partition or s.slurm_partition, time=time or s.slurm_time,
                       account=account or s.slurm_account, qos=qos or s.slurm_qos,
                       sbatch=tuple(s.slurm_sbatch) + tuple(sbatch), runtime=s.slurm_runtime,
                       gres=s.slurm_gres, nproc=int(n) if n.isdigit() else 0)
        req = RunRequest(kind="train", command=s.train_cmd, args=tuple(args), image=image,
                         root=root, allow_unmapped=allow_unmapped)
        code = submit(target, local, req, job, detach=detach, dry_run=dry_run)
    if code:
        raise Exit(code=code)


def _job_hosts(c: Any) -> tuple[list[str], str]:
    """The job's hosts (node 0 first) and where they came from."""
    from dltasks.hosts.target import ssh_host_of
    from dltasks.tasks.invocation import invocation

    if ssh_host_of(c):
        return list(invocation(c).hosts), "-H"
    hosts = list(settings_for(c).hosts)
    return hosts, "DLT_HOSTS" if hosts else "one host"


def _job(c: Any, nnodes: int, *, gpu: list[str] | None, image: str, detach: bool,
         dry_run: bool, root: bool, allow_unmapped: bool, args: list[str], share: bool,
         nproc: str) -> None:
    """One job across the hosts (with fab: called once for all of -H, see ``group=``)."""
    from dltasks.gpu.selection import parse_gpu_request
    from dltasks.runs.job import check_hosts, run_job
    from dltasks.runs.plan import RunRequest
    from dltasks.runs.torchrun import parse_nproc

    hosts, where = _job_hosts(c)
    check_hosts(nnodes, hosts, where)
    local = settings_for_host(c, None, image=image or None)
    req = RunRequest(kind="train", command=local.train_cmd, args=tuple(args),
                     gpus=parse_gpu_request(gpu or None, default=local.gpus), image=image,
                     root=root, allow_unmapped=allow_unmapped, share=share,
                     nproc=parse_nproc(nproc or local.nproc))
    with job_targets(c, hosts, image=image or None) as targets:
        code = run_job(targets, local, req, detach=detach, dry_run=dry_run)
    sys.stdout.flush()
    if code:
        raise Exit(code=code)


_SHELL_HELP = {k: v for k, v in _RUN_HELP.items() if k in ("gpu", "image", "root",
                                                          "allow_unmapped", "share", "wait",
                                                          "port")}


@dlt_task(iterable=["gpu", "port"], optional=["wait"], short={"gpu": "g"},
          help={**_SHELL_HELP, "cmd": "Shell to start (default: bash, else sh)."})
def shell(c: Any, gpu: list[str] | None = None, image: str = "", root: bool = False,
          allow_unmapped: bool = False, cmd: str = "", share: bool = False,
          wait: Any = None, port: list[str] | None = None) -> None:
    """An interactive shell in the same container setup as train (mounts, user, GPUs)."""
    from dltasks.engine.spec import parse_ports

    command = cmd or "command -v bash >/dev/null && exec bash || exec sh"
    _launch(c, "shell", command, gpu=gpu, image=image, detach=False, dry_run=False, root=root,
            allow_unmapped=allow_unmapped, args=[], interactive=True, share=share, wait=wait,
            ports=parse_ports(port or []))


_ONE_OFF_HELP = {**{k: v for k, v in _RUN_HELP.items() if k in (
    "gpu", "share", "wait", "image", "detach", "dry_run", "root", "allow_unmapped")},
    "cmd": "The command as one string, split as DLT_TRAIN_CMD is (shell syntax through sh -c): "
           "the way to give it with fab, which takes no words after -- with a task."}


@dlt_task(iterable=["gpu"], optional=["wait"], short={"gpu": "g", "detach": "d"},
          takes_command=True, help=_ONE_OFF_HELP)
def run(c: Any, gpu: list[str] | None = None, image: str = "", detach: bool = False,
        dry_run: bool = False, root: bool = False, allow_unmapped: bool = False,
        share: bool = False, wait: Any = None, cmd: str = "") -> None:
    """A one-off command in the same container setup as train: `inv run -- python3 prepare.py`
    (with fab: `fab -H gpu1 run --cmd 'python3 prepare.py'`). The words after -- run as
    given (no shell; one quoted word with shell syntax runs through sh -c), their paths
    mapped; its exit code is the program's; recorded in runs/<id>."""
    from dltasks.errors import DltError

    words = command_after(c)
    if words and cmd:
        raise DltError("run takes its command once: after -- or as --cmd '...', not both",
                       code=2)
    if not words and not cmd.strip():
        from dltasks.hosts.target import ssh_host_of

        how = "--cmd 'python3 prepare.py'" if ssh_host_of(c) else "-- python3 prepare.py"
        raise DltError(f"run needs its command: `inv run {how}`", code=2)
    _launch(c, "run", cmd or shlex.join(words or ()), gpu=gpu, image=image, detach=detach,
            dry_run=dry_run, root=root, allow_unmapped=allow_unmapped, args=[], share=share,
            wait=wait, argv=None if cmd else tuple(words or ()))
