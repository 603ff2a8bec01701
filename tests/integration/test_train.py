"""`train` on a real engine: mounts, paths, exit codes, Ctrl-C, GPUs refused, detach/logs/stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import dlt

pytestmark = pytest.mark.docker


def _containers(engine: object, project: str) -> list[object]:
    return engine.containers.list(  # type: ignore[attr-defined, no-any-return]
        ignore_removed=True, all=True, filters={"label": f"dltasks.project={project}"})


@pytest.fixture
def proj(project: Path, base_image: str) -> Path:
    name = f"t{os.getpid()}-{project.parent.name[-6:]}".lower().replace("_", "-")
    (project / ".env").write_text(f"DLT_PROJECT={name}\nDLT_IMAGE={base_image}\n"
                                  "DLT_GPUS=none\n")
    return project


def _name(proj: Path) -> str:
    return (proj / ".env").read_text().split("DLT_PROJECT=")[1].split()[0]


def test_exit_code_comes_through_and_container_removed(proj: Path, engine: object) -> None:
    r = dlt("train", "--args", "-c 'import sys; print(\"hi\"); sys.exit(7)'", cwd=proj,
            env={"DLT_TRAIN_CMD": "python3"})
    assert r.returncode == 7, r.stderr
    assert "hi" in r.stdout
    assert _containers(engine, _name(proj)) == []
    runs = list((proj / "runs").iterdir())
    assert len(runs) == 1
    m = json.loads((runs[0] / "manifest.json").read_text())
    assert m["exit_code"] == 7 and m["command"] == ["python3", "-c",
                                                     'import sys; print("hi"); sys.exit(7)']
    assert m["image_id"].startswith("sha256:") and m["docker_run"].startswith("docker run")
    assert (runs[0] / "output.log").read_text() == "hi\n"


def test_args_after_double_dash_keep_quoting(proj: Path) -> None:
    r = dlt("train", "--", "-c", "import sys; print(sys.argv[1:])", "a b", "/tmp/x",
            cwd=proj, env={"DLT_TRAIN_CMD": "python3"})
    assert r.returncode == 0, r.stderr
    assert "['a b', '/tmp/x']" in r.stdout


def test_mounts_workdir_user_and_ipc(proj: Path, tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    (data / "x.txt").write_text("payload")
    with open(proj / ".env", "a") as f:
        f.write(f"DLT_DATA_DIR={data}\nDLT_OUTPUT_DIR={out}\nMY_VAR=from-dotenv\n")
    script = ("import os; print(os.getcwd(), open('/data/x.txt').read(), os.getuid(), "
              "os.environ['HOME'], os.environ['MY_VAR']); "
              "open('/outputs/made.txt','w').write('ok'); "
              "open('/data/nope','w')")
    r = dlt("train", "--args", f'-c "{script}"', cwd=proj, env={"DLT_TRAIN_CMD": "python3"})
    assert "/workspace payload" in r.stdout
    assert f" {os.getuid()} /tmp from-dotenv" in r.stdout
    assert "Read-only file system" in r.stderr      # /data is mounted read-only
    assert r.returncode == 1
    assert (out / "made.txt").read_text() == "ok"   # outputs dir created and written
    assert (out / "made.txt").stat().st_uid == os.getuid()


def test_config_rewritten_for_the_container_original_untouched(proj: Path,
                                                               tmp_path: Path) -> None:
    data = tmp_path / "datasets"
    (data / "imagenet").mkdir(parents=True)
    out = tmp_path / "results"
    cfg = (f"# my config\ndata:\n  train: {data}/imagenet\n  list: [{proj}/a.txt, rel/b]\n"
           f"out: {out}/run1   # keep comments\n")
    (proj / "config.yaml").write_text(cfg)
    before = (proj / "config.yaml").read_bytes()
    with open(proj / ".env", "a") as f:
        f.write(f"DLT_DATA_DIR={data}\nDLT_OUTPUT_DIR={out}\n")
    r = dlt("train", "--args", "config.yaml", cwd=proj, env={"DLT_TRAIN_CMD": "cat"})
    assert r.returncode == 0, r.stderr
    assert "train: /data/imagenet" in r.stdout
    assert "list: [/workspace/a.txt, rel/b]" in r.stdout
    assert "out: /outputs/run1   # keep comments" in r.stdout
    assert (proj / "config.yaml").read_bytes() == before
    run = next((proj / "runs").iterdir())
    assert (run / "configs" / "config.yaml").read_text() == r.stdout


def test_unmapped_path_stops_the_run_before_start(proj: Path, engine: object) -> None:
    (proj / "config.yaml").write_text("data: /mnt/nowhere/imagenet\n")
    r = dlt("train", cwd=proj, env={"DLT_TRAIN_CMD": "true"})
    assert r.returncode != 0
    err = r.stderr.strip()
    assert "/mnt/nowhere/imagenet" in err and "config.yaml:1" in err and "--allow-unmapped" in err
    assert "Traceback" not in r.stderr
    assert _containers(engine, _name(proj)) == []
    r = dlt("train", "--allow-unmapped", cwd=proj, env={"DLT_TRAIN_CMD": "true"})
    assert r.returncode == 0, r.stderr


def test_dry_run_starts_nothing(proj: Path, engine: object) -> None:
    r = dlt("train", "--dry-run", "--gpu", "0,1", cwd=proj)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("docker run --rm")
    assert '--gpus "device=0,1"' in r.stdout and f":{'/workspace'}" in r.stdout
    assert "code" in r.stdout and "/workspace" in r.stdout
    assert _containers(engine, _name(proj)) == []
    assert not (proj / "runs").exists() or not any((proj / "runs").iterdir())


def test_gpu_without_nvidia_runtime_is_one_line_and_leaves_nothing(proj: Path,
                                                                   engine: object) -> None:
    r = dlt("train", "--gpu", "0", cwd=proj, env={"DLT_TRAIN_CMD": "true"})
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "dlt install-nvidia-docker" in lines[0], r.stderr
    assert _containers(engine, _name(proj)) == []


def test_bad_gpu_id_refused_before_anything(proj: Path, engine: object) -> None:
    r = dlt("train", "--gpu", "abc", cwd=proj)
    assert r.returncode == 1 and "not a GPU id" in r.stderr
    assert _containers(engine, _name(proj)) == []


def test_ctrl_c_stops_and_removes_the_container(proj: Path, engine: object) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    env["DLT_TRAIN_CMD"] = ("python3 -c 'import time; print(\"started\", flush=True); "
                            "time.sleep(60)'")
    p = subprocess.Popen([sys.executable, "-m", "dltasks", "train"], cwd=proj, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "started"
    assert len(_containers(engine, _name(proj))) == 1
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    code = p.wait(timeout=30)
    assert code == 130
    assert time.monotonic() - t0 < 15
    assert _containers(engine, _name(proj)) == []
    m = json.loads(next((proj / "runs").glob("*/manifest.json")).read_text())
    assert m["exit_code"] == 130 and m["status"] == "interrupted"


def test_detach_ps_logs_stop(proj: Path, engine: object) -> None:
    cmd = ("python3 -c 'import time\nfor i in range(600): print(\"tick\", i, flush=True); "
           "time.sleep(0.1)'")
    r = dlt("train", "--detach", cwd=proj, env={"DLT_TRAIN_CMD": cmd})
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.strip()
    # the hint names the program the user ran (dlt here), not `inv`
    assert f"follow it with `dlt logs {run_id} --follow`, stop it with `dlt stop {run_id}`" \
        in r.stderr
    try:
        ps = dlt("ps", cwd=proj)
        assert run_id in ps.stdout and "running" in ps.stdout
        time.sleep(1.0)
        logs = dlt("logs", run_id, cwd=proj)
        assert "tick 0" in logs.stdout
        follow = subprocess.Popen([sys.executable, "-m", "dltasks", "logs", run_id, "--follow"],
                                  cwd=proj, stdout=subprocess.PIPE, text=True)
        assert follow.stdout is not None
        seen = [follow.stdout.readline() for _ in range(30)]
        assert seen[0].startswith("tick 0")           # from the start, then live
        follow.send_signal(signal.SIGINT)
        follow.wait(timeout=10)
    finally:
        st = dlt("stop", run_id[:17], cwd=proj)
    assert st.returncode == 0, st.stderr
    assert _containers(engine, _name(proj)) == []
    assert "no run" in dlt("logs", run_id, cwd=proj).stderr


def test_runs_lists_records(proj: Path) -> None:
    dlt("train", cwd=proj, env={"DLT_TRAIN_CMD": "true"})
    r = dlt("runs", cwd=proj)
    assert r.returncode == 0 and "1 run record(s)" in r.stdout and "train" in r.stdout
