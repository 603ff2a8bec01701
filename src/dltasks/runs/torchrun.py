"""PyTorch's own launcher around a run's command: ``torchrun`` (torch.distributed.run).

dltasks does not reimplement rendezvous; it writes the launcher's command line. One host:
``torchrun --standalone --nproc-per-node=N``. Several hosts (:mod:`dltasks.runs.job`): static
rendezvous with deterministic ranks (``--nnodes N --node-rank R --master-addr A
--master-port P``), or c10d with the job id as ``--rdzv-id``; always ``--max-restarts=0`` (a
failed rank ends the job: dltasks supervises it). ``--no-python`` runs the user's command as
it is (``python main.py``, a shell line, anything) in every worker, with RANK, LOCAL_RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT set by torchrun. ``--tee=3`` makes torchrun prefix each
worker line with its local rank, which :func:`rank_prefix` turns into the global rank.

A command that already starts with torchrun (or ``python -m torch.distributed.run``) is not
wrapped twice: the job's flags go right after the launcher's name, so flags the user wrote
win where they repeat ours.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dltasks.errors import DltError

GPU = "gpu"
STATIC, C10D = "static", "c10d"
_PY = re.compile(r"^(.*/)?python(3(\.\d+)?)?$")
_TEE_PREFIX = re.compile(rb"^\[(?:[A-Za-z_]*?)(\d+)\]:")


@dataclass(frozen=True)
class Launch:
    """How torchrun starts the workers of one node."""

    nproc: int
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = ""
    master_port: int = 0
    rdzv: str = STATIC
    job_id: str = ""


def parse_nproc(value: str, where: str = "--nproc") -> str:
    """``gpu`` (one per selected GPU), a number, or "" (no launcher)."""
    v = str(value or "").strip().lower()
    if v in ("", GPU):
        return v
    if not v.isdigit() or int(v) < 1:
        raise DltError(f"{where} {value!r}: give a number of processes (--nproc 2) or gpu "
                       "(one per selected GPU)")
    return str(int(v))


def count(nproc: str, gpus: int | None, where: str) -> int:
    """The processes per node for ``nproc`` with ``gpus`` selected GPUs (None: unknown)."""
    if nproc != GPU:
        return int(nproc)
    if not gpus:
        raise DltError(f"--nproc gpu on {where}: the run has no GPUs to count ("
                       f"{'none selected' if gpus == 0 else 'their number is unknown'}); "
                       "give --nproc N, or GPUs with --gpu")
    return gpus


def launcher_len(argv: Sequence[str]) -> int:
    """How many leading words of ``argv`` name torchrun (0 when it is not torchrun)."""
    if argv and argv[0].rsplit("/", 1)[-1] == "torchrun":
        return 1
    if len(argv) >= 3 and _PY.match(argv[0]) and argv[1] == "-m" and \
            argv[2] == "torch.distributed.run":
        return 3
    return 0


def flags(launch: Launch) -> list[str]:
    """torchrun's flags for one node of ``launch``."""
    out = [f"--nproc-per-node={launch.nproc}"]
    if launch.nnodes == 1:  # --local-addr: a container's host name may resolve to nothing
        out = ["--standalone", "--nnodes=1", "--local-addr=127.0.0.1", *out]
    elif launch.rdzv == C10D:
        out = [f"--nnodes={launch.nnodes}", "--rdzv-backend=c10d",
               f"--rdzv-endpoint={launch.master_addr}:{launch.master_port}",
               f"--rdzv-id={launch.job_id}", *out]
    else:
        out = [f"--nnodes={launch.nnodes}", f"--node-rank={launch.node_rank}",
               f"--master-addr={launch.master_addr}", f"--master-port={launch.master_port}",
               *out]
    return [*out, "--max-restarts=0", "--tee=3"]


def wrap(argv: Sequence[str], launch: Launch) -> tuple[str, ...]:
    """``argv`` started by torchrun as ``launch`` says."""
    n = launcher_len(argv)
    if n:
        return (*argv[:n], *flags(launch), *argv[n:])
    if len(argv) >= 3 and argv[0] == "sh" and argv[1] == "-c":  # a shell line (see
        words = argv[2].lstrip().split(None, 3)                  # containers.command_argv)
        n = launcher_len(words)
        if n:
            head = " ".join(words[:n])
            rest = argv[2].lstrip()[len(head):]
            line = " ".join([head, *(shlex.quote(f) for f in flags(launch))]) + rest
            return ("sh", "-c", line, *argv[3:])
    return ("torchrun", *flags(launch), "--no-python", *argv)


#: Variables of the user's shell that reach a distributed run's containers: the collective
#: libraries' settings (a host's NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1, ...).
PASS_PREFIXES = ("NCCL_", "TORCH_NCCL_", "TORCH_SYMM_MEM_", "GLOO_", "NVSHMEM_")


def passed_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k.startswith(PASS_PREFIXES)}


def omp_threads(cpus: int, nproc: int) -> int:
    """OMP_NUM_THREADS for ``nproc`` workers on ``cpus`` CPUs: a fair share, at least 1
    (torchrun's own default, 1 for everyone, starves CPU-side work)."""
    return max(1, cpus // max(1, nproc))


def rank_prefix(line: bytes, node: int, nproc: int) -> tuple[int | None, bytes]:
    """A worker line as torchrun's --tee prints it (``[default0]:text``): (its global rank,
    the text without torchrun's prefix); (None, line) for lines of torchrun itself."""
    m = _TEE_PREFIX.match(line)
    if not m:
        return None, line
    return node * nproc + int(m.group(1)), line[m.end():]
