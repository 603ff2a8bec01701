"""One training job across hosts: one run id, one container per host, torchrun in each.

``fab -H gpu1,gpu2 train --nnodes 2`` (or ``DLT_HOSTS``) runs :func:`run_job` once:

1. every host is made ready at once (:func:`_ready`): code synced, paths mapped for that host
   (its ``.env.<host>``), the outputs folder made, the image looked up;
2. the same image on every node, proved by image ID: a host that lacks it gets it copied from
   node 0 (:mod:`dltasks.images.copy`), or built there with ``DLT_JOB_IMAGE=build``;
3. node 0's address, a free port there, each node's interface (:mod:`dltasks.runs.jobnet`);
4. each node's container (host networking, ``torchrun --nnodes N --node-rank R
   --max-restarts 0``) is created and started under its host's GPU lock, in rank order;
5. every node's output is streamed live, each line prefixed with its host and rank
   (:mod:`dltasks.runs.supervise`, as is 6);
6. supervision: the first node to exit non-zero (or to lose its host's connection), or Ctrl-C,
   stops every other node (grace period, then kill); every container is removed; the job exits
   with the first failure's code, and the record says which node failed first and why.

Errors that can be known before anything starts (host count, an unreachable host, a taken
port, an image no host has) are one line each, with nothing started.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from dltasks.engine import lifecycle as runner
from dltasks.engine.spec import RunSpec, docker_run_cmdline
from dltasks.errors import ClusterError, DltError
from dltasks.gpu import modes as gpumode
from dltasks.gpu import share as gpushare
from dltasks.hosts.shell import quote
from dltasks.hosts.target import HostLogin, Target
from dltasks.runs import jobnet, torchrun
from dltasks.runs import output as localio
from dltasks.runs.plan import RunPlan, RunRequest, image_paths_note, plan_run
from dltasks.runs.prepare import (
    host_facts,
    image_record,
    nothing_left,
    prepare_host,
    settings_rows,
)
from dltasks.runs.record import (
    FailedFirst,
    GitState,
    JobInfo,
    NodePart,
    RunRecord,
    git_state_later,
    new_run_id,
    run_dir,
    utcnow,
)
from dltasks.runs.start import NodeRole, StartFacts, final_spec
from dltasks.runs.supervise import start_and_supervise
from dltasks.settings import Settings
from dltasks.settings.masking import secret_values


@dataclass
class JobNode:
    """One host's part of the job."""

    rank: int
    target: Target
    plan: RunPlan | None = None
    login: HostLogin | None = None
    image_id: str = ""
    image: str = ""         # what its container is made from (the proven image ID, once known)
    facts: gpumode.GpuFacts = field(default_factory=gpumode.GpuFacts)
    access: gpumode.GpuAccess | None = None
    spec: RunSpec | None = None     # the spec it starts (runs.start.final_spec)
    cid: str = ""
    code: int | None = None
    why: str = ""           # how it ended, when it ended the job
    first: bool = False     # the node whose end ended the job

    @property
    def name(self) -> str:
        return self.target.name

    def part(self) -> NodePart:
        spec = self.spec
        return NodePart(self.rank, self.name, self.image_id,
                        spec.gpus.describe() if spec else "", self.cid, self.code, self.why,
                        docker_run_cmdline(spec) if spec else "")


def check_hosts(nnodes: int, hosts: Sequence[str], where: str) -> None:
    """``--nnodes`` must match the hosts given (``where``: how they were given)."""
    if not hosts:
        raise ClusterError(f"--nnodes {nnodes} needs the job's hosts: fab -H gpu1,gpu2 train "
                           f"--nnodes {nnodes}, or DLT_HOSTS=gpu1,gpu2 in .env")
    if nnodes != len(hosts):
        raise ClusterError(f"--nnodes {nnodes} but {len(hosts)} host(s) in {where}: give one host "
                           f"per node (fab -H gpu1,gpu2 train --nnodes 2)")
    if len(set(hosts)) != len(hosts):
        raise ClusterError(f"a host appears twice in {where}: {','.join(hosts)}")


