"""The GPU picker over real nvidia-smi CSV (tests/data/nvidia-smi) and container label sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dltasks.engine.spec import CLAIM_LABELS
from dltasks.errors import DltError
from dltasks.gpu.claims import (
    Claim,
    GpusTaken,
    GpuStatus,
    NotEnoughGpus,
    choose_gpus,
    claims_from,
    parse_apps,
    parse_smi_gpus,
    parse_status,
)
from dltasks.gpu.report import report, table
from dltasks.gpu.selection import parse_gpu_request as parse_selection
from dltasks.gpu.share import parse_wait

DATA = Path(__file__).resolve().parent.parent / "data" / "nvidia-smi"


def status(name: str) -> GpuStatus:
    gpus = (DATA / f"{name}-gpus.csv").read_text().splitlines()
    apps = (DATA / f"{name}-apps.csv").read_text().splitlines()
    return GpuStatus(parse_smi_gpus(gpus), parse_apps(apps), True)


def row(run: str, gpus: str, state: str = "running", user: str = "alice",
        project: str = "proj") -> dict[str, Any]:
    return {"Id": run * 8, "State": state,
            "Labels": {"dltasks.run": run, "dltasks.user": user, "dltasks.project": project,
                       "dltasks.started": "2026-12-01T23:01:07+00:00", "dltasks.gpus": gpus}}


def claims(*rows: dict[str, Any]) -> list[Claim]:
    return claims_from(rows, labels=CLAIM_LABELS)


def test_an_old_label_holding_a_request_claims_nothing() -> None:
    """Containers started by older versions may still run with the request (free:N) in their
    GPU label: it names no GPU, so it holds none; the label of a run's GPUs still counts."""
    got = claims(row("old", "free:2"), row("r1", "0,3"))
    assert [(c.run_id, c.gpus) for c in got] == [("r1", ("0", "3"))]


def pick(sel: str, st: GpuStatus, cl: list[Claim], share: bool = False, free_mib: int = 1024
         ) -> tuple[str, ...]:
    got = choose_gpus(parse_selection(sel), st, cl, free_mib=free_mib, where="gpu1", share=share)
    return got.selection.ids


def test_eight_gpus_parse_with_mig_lost_and_na_fields() -> None:
    st = status("eight")
    by = st.by_index()
    assert sorted(by) == [0, 1, 2, 3, 4, 5, 6, 7]
    assert by[1].memory_used == 70422 and by[1].utilization == 97 and by[1].temperature == 64
    assert by[4].mig and by[4].utilization is None            # [N/A]
    assert by[5].temperature is None and not by[5].lost
    lost = [g for g in st.gpus if g.lost]
    assert len(lost) == 1 and lost[0].bus_id == "0000:AB:00.0"
    assert "fell off the bus" in lost[0].lost and "Unknown Error" in lost[0].lost
    assert [a.pid for a in st.apps] == [81234, 90210] and st.apps[0].memory == 70400


def test_free_picks_the_lowest_free_gpus_skipping_busy_mig_lost_and_claimed() -> None:
    st = status("eight")
    # 1: a process, 70 GiB; 3: 2310 MiB in use, no process; 4: MIG; 7: lost; 6: a process
    assert pick("free:2", st, []) == ("0", "2")
    assert pick("free:3", st, [], free_mib=4096) == ("0", "2", "3")   # threshold raised
    assert pick("free:2", st, claims(row("r1", "0"))) == ("2", "5")
    with pytest.raises(NotEnoughGpus) as e:
        pick("free:4", st, claims(row("r1", "0")))
    msg = e.value.message
    assert msg.startswith("--gpu free:4: 2 of 8 GPU(s) on gpu1 free (GPU 2,5)")
    assert "GPU 0 held by run r1 (alice, proj, since 2026-12-01 23:01)" in msg
    assert "GPU 1 busy: python3 pid 81234 70400 MiB" in msg
    assert "GPU 3 busy: 2310 MiB in use (over DLT_GPU_FREE_MIB=1024)" in msg
    assert "GPU 4 in MIG mode" in msg and "GPU 7 lost: fell off the bus" in msg
    assert "--wait" in msg and "\n" not in msg


def test_processes_only_with_minus_one() -> None:
    st = status("eight")
    assert pick("free:3", st, [], free_mib=-1) == ("0", "2", "3")


def test_h200_held_by_a_10_gib_process_is_busy() -> None:
    assert pick("free:1", status("h200-idle"), []) == ("0",)
    with pytest.raises(NotEnoughGpus, match=r"GPU 0 busy: python3 pid 499 10758 MiB"):
        pick("free:1", status("h200-held"), [])
    with pytest.raises(GpusTaken, match=r"--gpu 0 on gpu1: GPU 0 is busy: python3 pid 499"):
        pick("0", status("h200-held"), [])
    assert pick("0", status("h200-held"), [], share=True) == ("0",)


