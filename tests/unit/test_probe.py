"""The GPU probe's pure parts, on outputs captured from a real H100 machine (tests/data/nvidia-smi).

The fixtures: ``nvidia-smi`` and its CSV query on one H100 (driver 580.159.04, CUDA 13.0), the
error nvidia-smi gives for an unknown field, and three full probe runs there: healthy, with
CUDA_VISIBLE_DEVICES=3 (the classic bug that hides the GPU) and with ``--expect 2``.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dltasks.errors import DltError
from dltasks.probe import (
    MARK,
    ProbedGpu,
    container_command,
    diagnose_probe,
    parse_probe_output,
    parse_probe_smi,
    parse_smi_header,
    script_path,
)
from dltasks.probe.script import cuda_version_text, framework_facts, report_lines

DATA = Path(__file__).resolve().parent.parent / "data" / "nvidia-smi"
H100 = ProbedGpu(index=0, name="NVIDIA H100 80GB HBM3", memory_mib=81559, compute_cap="9.0",
           uuid="GPU-15804f80-052e-5977-4b45-0e26aacd1327", driver_version="580.159.04")


def read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def facts_of(name: str) -> dict[str, Any]:
    line = [ln for ln in read(name).splitlines() if ln.startswith(MARK + " ")][-1]
    data: dict[str, Any] = json.loads(line[len(MARK) + 1:])
    return data


def codes(facts: dict[str, Any], expect: int = 1) -> list[str]:
    return [f.code for f in diagnose_probe(facts, expect) if f.severity == "error"]


# --- nvidia-smi ---------------------------------------------------------------------------------


def test_parse_nvidia_smi_real_h100_query() -> None:
    assert parse_probe_smi(read("h100-x1-query.csv")) == [H100]


def test_parse_nvidia_smi_several_gpus_and_blank_lines() -> None:
    text = ("\n0, GPU-aaa, NVIDIA H100 80GB HBM3, 580.159.04, 81559, 9.0\n\n"
            "1, GPU-bbb, NVIDIA A100-SXM4-40GB, 580.159.04, 40960, 8.0\n")
    gpus = parse_probe_smi(text)
    assert [(g.index, g.name, g.memory_mib, g.compute_cap) for g in gpus] == [
        (0, "NVIDIA H100 80GB HBM3", 81559, "9.0"), (1, "NVIDIA A100-SXM4-40GB", 40960, "8.0")]


def test_parse_nvidia_smi_without_compute_cap_column() -> None:
    gpus = parse_probe_smi("0, GPU-ccc, Tesla V100-SXM2-16GB, 470.82.01, 16160\n")
    assert gpus == [ProbedGpu(0, "Tesla V100-SXM2-16GB", 16160, "", "GPU-ccc", "470.82.01")]


def test_parse_nvidia_smi_not_available_values() -> None:
    gpus = parse_probe_smi("0, GPU-ddd, NVIDIA H100 80GB HBM3, 580.159.04, [N/A], [N/A]\n")
    assert (gpus[0].memory_mib, gpus[0].compute_cap) == (0, "")


def test_parse_nvidia_smi_quoted_name_with_comma() -> None:
    gpus = parse_probe_smi('0, GPU-eee, "Odd, Name", 580.1, 1024, 8.6\n')
    assert gpus[0].name == "Odd, Name" and gpus[0].compute_cap == "8.6"


def test_parse_nvidia_smi_empty_output_means_no_gpus() -> None:
    assert parse_probe_smi("") == []
    assert parse_probe_smi("\n  \n") == []


@pytest.mark.parametrize("text", [
    "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 580.95\n",
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure "
    "that the latest NVIDIA driver is installed and running.\n",
    "No devices were found\n",
])
def test_parse_nvidia_smi_refuses_error_text(text: str) -> None:
    with pytest.raises(ValueError, match="unexpected nvidia-smi line"):
        parse_probe_smi(text)


def test_parse_nvidia_smi_refuses_real_bad_field_message() -> None:
    with pytest.raises(ValueError, match="bogus_field"):
        parse_probe_smi(read("h100-x1-bad-field.txt"))


def test_parse_smi_header_real_h100() -> None:
    assert parse_smi_header(read("h100-x1-nvidia-smi.txt")) == ("580.159.04", "13.0")


def test_parse_smi_header_older_layout_and_errors() -> None:
    old = "| NVIDIA-SMI 470.82.01    Driver Version: 470.82.01    CUDA Version: 11.4     |"
    assert parse_smi_header(old) == ("470.82.01", "11.4")
    assert parse_smi_header("Failed to initialize NVML: Unknown Error") == ("", "")
    assert parse_smi_header("") == ("", "")


@pytest.mark.parametrize("value,text", [(13000, "13.0"), (12040, "12.4"), (11080, "11.8"),
                                        (12090, "12.9"), (0, "")])
def test_cuda_version_text(value: int, text: str) -> None:
    assert cuda_version_text(value) == text


# --- the probe's report -------------------------------------------------------------------------


def test_parse_probe_output_real_h100_run() -> None:
    r = parse_probe_output(read("h100-x1-probe-ok.txt"))
    assert r.ok and r.findings == () and r.errors == ()
    assert (r.driver_version, r.cuda_version) == ("580.159.04", "13.0")
    assert r.gpus == (H100,)
    assert [(m.framework, m.device, m.dtype, m.n) for m in r.matmuls] == [
        ("torch", 0, "bfloat16", 8192)]
    assert 100 < r.matmuls[0].tflops < 2000
    assert r.frameworks == {"torch": "2.11.0+cu130", "jax": "0.11.2"}
    assert r.summary().startswith("1 GPU(s) OK (NVIDIA H100 80GB HBM3), driver 580.159.04, "
                                  "CUDA 13.0, slowest matmul ")


def test_parse_probe_output_real_failure_gives_its_first_error() -> None:
    r = parse_probe_output(read("h100-x1-probe-expect-2.txt"))
    assert not r.ok
    assert [f.code for f in r.errors] == ["too-few-gpus"]
    assert r.summary().startswith("expected 2 GPU(s), 1 visible")  # as the run printed it


def test_parse_probe_output_takes_the_last_report_line() -> None:
    first = json.dumps({"ok": False, "findings": [], "driver_version": "1"})
    last = json.dumps({"ok": True, "driver_version": "2"})
    r = parse_probe_output(f"noise\n{MARK} {first}\nmore noise\n{MARK} {last}\ntrailing\n")
    assert r.ok and r.driver_version == "2" and r.gpus == ()


@pytest.mark.parametrize("text,match", [
    ("nvidia-smi: not found\nTraceback...\n", "no report"),
    (f"{MARK} {{not json\n", "not valid JSON"),
    (f"{MARK} [1, 2]\n", "not a JSON object"),
    (f"x{MARK} {{}}\n", "no report"),
])
def test_parse_probe_output_refuses_missing_or_broken_reports(text: str, match: str) -> None:
    with pytest.raises(DltError, match=match):
        parse_probe_output(text)


def test_report_lines_of_a_real_run_name_devices_and_speed() -> None:
    facts = facts_of("h100-x1-probe-ok.txt")
    lines = report_lines(facts)
    assert lines[1] == "nvidia-smi: driver 580.159.04, CUDA 13.0, 1 GPU(s)"
    assert any(ln.startswith("matmul torch GPU 0 bfloat16 8192x8192: ") for ln in lines)
    assert lines[-1].startswith("OK: 1 GPU(s) usable, slowest matmul ")


# --- diagnose_probe: the real runs, then one change at a time ------------------------------------


def test_diagnose_real_healthy_run_finds_nothing() -> None:
    assert diagnose_probe(facts_of("h100-x1-probe-ok.txt")) == []


def test_diagnose_real_cuda_visible_devices_run() -> None:
    found = diagnose_probe(facts_of("h100-x1-probe-cuda-visible-devices-3.txt"))
    assert [f.code for f in found] == ["cuda-visible-devices"]
    assert "CUDA_VISIBLE_DEVICES='3'" in found[0].message and "unset it" in found[0].message


def test_diagnose_real_run_with_too_few_gpus() -> None:
    facts = facts_of("h100-x1-probe-expect-2.txt")
    assert codes(facts, expect=2) == ["too-few-gpus"]
    assert codes(facts, expect=1) == []


def healthy() -> dict[str, Any]:
    return copy.deepcopy(facts_of("h100-x1-probe-ok.txt"))


def no_gpu(f: dict[str, Any]) -> dict[str, Any]:
    f["nvidia_smi"] = {"found": False, "gpus": [], "error": ""}
    f["libcuda"] = {"found": False, "devices": [], "init_error": "", "cuda_version": ""}
    f["dev_nodes"], f["frameworks"], f["matmul"] = [], {}, []
    return f


def smi_error(f: dict[str, Any], text: str) -> dict[str, Any]:
    f["nvidia_smi"].update(error=text, gpus=[])
    return f


def test_diagnose_nothing_visible_points_at_the_runtime_installer() -> None:
    (f,) = diagnose_probe(no_gpu(healthy()))
    assert f.code == "no-gpu-visible" and f.severity == "error"
    assert "no /dev/nvidia* devices, no nvidia-smi" in f.message
    assert "`inv install-nvidia-docker`" in f.message and "\n" not in f.message


def test_diagnose_device_nodes_without_any_answer() -> None:
    f = no_gpu(healthy())
    f["dev_nodes"] = ["/dev/nvidia0"]
    assert "/dev/nvidia* exists but no device answers" in diagnose_probe(f)[0].message


def test_diagnose_driver_library_mismatch_says_reboot() -> None:
    f = smi_error(healthy(), "Failed to initialize NVML: Driver/library version mismatch")
    (found,) = diagnose_probe(f)
    assert found.code == "driver-mismatch" and "reboot the host" in found.message


def test_diagnose_libcuda_system_driver_mismatch() -> None:
    f = healthy()
    f["libcuda"].update(init_error="CUDA_ERROR_SYSTEM_DRIVER_MISMATCH (803)", devices=[])
    assert codes(f) == ["driver-mismatch"]


def test_diagnose_driver_not_loaded() -> None:
    f = smi_error(healthy(), "NVIDIA-SMI has failed because it couldn't communicate with the "
                  "NVIDIA driver. Make sure that the latest NVIDIA driver is installed and "
                  "running.")
    assert codes(f) == ["no-driver"]


def test_diagnose_nvml_unknown_error() -> None:
    (found,) = diagnose_probe(smi_error(healthy(), "Failed to initialize NVML: Unknown Error"))
    assert found.code == "nvml-failed" and "Unknown Error" in found.message


def test_diagnose_cuda_init_failure() -> None:
    f = healthy()
    f["libcuda"].update(init_error="CUDA_ERROR_UNKNOWN (999)", devices=[])
    f["frameworks"]["torch"].update(available=False, devices=[], cuda_error="CUDA unknown error")
    f["frameworks"]["jax"]["devices"], f["matmul"] = [], []
    assert codes(f) == ["cuda-init-failed"]


def test_diagnose_empty_cuda_visible_devices_also_hides() -> None:
    f = healthy()
    f["env"]["CUDA_VISIBLE_DEVICES"] = ""
    f["libcuda"].update(init_error="CUDA_ERROR_NO_DEVICE (100)", devices=[])
    f["frameworks"]["torch"].update(available=False, devices=[])
    f["frameworks"]["jax"]["devices"], f["matmul"] = [], []
    assert codes(f) == ["cuda-visible-devices"]


def test_diagnose_missing_libcuda_means_missing_compute_capability() -> None:
    f = healthy()
    f["libcuda"] = {"found": False, "devices": [], "init_error": "", "cuda_version": ""}
    f["frameworks"], f["matmul"] = {}, []
    (found,) = diagnose_probe(f)
    assert found.code == "no-libcuda" and "NVIDIA_DRIVER_CAPABILITIES" in found.message


def test_diagnose_cpu_build_of_torch() -> None:
    f = healthy()
    f["frameworks"]["torch"] = {"version": "2.5.1+cpu", "cuda": None, "hip": None,
                                "available": False, "devices": []}
    f["matmul"] = []
    assert codes(f) == ["torch-cpu-build"]
    assert "2.5.1+cpu is a CPU-only build" in diagnose_probe(f)[0].message


def test_diagnose_cpu_torch_and_no_gpu_are_both_reported() -> None:
    f = no_gpu(healthy())
    f["frameworks"]["torch"] = {"version": "2.5.1+cpu", "cuda": None, "devices": []}
    assert codes(f) == ["no-gpu-visible", "torch-cpu-build"]


def test_diagnose_torch_newer_than_driver() -> None:
    f = healthy()
    f["libcuda"]["cuda_version"] = "12.2"
    f["frameworks"]["torch"].update(cuda="12.8", available=False, devices=[],
                                    cuda_error="The NVIDIA driver on your system is too old")
    f["matmul"] = []
    (found,) = diagnose_probe(f)
    assert found.code == "driver-too-old"
    assert "built for CUDA 12.8 but the driver supports CUDA 12.2" in found.message


def test_diagnose_torch_cannot_use_gpu_for_another_reason() -> None:
    f = healthy()
    f["frameworks"]["torch"].update(available=False, devices=[], cuda_error="boom")
    f["matmul"] = []
    assert codes(f) == ["torch-cuda-failed"] and "(boom)" in diagnose_probe(f)[0].message


def test_diagnose_torch_that_does_not_import() -> None:
    f = healthy()
    f["frameworks"]["torch"] = {"error": "ImportError: libcudnn.so.9: cannot open shared object "
                                "file", "devices": []}
    assert codes(f) == ["torch-broken"]


def test_diagnose_matmul_failure_and_wrong_result() -> None:
    f = healthy()
    f["matmul"][0].update(error="RuntimeError: CUDA error: an illegal memory access")
    assert codes(f) == ["matmul-failed"]
    f = healthy()
    f["matmul"][0].update(check_ok=False, check_error=0.9)
    (found,) = diagnose_probe(f)
    assert found.code == "matmul-wrong" and "0.9" in found.message


def test_diagnose_gpu_without_framework_is_a_warning_only() -> None:
    f = healthy()
    f["frameworks"], f["matmul"] = {}, []
    (found,) = diagnose_probe(f)
    assert (found.severity, found.code) == ("warning", "no-framework")


def test_every_finding_is_one_line_with_a_fix() -> None:
    cases = [no_gpu(healthy()),
             smi_error(healthy(), "Failed to initialize NVML: Driver/library version mismatch"),
             smi_error(healthy(), "Failed to initialize NVML: Unknown Error"),
             facts_of("h100-x1-probe-cuda-visible-devices-3.txt")]
    for facts in cases:
        for f in diagnose_probe(facts):
            assert "\n" not in f.message and ": " in f.message, f.message


# --- the script itself, on this machine ---------------------------------------------------------


def test_probe_script_on_a_machine_without_gpu_diagnoses_and_exits_1() -> None:
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi: the no-GPU path needs a machine without one")
    p = subprocess.run([sys.executable, str(script_path())], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 1
    assert "Traceback" not in p.stderr + p.stdout
    assert "ERROR [no-gpu-visible] no NVIDIA GPU is visible here" in p.stdout
    assert "FAILED: see the ERROR lines above" in p.stdout
    report = parse_probe_output(p.stdout)
    assert not report.ok and [f.code for f in report.errors][0] == "no-gpu-visible"


def test_probe_script_help_runs_standalone(tmp_path: Path) -> None:
    copy_ = tmp_path / "probe.py"
    shutil.copy(script_path(), copy_)  # outside the package: stdlib only
    p = subprocess.run([sys.executable, "-I", str(copy_), "--help"], capture_output=True,
                       text=True, timeout=60, cwd=tmp_path)
    assert p.returncode == 0 and "--expect" in p.stdout


def test_a_framework_that_fails_to_import_is_a_finding_not_a_crash() -> None:
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed here; this checks the child of a missing framework")
    info = framework_facts("torch", matmul=False, size=64, timeout=60)
    assert info["devices"] == [] and "No module named 'torch'" in info["error"]


def test_container_command_picks_a_python_and_asks_for_the_gpus() -> None:
    cmd = container_command(2)
    assert "/opt/dltasks/probe.py --show-nvidia-smi --expect 2" in cmd
    assert "python3 python" in cmd and cmd.rstrip().endswith("exit 127")


def test_diagnose_cuda_visible_devices_subset_is_a_warning() -> None:
    f = healthy()
    second = dict(f["nvidia_smi"]["gpus"][0], index=1, uuid="GPU-other")
    f["nvidia_smi"]["gpus"].append(second)
    f["env"]["CUDA_VISIBLE_DEVICES"] = "0"
    (found,) = diagnose_probe(f)
    assert (found.severity, found.code) == ("warning", "cuda-visible-devices")
    assert "leaves 1 of the 2 GPU(s)" in found.message
    assert codes(f) == []


# --- two GPUs (nvidia-h100-x2) ------------------------------------------------------------------


def test_parse_nvidia_smi_real_two_gpu_queries_with_and_without_compute_cap() -> None:
    six = parse_probe_smi(read("h100-x2-query.csv"))
    five = parse_probe_smi(read("h100-x2-query-no-compute-cap.csv"))
    assert [g.index for g in six] == [0, 1] and len({g.uuid for g in six}) == 2
    assert [g.compute_cap for g in six] == ["9.0", "9.0"]
    assert [g.compute_cap for g in five] == ["", ""]
    assert [(g.uuid, g.memory_mib) for g in five] == [(g.uuid, g.memory_mib) for g in six]


def test_parse_smi_header_real_two_gpu_table() -> None:
    assert parse_smi_header(read("h100-x2-nvidia-smi.txt")) == ("580.159.04", "13.0")


def test_parse_probe_output_real_two_gpu_run_has_a_matmul_per_gpu() -> None:
    r = parse_probe_output(read("h100-x2-probe-ok.txt"))
    assert r.ok and len(r.gpus) == 2
    assert [(m.device, m.dtype, m.n) for m in r.matmuls] == [(0, "bfloat16", 8192),
                                                              (1, "bfloat16", 8192)]
    assert all(100 < m.tflops < 2000 and not m.error for m in r.matmuls)
    assert diagnose_probe(r.raw, expect=2) == []
    assert codes(r.raw, expect=3) == ["too-few-gpus"]


def test_real_run_with_one_of_two_gpus_selected_warns_and_counts_one() -> None:
    facts = facts_of("h100-x2-probe-cuda-visible-devices-1.txt")
    assert [(f.severity, f.code) for f in diagnose_probe(facts)] == \
        [("warning", "cuda-visible-devices")]
    assert codes(facts, expect=2) == ["too-few-gpus"]
    facts["findings"] = [f.__dict__ for f in diagnose_probe(facts)]
    assert report_lines(facts)[-1].startswith("OK: 1 GPU(s) usable")