def run_job(targets: Sequence[Target], local: Settings, req: RunRequest, *,
            detach: bool = False, dry_run: bool = False) -> int:
    """Run ``req`` as one job over ``targets`` (node 0 first); returns its exit code."""
    job_id, started = new_run_id(), utcnow()
    nodes = [JobNode(r, t) for r, t in enumerate(targets)]
    git = git_state_later(local.project_dir)
    folder = run_dir(local.project_dir, job_id)
    with nothing_left(folder, git):
        with ThreadPoolExecutor(len(nodes), thread_name_prefix="dlt-node") as pool:
            for f in [pool.submit(_ready, n, local, req, job_id, started, dry_run)
                      for n in nodes]:
                f.result()
        image = nodes[0].plan.spec.image if nodes[0].plan else ""
        _same_image(nodes, image, dry_run)
        addr, port, ifaces = _meeting_point(nodes)
        for n in nodes:
            n.access = gpushare.preview(n.target, n.facts, req.gpus, share=req.share)
        _make_specs(nodes, addr, port, ifaces)
    record = _record(nodes, local, req, job_id, started, addr, port, image, git=git())
    secrets = secret_values({**local.container_env})
    if dry_run:
        for n in nodes:
            assert n.plan is not None
            print(f"# node {n.rank} on {n.name}")
            assert n.spec is not None
            print(docker_run_cmdline(n.spec, detach=detach))
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        return 0
    for n in nodes:
        assert n.plan is not None
        n.plan.run_dir.mkdir(parents=True, exist_ok=True)
    record.save(folder, secrets)  # before the start: a failure here stops nothing
    room = None if detach else localio.reserve(folder)  # the end fits a full disk
    print(f"dlt: job {job_id}: {len(nodes)} node(s) ({', '.join(n.name for n in nodes)}), "
          f"master {addr}:{port}", file=sys.stderr, flush=True)
    try:
        code = start_and_supervise(nodes, local, detach=detach, share=req.share,
                                    secrets=secrets)
    except DltError as e:
        record = record.but(ended=utcnow(), status="failed to start", error=e.message,
                            nodes=tuple(n.part() for n in nodes))
        localio.save_record(folder, record, secrets, room=room, what="the job's end")
        raise
    finally:
        if room is not None:
            with contextlib.suppress(OSError):
                room.unlink(missing_ok=True)
    first = next((n for n in nodes if n.first), None)
    record = record.but(nodes=tuple(n.part() for n in nodes))
    if detach:
        record = record.but(status="running")
        print(job_id)
        print(f"dlt: started job {job_id}; follow node K with `fab -H <its host> logs {job_id} "
              f"--follow`, stop it with `fab -H {nodes[0].name} stop {job_id}`",
              file=sys.stderr)
    else:
        record = record.but(
            ended=utcnow(), exit_code=code,
            status="interrupted" if code == runner.INTERRUPTED else "exited",
            failed_first=FailedFirst(first.rank, first.name, first.why) if first else None)
    localio.save_record(folder, record, secrets,
                        what="the job's start" if detach else f"the job's end (exit code {code})")
    return code


def _ready(n: JobNode, local: Settings, req: RunRequest, job_id: str, started: str,
           dry_run: bool) -> None:
    """Plan node ``n`` for its host, sync the code there, make its outputs folder, learn who
    runs there and the image's ID; its GPU facts come in the same moment."""
    t = n.target
    s = t.settings
    facts_later = gpumode.facts_later(t, req.gpus, tolerant=dry_run)
    image = req.image or s.image or local.image
    later = False  # node 0's project image (named by its hash), known once node 0 has it
    if not image:
        if n.rank == 0 or s.job_image == "build":
            from dltasks.images.build import ensure_project_image

            image = ensure_project_image(t, s)
        else:
            later = True
    n.plan = plan_run(local, s, host_facts(t), req, run_id=job_id, started=started,
                      image=image, part=f"node{n.rank}")
    if n.rank == 0 and n.plan.image_paths:
        print(image_paths_note(n.plan), file=sys.stderr, flush=True)
    try:
        if not dry_run:
            t.sync_project(s, runs=[job_id], quiet=False)
        n.login = prepare_host(t, n.plan)
        if not later:
            with contextlib.suppress(DltError):
                n.image_id = str(image_record(t, image).get("Id") or "")
    finally:
        n.facts = facts_later()