def test_explicit_ids_are_checked_against_claims_by_index_uuid_and_all() -> None:
    st = status("eight")
    uuid2 = st.by_index()[2].uuid
    with pytest.raises(GpusTaken, match=r"--gpu 2 on gpu1: GPU 2 is held by run r1 \(alice"):
        pick("2", st, claims(row("r1", "2")))
    with pytest.raises(GpusTaken, match="held by run r9"):
        pick("2", st, claims(row("r9", uuid2)))              # a claim by UUID
    with pytest.raises(GpusTaken, match="held by run ra"):
        pick("5", st, claims(row("ra", "all")))              # --gpu all holds every GPU
    assert pick("2", st, claims(row("r1", "2")), share=True) == ("2",)
    assert pick("0,2,5", st, claims(row("r1", "3"))) == ("0", "2", "5")


def test_claims_are_running_containers_only() -> None:
    cl = claims(row("r1", "0", "created"), row("r2", "1", "exited"), row("r3", "2", "paused"),
                row("r4", "none"), row("r5", "3", "restarting"))
    assert [c.run_id for c in cl] == ["r3", "r5"]


def test_lost_and_mig_gpus_are_refused_even_with_share() -> None:
    st = status("eight")
    with pytest.raises(DltError) as e:
        pick("7", st, [], share=True)
    assert not isinstance(e.value, GpusTaken)            # waiting would not help
    assert "GPU 7 is lost: fell off the bus" in e.value.message
    with pytest.raises(DltError, match="MIG mode"):
        pick("4", st, [], share=True)


def test_an_id_the_host_does_not_have() -> None:
    with pytest.raises(DltError, match=r"gpu1 has no GPU 9 \(its GPUs: 0-7\)"):
        pick("9", status("eight"), [])


def test_all_and_auto_refuse_when_another_run_holds_one() -> None:
    st = status("h200-idle")
    with pytest.raises(GpusTaken, match=r"^DLT_GPUS=auto \(all GPUs\) on gpu1: GPU 0 is held"):
        choose_gpus(parse_selection("all"), st, claims(row("r1", "0")), free_mib=1024, where="gpu1",
               asked="auto")


def test_without_nvidia_smi_the_driver_list_and_claims_still_decide() -> None:
    st = GpuStatus(problem="no nvidia-smi")
    got = choose_gpus(parse_selection("free:1"), st, claims(row("r1", "0")), free_mib=1024,
                 where="gpu1", indices=[0, 1])
    assert got.selection.ids == ("1",)
    with pytest.raises(DltError, match=r"cannot list the GPUs of gpu1 \(no nvidia-smi\)"):
        choose_gpus(parse_selection("free:1"), st, [], free_mib=1024, where="gpu1")
    assert choose_gpus(parse_selection("3"), st, [], free_mib=1024, where="gpu1").selection.ids == \
        ("3",)


def test_share_with_free_is_an_error() -> None:
    with pytest.raises(DltError, match="--share goes with GPU ids"):
        pick("free:1", status("eight"), [], share=True)


def test_status_script_output_with_a_failed_driver() -> None:
    text = ("smi-gpu\tNVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
            "driver.\nsmi-exit\t9\t9\n")
    st = parse_status(text)
    assert not st.known and st.problem.startswith("nvidia-smi failed (exit 9): NVIDIA-SMI has")
    assert parse_status("").problem == "no nvidia-smi"
    ok = parse_status("smi-gpu\t" + (DATA / "h200-held-gpus.csv").read_text()
                      + "smi-app\t" + (DATA / "h200-held-apps.csv").read_text()
                      + "smi-cg\t499\t" + "ab" * 32 + "\nsmi-exit\t0\t0\n")
    assert ok.known and ok.apps[0].container == "ab" * 32


def test_selection_spellings() -> None:
    assert parse_selection("free:2").describe() == "free:2"
    assert parse_selection("free").count == 1
    assert parse_selection("2,0").ids == ("0", "2")              # host order
    for bad in ("free:0", "free:x", "free:1,2"):
        with pytest.raises(DltError, match="free:N"):
            parse_selection(bad)


def test_wait_values() -> None:
    assert parse_wait(None) is None and parse_wait(True) == float("inf")
    assert parse_wait("300") == 300 and parse_wait("5m") == 300 and parse_wait("2h") == 7200
    with pytest.raises(DltError, match="--wait soon"):
        parse_wait("soon")


def test_report_and_table() -> None:
    st = status("eight")
    rep = report("gpu1", st, claims(row("r1", "0", user="bob")), free_mib=1024)
    by = {g["index"]: g for g in rep["gpus"]}
    assert by[0]["state"] == "held" and by[0]["held_by"][0]["user"] == "bob"
    assert by[1]["state"] == "busy" and by[1]["processes"][0]["pid"] == 81234
    assert by[4]["state"] == "mig" and by[7]["state"] == "lost"
    assert rep["free"] == [2, 5]
    text = table(rep)
    lines = text.splitlines()
    assert lines[0] == "gpu1: 8 GPU(s), 2 free (2,5)"
    assert lines[1].split()[:3] == ["GPU", "NAME", "MEMORY"]
    line0 = next(ln for ln in lines if ln.startswith("0 "))
    assert "r1 (bob, proj, since 2026-12-01 23:01)" in line0 and "1 / 81559" in line0
    line1 = next(ln for ln in lines if ln.startswith("1 "))
    assert "python3 pid 81234 70400 MiB" in line1 and "busy" in line1
