"""torchrun's command lines, node prefixes, and where a job's nodes meet (pure logic)."""

from __future__ import annotations

import pytest

from dltasks.errors import DltError
from dltasks.runs.jobnet import listening_ports, pick_port, route_dev, route_src
from dltasks.runs.torchrun import Launch, count, omp_threads, parse_nproc, rank_prefix, wrap


def test_one_host_standalone_around_any_command() -> None:
    assert wrap(("python", "main.py", "--lr", "1"), Launch(2)) == (
        "torchrun", "--standalone", "--nnodes=1", "--local-addr=127.0.0.1",
        "--nproc-per-node=2", "--max-restarts=0",
        "--tee=3", "--no-python", "python", "main.py", "--lr", "1")


def test_static_and_c10d_across_hosts() -> None:
    static = wrap(("python3", "t.py"), Launch(4, 2, 1, "10.0.0.5", 29500))
    assert static[:5] == ("torchrun", "--nnodes=2", "--node-rank=1", "--master-addr=10.0.0.5",
                          "--master-port=29500")
    c10d = wrap(("python3", "t.py"), Launch(4, 2, 1, "10.0.0.5", 29500, "c10d", "job7"))
    assert "--rdzv-endpoint=10.0.0.5:29500" in c10d and "--rdzv-id=job7" in c10d
    assert not any(a.startswith("--node-rank") for a in c10d)


def test_a_command_that_is_torchrun_already_is_not_wrapped_twice() -> None:
    got = wrap(("torchrun", "--nproc-per-node=8", "t.py"), Launch(2, 2, 0, "a", 1))
    assert got.count("torchrun") == 1 and got[-2:] == ("--nproc-per-node=8", "t.py")
    assert got[1] == "--nnodes=2"                  # ours first: the user's flags win
    got = wrap(("python3", "-m", "torch.distributed.run", "t.py"), Launch(2))
    assert got[:4] == ("python3", "-m", "torch.distributed.run", "--standalone")
    shell = wrap(("sh", "-c", "torchrun --nproc-per-node=2 t.py | tee log"), Launch(2))
    assert shell[:2] == ("sh", "-c") and shell[2].startswith("torchrun --standalone ")
    assert shell[2].endswith(" --nproc-per-node=2 t.py | tee log")
    assert wrap(("sh", "-c", "echo $X"), Launch(1))[:1] == ("torchrun",)


def test_nproc_values_and_counts() -> None:
    assert parse_nproc("gpu") == "gpu" and parse_nproc("") == "" and parse_nproc("04") == "4"
    with pytest.raises(DltError, match="--nproc 'x'"):
        parse_nproc("x")
    assert count("gpu", 2, "h") == 2 and count("3", None, "h") == 3
    with pytest.raises(DltError, match="no GPUs to count"):
        count("gpu", 0, "h")
    assert omp_threads(16, 4) == 4 and omp_threads(2, 8) == 1


def test_rank_prefix() -> None:
    assert rank_prefix(b"[default1]:hello", node=2, nproc=4) == (9, b"hello")
    assert rank_prefix(b"W1201 warning", node=0, nproc=1) == (None, b"W1201 warning")


def test_routes_and_ports() -> None:
    line = "local 127.0.0.3 dev lo table local src 127.0.0.1 uid 0 "
    assert route_src(line) == "127.0.0.1" and route_dev(line) == "lo"
    line = "10.1.2.3 via 10.1.0.1 dev ens5 src 10.1.0.7 uid 1000"
    assert route_src(line) == "10.1.0.7" and route_dev(line) == "ens5"
    assert route_src("noip") == ""
    tcp = ("  sl  local_address rem_address   st tx_queue rx_queue\n"
           "   0: 00000000:732C 00000000:0000 0A 00000000:00000000 00:00000000\n"   # 29484
           "   1: 0100007F:733C 00000000:0000 0A 00000000:00000000 00:00000000\n"   # 29500
           "   2: 0100007F:733D 0100007F:1F90 01 00000000:00000000 00:00000000\n")  # 29501, est.
    assert listening_ports(tcp) == {29484, 29500}
    assert pick_port({29500}, where="h") == 29501
    with pytest.raises(DltError, match="DLT_MASTER_PORT=29500 is taken on gpu1"):
        pick_port({29500}, 29500, where="gpu1")


def test_job_hosts_must_match_nnodes() -> None:
    from dltasks.runs.job import check_hosts

    with pytest.raises(DltError, match="--nnodes 2 needs the job's hosts: fab -H gpu1,gpu2"):
        check_hosts(2, [], "DLT_HOSTS")
    with pytest.raises(DltError, match="--nnodes 3 but 2 host"):
        check_hosts(3, ["a", "b"], "-H")
    with pytest.raises(DltError, match="appears twice"):
        check_hosts(2, ["a", "a"], "-H")