def _same_image(nodes: Sequence[JobNode], image: str, dry_run: bool) -> None:
    """Every node gets node 0's image (by ID): copied where missing or different. Then each
    node's container is made from the image ID proven for it, not from a name that could
    point elsewhere by the time it starts (a stale ``<project>:latest``, a retag)."""
    for n in nodes:
        n.image = n.plan.spec.image if n.plan is not None else ""
    for n in nodes[1:]:
        if n.plan is not None and not n.image:  # node 0's project image: look it up
            n.image = image
            with contextlib.suppress(DltError):
                n.image_id = str(image_record(n.target, image).get("Id") or "")
    _prove_same(nodes, image, dry_run)
    if dry_run:
        return
    for n in nodes:
        if n.plan is not None and n.image_id:
            n.image = n.image_id


def _prove_same(nodes: Sequence[JobNode], image: str, dry_run: bool) -> None:
    src = nodes[0]
    if not src.image_id:
        have = [n for n in nodes if n.image_id]
        if not have:
            raise ClusterError(f"image {image} is on none of the job's hosts "
                               f"({', '.join(n.name for n in nodes)}): build it with `fab -H "
                               f"{src.name} extend-image`, or set DLT_IMAGE to an image they have")
        src = have[0]
    for n in nodes:
        if n.image_id == src.image_id or dry_run:
            continue
        if n.target.settings.job_image == "build" and n.image_id:
            continue  # built there: same inputs, its own ID (the record says which)
        from dltasks.images.copy import copy_image

        copy_image(src.target, n.target, image)
        n.image_id = str(image_record(n.target, image).get("Id") or "")
        if n.image_id != src.image_id:
            raise ClusterError(f"image {image} on {n.name} is {n.image_id[:19]} after the copy, "
                               f"not {src.image_id[:19]} as on {src.name}")


def _meeting_point(nodes: Sequence[JobNode]) -> tuple[str, int, list[str]]:
    """(node 0's address as the others reach it, a free port there, each node's interface
    toward it; "" where unknown)."""
    head = nodes[0]
    s = head.target.settings
    addr = s.master_addr
    if not addr:
        peer = _peer_address(nodes[1].target) if len(nodes) > 1 else "127.0.0.1"
        line = _sh(head.target, jobnet.ROUTE_SCRIPT, peer)
        addr = jobnet.route_src(line) or _peer_address(head.target)
    port = jobnet.pick_port(jobnet.listening_ports(_sh(head.target, jobnet.PORTS_SCRIPT)),
                            s.master_port, where=head.name)
    with ThreadPoolExecutor(len(nodes), thread_name_prefix="dlt-route") as pool:
        lines = list(pool.map(lambda n: _sh(n.target, jobnet.ROUTE_SCRIPT, addr), nodes))
    return addr, port, [jobnet.route_dev(ln) for ln in lines]


def _peer_address(t: Target) -> str:
    """The address this machine's SSH connection to ``t`` goes to."""
    return t.peer_address()


def _sh(t: Target, script: str, *args: str) -> str:
    return t.shell.run(quote(["sh", "-c", script, "_", *args])).stdout


def _make_specs(nodes: Sequence[JobNode], addr: str, port: int, ifaces: Sequence[str]) -> None:
    """Each node's spec, from its plan and what its host told us (one function for every
    kind of run: :func:`dltasks.runs.start.final_spec`)."""
    hosts = tuple(n.name for n in nodes)
    shell_env = torchrun.passed_env(os.environ)
    for n, iface in zip(nodes, ifaces, strict=True):
        assert n.plan is not None and n.login is not None and n.access is not None
        role = NodeRole(n.rank, hosts, addr, port, n.target.settings.rendezvous, iface)
        n.spec = final_spec(n.plan, StartFacts(
            uid_gid=n.login.uid_gid, user=n.login.user, access=n.access, gpu_facts=n.facts,
            image=n.image, cpus=n.login.cpus, shell_env=shell_env, node=role))


def _record(nodes: Sequence[JobNode], local: Settings, req: RunRequest, job_id: str,
            started: str, addr: str, port: int, image: str, *, git: GitState) -> RunRecord:
    """The job's record as it starts."""
    head = nodes[0].spec
    assert head is not None
    return RunRecord(
        job_id, kind=req.kind, host=",".join(n.name for n in nodes), image=image,
        image_id=nodes[0].image_id, git=git, command=head.command,
        job=JobInfo(len(nodes), addr, port, nodes[0].target.settings.rendezvous),
        nodes=tuple(n.part() for n in nodes), settings=settings_rows(local), started=started)
