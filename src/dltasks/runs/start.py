"""The spec a run starts, made in one pure step from its plan and what the host told us.

:func:`dltasks.runs.plan.plan_run` decides everything that needs no host: mounts, the mapped
command, arguments and environment, the labels. What only the host can tell (who runs there,
which GPUs the run got under the host's lock and how they get in, the image's ID, a job
node's place) is gathered by :mod:`dltasks.runs.prepare` and the GPU lock into
:class:`StartFacts`; :func:`final_spec` turns the two into the RunSpec to start. A single run
is the one-node case; a job node adds its :class:`NodeRole`; a Slurm node has no GPU decision
of ours (Slurm grants them) and no launcher of ours (the batch script writes torchrun's line).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from dltasks.engine.spec import LABEL_GPUS, LABEL_NODE, LABEL_NODES, LABEL_USER, RunSpec
from dltasks.gpu.modes import GpuAccess, GpuFacts, apply_access
from dltasks.runs import torchrun
from dltasks.runs.plan import RunPlan

#: The variables that name a job node's interface toward node 0 (unless the user set them).
NCCL_FIXED = ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME")


@dataclass(frozen=True)
class NodeRole:
    """A job node's place in its job (:mod:`dltasks.runs.job`)."""

    rank: int
    hosts: tuple[str, ...]               # the job's hosts, in rank order
    master_addr: str                     # node 0's address, as the others reach it
    master_port: int
    rendezvous: str = torchrun.STATIC
    iface: str = ""                      # this node's interface toward node 0 ("": unknown)


@dataclass(frozen=True)
class StartFacts:
    """What was learned on the host before the start (each field: "" or None when not known,
    and then the plan's value stands)."""

    uid_gid: str = ""                    # the login's uid:gid on the host
    user: str = ""                       # the login's name: the user label, USER and LOGNAME
    access: GpuAccess | None = None      # the GPUs the run got (under the host's lock) and how
    gpu_facts: GpuFacts = field(default_factory=GpuFacts)   # counts --gpu all for --nproc gpu
    image: str = ""                      # the image to start (a job node: its proven image ID)
    image_env: Mapping[str, str] = field(default_factory=dict)  # the image's own environment
    cpus: int = 1                        # the host's CPUs (OMP_NUM_THREADS under torchrun)
    shell_env: Mapping[str, str] = field(default_factory=dict)  # torchrun.passed_env(os.environ)
    node: NodeRole | None = None         # a job's node
    #: A node of a Slurm job: its GPUs are Slurm's grant (no GPU label here: the node script
    #: labels its container with the GPUs Slurm gave it), the batch script starts torchrun,
    #: and USER/LOGNAME are left to the cluster.
    slurm: bool = False


def gpu_count(access: GpuAccess, facts: GpuFacts) -> int | None:
    """How many GPUs a run with ``access`` gets (None: all of the host's, number unknown)."""
    from dltasks.gpu.selection import ALL, IDS, NONE

    sel = access.selection
    if access.mode == NONE or not sel.wants_gpus:
        return 0
    if sel.mode == IDS:
        return len(sel.ids)
    host = facts.host
    if sel.mode == ALL and host is not None:
        return len(host.status.gpus) or len(host.driver.gpus) or None
    return None


def launch_of(plan: RunPlan, facts: StartFacts) -> torchrun.Launch | None:
    """How torchrun starts this run's workers (None: no launcher). A job node always has one
    (``--nproc`` or one per GPU, else one); a single run when ``--nproc`` is given."""
    nproc, node = plan.request.nproc, facts.node
    if facts.slurm or (not nproc and node is None):
        return None
    gpus = gpu_count(facts.access, facts.gpu_facts) if facts.access is not None else 0
    if node is not None and not nproc:
        nproc = torchrun.GPU if gpus else "1"
    n = torchrun.count(nproc, gpus, plan.host)
    if node is None:
        return torchrun.Launch(n)
    return torchrun.Launch(n, nnodes=len(node.hosts), node_rank=node.rank,
                           master_addr=node.master_addr, master_port=node.master_port,
                           rdzv=node.rendezvous, job_id=plan.run_id)


def final_spec(plan: RunPlan, facts: StartFacts) -> RunSpec:
    """The RunSpec to start for ``plan`` on a host that told us ``facts``.

    In order: the image; the GPUs and how they get in, with the GPU label naming the GPUs
    the run got; a job node's host network, interface and labels; torchrun around the
    command (the shell's NCCL_* and kin passed in, OMP_NUM_THREADS a fair share of the host's
    CPUs unless set); who runs (the login's uid:gid unless ``--root``, its name as USER and
    LOGNAME: the uid may be in no passwd file of the image, and tools such as
    getpass.getuser(), used by torch's compile caches, ask)."""
    req, node = plan.request, facts.node
    spec = plan.spec
    if facts.image:
        spec = replace(spec, image=facts.image)
    labels = dict(spec.labels)
    if facts.access is not None and not facts.slurm:
        spec = apply_access(spec, facts.access, facts.image_env)
        labels[LABEL_GPUS] = facts.access.selection.describe()
    env = dict(spec.env)
    command = spec.command
    network = spec.network
    if node is not None:
        given = {**facts.shell_env, **env}  # .env.<host>, then the shell
        for key in NCCL_FIXED:
            if node.iface and key not in given:
                env[key] = node.iface
        labels[LABEL_NODE], labels[LABEL_NODES] = str(node.rank), ",".join(node.hosts)
        network = "host"
    launch = launch_of(plan, facts)
    if launch is not None:
        env = {**facts.shell_env, **env}
        env.setdefault("OMP_NUM_THREADS", str(torchrun.omp_threads(facts.cpus, launch.nproc)))
        command = torchrun.wrap(command, launch)
    if facts.user and not facts.slurm:
        labels[LABEL_USER] = facts.user
        if not req.root:
            env = {"USER": facts.user, "LOGNAME": facts.user, **env}
    return replace(spec, command=command, env=env, labels=labels, network=network,
                   user=None if req.root else (facts.uid_gid or spec.user))
