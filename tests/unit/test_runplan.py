"""Run planning: DLT_MOUNTS entries, the three-sided path map, and the plan of one run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dltasks.engine.spec import (
    LABEL_GPUS,
    LABEL_HOST,
    LABEL_KIND,
    LABEL_PROJECT,
    LABEL_RECORD,
    LABEL_RUN,
    LABEL_STARTED,
    Mount,
)
from dltasks.errors import DltError
from dltasks.gpu.selection import GpuSelection
from dltasks.paths.scan import PathMap, Root
from dltasks.runs.plan import RunPlan, RunRequest, TargetFacts, build_pathmap, parse_mount, plan_run
from dltasks.settings import Settings, resolve

RUN_ID, STARTED, IMAGE = "20261126-141502-a3f9", "2026-11-26T14:15:02+00:00", "proj:latest"
REMOTE_DIR = "/home/u/dltasks/proj"
#: Not a system folder, and under no root: a path nothing maps.
ELSEWHERE = "/srv/elsewhere/table.csv"


def roots(pm: PathMap) -> dict[str, Root]:
    return {r.name: r for r in pm.roots}


def one_line(e: pytest.ExceptionInfo[DltError]) -> str:
    text = str(e.value)
    assert text and "\n" not in text
    return text


# --------------------------------------------------------------------------------------------
# parse_mount


@pytest.mark.parametrize("text, expected", [
    ("/mnt/datasets:/datasets", ("/mnt/datasets", "/datasets", False)),
    ("/mnt/datasets:/datasets:ro", ("/mnt/datasets", "/datasets", True)),
    ("/mnt/datasets:/datasets:rw", ("/mnt/datasets", "/datasets", False)),
    ("datasets:/datasets:ro", ("datasets", "/datasets", True)),      # relative host: resolved later
    ("~/ds:/ds", ("~/ds", "/ds", False)),
    ("/a b/c:/in container", ("/a b/c", "/in container", False)),
])
def test_parse_mount_good(text: str, expected: tuple[str, str, bool]) -> None:
    assert parse_mount(text) == expected


@pytest.mark.parametrize("text", [
    "", "/mnt/datasets", "/mnt/datasets:datasets", ":/datasets", "/mnt/datasets:",
    "/mnt/datasets:/datasets:xx", "/mnt/datasets:/datasets:ro:ro", "/a:/b:/c",
    "C:\\data:/data", "/mnt/datasets:/datasets:RO",
])
def test_parse_mount_bad(text: str) -> None:
    with pytest.raises(DltError) as e:
        parse_mount(text)
    msg = one_line(e)
    assert repr(text) in msg and "host:container" in msg


# --------------------------------------------------------------------------------------------
# build_pathmap


def project(tmp_path: Path, files: dict[str, str] | None = None) -> Path:
    d = tmp_path / "proj"
    d.mkdir()
    for name, text in (files or {}).items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(text)
    return d


def test_local_target_host_is_local(tmp_path: Path) -> None:
    proj = project(tmp_path)
    data, ds = tmp_path / "data", tmp_path / "ds"
    s = resolve(proj, environ={"DLT_DATA_DIR": str(data), "DLT_OUTPUT_DIR": "out",
                               "DLT_MOUNTS": f"{ds}:/datasets:ro,cache:/cache"})
    r = roots(build_pathmap(s, s, str(s.project_dir)))
    assert list(r) == ["code", "data", "outputs", "mount:/datasets", "mount:/cache"]
    for root in r.values():
        assert root.local == root.host
    assert (r["code"].local, r["code"].container, r["code"].readonly) == (
        str(proj), "/workspace", False)
    assert (r["data"].local, r["data"].container, r["data"].readonly) == (str(data), "/data", True)
    assert (r["outputs"].local, r["outputs"].container, r["outputs"].readonly) == (
        str(proj / "out"), "/outputs", False)
    assert (r["mount:/datasets"].local, r["mount:/datasets"].readonly) == (str(ds), True)
    assert (r["mount:/cache"].local, r["mount:/cache"].readonly) == (str(proj / "cache"), False)


def test_no_data_or_outputs_only_code(tmp_path: Path) -> None:
    s = resolve(project(tmp_path), environ={})
    assert list(roots(build_pathmap(s, s, str(s.project_dir)))) == ["code"]


def test_workdir_setting_is_the_code_container_path(tmp_path: Path) -> None:
    s = resolve(project(tmp_path), environ={"DLT_WORKDIR": "/src"})
    pm = build_pathmap(s, s, str(s.project_dir))
    assert pm.to_container(str(s.project_dir / "train.py")) == "/src/train.py"


def three_way(tmp_path: Path, dotenv: str, host_env: str) -> tuple[Settings, Settings, PathMap]:
    proj = project(tmp_path, {".env": dotenv, ".env.gpu1": host_env})
    local = resolve(proj, environ={})
    host = resolve(proj, environ={}, host="gpu1")
    return local, host, build_pathmap(local, host, REMOTE_DIR)


def test_three_way_host_layer_overrides_data_dir(tmp_path: Path) -> None:
    local, _, pm = three_way(
        tmp_path,
        "DLT_DATA_DIR=/home/me/data\nDLT_MOUNTS=/laptop/ds:/datasets:ro\n",
        "DLT_DATA_DIR=/mnt/ssd/data\nDLT_OUTPUT_DIR=outputs\nDLT_MOUNTS=/mnt/ds:/datasets:ro\n")
    r = roots(pm)
    assert (r["code"].local, r["code"].host) == (str(local.project_dir), REMOTE_DIR)
    assert (r["data"].local, r["data"].host) == ("/home/me/data", "/mnt/ssd/data")
    assert (r["outputs"].local, r["outputs"].host) == (
        str(local.project_dir / "outputs"), REMOTE_DIR + "/outputs")
    assert (r["mount:/datasets"].local, r["mount:/datasets"].host) == ("/laptop/ds", "/mnt/ds")
    assert pm.to_host("/home/me/data/train/x.png") == "/mnt/ssd/data/train/x.png"
    assert pm.to_container("/home/me/data/train/x.png") == "/data/train/x.png"
    assert pm.to_container("/mnt/ssd/data/x") == "/data/x"  # the host's spelling maps too
    assert pm.to_host("/laptop/ds/a") == "/mnt/ds/a"
    assert pm.to_host(str(local.project_dir / "outputs" / "m.pt")) == REMOTE_DIR + "/outputs/m.pt"


def test_three_way_relative_dirs_resolve_against_host_project(tmp_path: Path) -> None:
    local, _, pm = three_way(tmp_path, "",
                             "DLT_DATA_DIR=../shared/data\nDLT_MOUNTS=cache/x:/cache\n")
    r = roots(pm)
    assert r["data"].host == "/home/u/dltasks/shared/data"
    assert r["data"].local == os.path.normpath(local.project_dir / "../shared/data")
    assert r["mount:/cache"].host == REMOTE_DIR + "/cache/x"
    assert r["mount:/cache"].local == str(local.project_dir / "cache" / "x")


def test_three_way_data_dir_only_on_laptop(tmp_path: Path) -> None:
    _, _, pm = three_way(tmp_path, "DLT_DATA_DIR=data\n", "")
    # the host resolves the same relative setting against its own project folder
    assert roots(pm)["data"].host == REMOTE_DIR + "/data"


def test_symlinked_data_dir_has_its_realpath_as_alias(tmp_path: Path) -> None:
    real = tmp_path / "disk" / "data"
    real.mkdir(parents=True)
    link = tmp_path / "data-link"
    link.symlink_to(real)
    s = resolve(project(tmp_path), environ={"DLT_DATA_DIR": str(link)})
    data = roots(build_pathmap(s, s, str(s.project_dir)))["data"]
    assert (data.local, data.aliases) == (str(link), (str(real),))
    pm = build_pathmap(s, s, str(s.project_dir))
    assert pm.to_container(f"{link}/a.csv") == pm.to_container(f"{real}/a.csv") == "/data/a.csv"


def test_plain_dirs_have_no_alias(tmp_path: Path) -> None:
    s = resolve(project(tmp_path), environ={"DLT_DATA_DIR": str(tmp_path)})
    assert all(r.aliases == () for r in build_pathmap(s, s, str(s.project_dir)).roots)


def test_symlinked_project_dir_maps_both_spellings(tmp_path: Path) -> None:
    real = project(tmp_path)
    link = tmp_path / "proj-link"
    link.symlink_to(real)
    s = resolve(link, environ={})
    pm = build_pathmap(s, s, str(s.project_dir))
    assert pm.to_container(f"{real}/a.csv") == "/workspace/a.csv"
    assert pm.to_container(f"{link}/a.csv") == "/workspace/a.csv"


# --------------------------------------------------------------------------------------------
# plan_run


CONFIG = """\
# train config
train: {proj}/data/train.csv   # same path in the comment: {proj}/data/train.csv
images: {data}/imagenet
checkpoints: {out}/ckpt/
system: /usr/share/dict/words
lr: 0.1
"""


def plan_project(tmp_path: Path, extra_config: str = "", dotenv: str = "") -> Settings:
    data, out = tmp_path / "data", tmp_path / "out"
    proj = tmp_path / "proj"
    text = CONFIG.format(proj=proj, data=data, out=out) + extra_config
    project(tmp_path, {"config.yaml": text, "plain.yaml": "lr: 0.1\n", ".env": dotenv,
                       "main.py": "print('hi')\n"})
    return resolve(proj, environ={"DLT_DATA_DIR": str(data), "DLT_OUTPUT_DIR": str(out)})


def local_facts(s: Settings) -> TargetFacts:
    return TargetFacts("local", str(s.project_dir), "1234:5678")


def plan(s: Settings, req: RunRequest, facts: TargetFacts | None = None,
         host: Settings | None = None) -> RunPlan:
    return plan_run(s, host or s, facts or local_facts(s), req, run_id=RUN_ID, started=STARTED,
                    image=IMAGE)


def test_plan_rewrites_config_into_the_record(tmp_path: Path) -> None:
    s = plan_project(tmp_path)
    proj = s.project_dir
    original = (proj / "config.yaml").read_bytes()
    p = plan(s, RunRequest("train", "python main.py"))

    assert p.run_dir == proj / "runs" / RUN_ID
    copy = p.run_dir / "configs" / "config.yaml"
    assert (proj / "config.yaml").read_bytes() == original
    expected = CONFIG.format(proj="/workspace", data="/data", out="/outputs")
    assert copy.read_text() == expected
    assert [rel for rel, _ in p.configs] == ["config.yaml"]
    assert Mount(str(copy), "/workspace/config.yaml", True) in p.spec.mounts
    # a config with no paths is neither copied nor mounted
    assert not (p.run_dir / "configs" / "plain.yaml").exists()
    assert not any(m.target == "/workspace/plain.yaml" for m in p.spec.mounts)
    assert p.unmapped == ()


def test_plan_spec_env_user_labels(tmp_path: Path) -> None:
    s = plan_project(tmp_path, dotenv=f"DATA_ROOT={tmp_path / 'data'}/x\nWANDB_MODE=offline\n")
    req = RunRequest("train", "python main.py", args=("--out", str(tmp_path / "out" / "r1")),
                     gpus=GpuSelection("ids", ("0", "1")))
    p = plan(s, req)
    spec = p.spec
    assert spec.env["DLT_RUN_ID"] == RUN_ID
    assert spec.env["PYTHONUNBUFFERED"] == "1"
    assert spec.env["HOME"] == "/tmp"
    assert spec.env["DATA_ROOT"] == "/data/x"          # container env goes through the map
    assert spec.env["WANDB_MODE"] == "offline"
    assert spec.command == ("python", "main.py", "--out", "/outputs/r1")
    assert spec.user == "1234:5678"
    assert spec.workdir == "/workspace"
    assert spec.image == IMAGE
    assert spec.name == f"dlt-{s.project}-{RUN_ID}"
    assert spec.labels[LABEL_RUN] == RUN_ID
    assert spec.labels[LABEL_PROJECT] == s.project
    assert spec.labels[LABEL_KIND] == "train"
    assert spec.labels[LABEL_HOST] == "local"
    assert spec.labels[LABEL_STARTED] == STARTED
    # the GPU label is a claim: never the request; final_spec sets the GPUs the run got
    # (tests/unit/test_runstart.py)
    assert LABEL_GPUS not in spec.labels
    assert spec.labels[LABEL_RECORD] == str(p.run_dir)
    mounts = {m.target: m for m in spec.mounts}
    assert mounts["/workspace"] == Mount(str(s.project_dir), "/workspace", False)
    assert mounts["/data"] == Mount(str(tmp_path / "data"), "/data", True)
    assert mounts["/outputs"] == Mount(str(tmp_path / "out"), "/outputs", False)
    assert p.must_exist == (str(tmp_path / "data"),)
    assert p.make_dirs == (str(tmp_path / "out"),)


def test_plan_root_has_no_user_and_no_home(tmp_path: Path) -> None:
    s = plan_project(tmp_path)
    spec = plan(s, RunRequest("shell", "bash", root=True, interactive=True)).spec
    assert spec.user is None
    assert "HOME" not in spec.env
    assert spec.env["DLT_RUN_ID"] == RUN_ID and spec.interactive


def test_plan_keeps_users_pythonunbuffered(tmp_path: Path) -> None:
    s = plan_project(tmp_path, dotenv="PYTHONUNBUFFERED=0\n")
    assert plan(s, RunRequest("train", "python main.py")).spec.env["PYTHONUNBUFFERED"] == "0"


@pytest.mark.parametrize("where", ["config", "arg", "env"])
def test_plan_unmapped_stops_with_one_line(tmp_path: Path, where: str) -> None:
    s = plan_project(tmp_path, extra_config=f"extra: {ELSEWHERE}\n" if where == "config" else "",
                     dotenv=f"TABLE={ELSEWHERE}\n" if where == "env" else "")
    args = ("--table", ELSEWHERE) if where == "arg" else ()
    with pytest.raises(DltError) as e:
        plan(s, RunRequest("train", "python main.py", args=args))
    msg = one_line(e)
    assert ELSEWHERE in msg and "--allow-unmapped" in msg


def test_plan_allow_unmapped_goes_on(tmp_path: Path) -> None:
    s = plan_project(tmp_path, extra_config=f"extra: {ELSEWHERE}\n")
    p = plan(s, RunRequest("train", "python main.py", args=("--t", ELSEWHERE),
                           allow_unmapped=True))
    assert sorted(u.path for u in p.unmapped) == [ELSEWHERE, ELSEWHERE]
    assert p.spec.command[-1] == ELSEWHERE                 # left as it was
    copy = (p.run_dir / "configs" / "config.yaml").read_text()
    assert f"extra: {ELSEWHERE}" in copy and "train: /workspace/data/train.csv" in copy


def test_plan_extra_mounts_appended(tmp_path: Path) -> None:
    s = plan_project(tmp_path)
    extra = Mount("/dev/shm", "/scratch", False)
    assert plan(s, RunRequest("shell", "bash", extra_mounts=(extra,))).spec.mounts[-1] == extra


def test_plan_remote_host_paths(tmp_path: Path) -> None:
    s = plan_project(tmp_path)
    proj = s.project_dir
    (proj / ".env.gpu1").write_text("DLT_DATA_DIR=/mnt/ssd/data\nDLT_OUTPUT_DIR=outputs\n")
    host = resolve(proj, environ={}, host="gpu1")
    facts = TargetFacts("gpu1", REMOTE_DIR, "1000:1000")
    p = plan(s, RunRequest("train", "python main.py"), facts=facts, host=host)
    mounts = {m.target: m for m in p.spec.mounts}
    assert mounts["/workspace"].source == REMOTE_DIR
    assert mounts["/data"].source == "/mnt/ssd/data"
    assert mounts["/outputs"].source == REMOTE_DIR + "/outputs"
    assert mounts["/workspace/config.yaml"] == Mount(
        f"{REMOTE_DIR}/runs/{RUN_ID}/configs/config.yaml", "/workspace/config.yaml", True)
    assert p.run_dir == proj / "runs" / RUN_ID            # the record stays on the laptop
    assert (p.run_dir / "configs" / "config.yaml").is_file()
    assert p.must_exist == ("/mnt/ssd/data",) and p.make_dirs == (REMOTE_DIR + "/outputs",)
    assert p.spec.labels[LABEL_HOST] == "gpu1" and p.spec.user == "1000:1000"


def test_plan_ignores_configs_in_runs_and_outputs(tmp_path: Path) -> None:
    s = resolve(project(tmp_path, {"runs/old/configs/config.yaml": f"x: {ELSEWHERE}\n",
                                   "outputs/cfg.yaml": f"x: {ELSEWHERE}\n",
                                   "config.yaml": "lr: 1\n"}),
                environ={"DLT_OUTPUT_DIR": "outputs"})
    p = plan(s, RunRequest("train", "python main.py"))
    assert p.unmapped == () and p.configs == ()
    assert (s.project_dir / "runs/old/configs/config.yaml").read_text() == f"x: {ELSEWHERE}\n"


def test_tilde_in_a_host_setting_is_the_host_logins_home(tmp_path: Path) -> None:
    d = tmp_path / "proj"
    d.mkdir()
    (d / ".env").write_text("DLT_DATA_DIR=/home/me/data\n")
    (d / ".env.gpu1").write_text("DLT_DATA_DIR=~/datasets\n")
    local = resolve(d, environ={})
    host = resolve(d, environ={}, host="gpu1")
    pm = build_pathmap(local, host, "/home/u/dltasks/proj", "/home/u")
    data = next(r for r in pm.roots if r.name == "data")
    assert (data.local, data.host, data.container) == ("/home/me/data", "/home/u/datasets",
                                                       "/data")


def test_plan_maps_paths_in_the_command_itself(tmp_path: Path) -> None:
    s = plan_project(tmp_path)
    out, proj = tmp_path / "out", s.project_dir
    p = plan(s, RunRequest("train", f"python {proj}/main.py --out {out} --ckpt {out}/c/"))
    assert p.spec.command == ("python", "/workspace/main.py", "--out", "/outputs",
                              "--ckpt", "/outputs/c/")
    opt = plan(s, RunRequest("train", f"python main.py --ckpt={out}/c"))
    assert opt.spec.command == ("sh", "-c", "python main.py --ckpt=/outputs/c")
    shell = plan(s, RunRequest("train", f"python main.py > {out}/log.txt", args=("a",)))
    assert shell.spec.command == ("sh", "-c", 'python main.py > /outputs/log.txt "$@"', "sh", "a")
    # a program path and a word are two words, not one path with a space in it
    venv = plan(s, RunRequest("train", "/usr/local/bin/python main.py"))
    assert venv.spec.command == ("/usr/local/bin/python", "main.py")


@pytest.mark.parametrize(("kind", "name"), [("train", "DLT_TRAIN_CMD"),
                                            ("shell", "shell --cmd")])
def test_plan_refuses_an_unmapped_host_path_in_the_command(tmp_path: Path, kind: str,
                                                           name: str) -> None:
    s = plan_project(tmp_path)
    home = Path.home()                  # there on every machine, outside every root and /tmp
    missing = f"{home}/dlt-results-not-made-yet"  # not there, but its folder is: a host path
    with pytest.raises(DltError) as e:
        plan(s, RunRequest(kind, f"python main.py --table {home} -o{missing}"))
    msg = one_line(e)
    assert f"{home} ({name})" in msg and f"{missing} ({name})" in msg
    assert "--allow-unmapped" in msg


def test_plan_leaves_paths_inside_the_image_in_the_command(tmp_path: Path) -> None:
    s = plan_project(tmp_path)
    p = plan(s, RunRequest("train", "/opt/dlt-venv-nowhere/bin/python /app-nowhere/train.py"))
    assert p.spec.command == ("/opt/dlt-venv-nowhere/bin/python", "/app-nowhere/train.py")
    assert [u.path for u in p.image_paths] == ["/opt/dlt-venv-nowhere/bin/python",
                                               "/app-nowhere/train.py"]
    # a folder dltasks mounts itself (test-gpu's probe) is the container's too
    probe = Mount(str(tmp_path), "/opt/dltasks", True)
    t = plan(s, RunRequest("test-gpu", "python3 /opt/dltasks/probe.py", extra_mounts=(probe,)))
    assert t.spec.command == ("python3", "/opt/dltasks/probe.py") and t.unmapped == ()
    assert t.image_paths == ()                       # ours: never announced as the image's


def test_plan_runs_the_users_words_as_argv_with_their_paths_mapped(tmp_path: Path) -> None:
    s = plan_project(tmp_path)
    out, proj = tmp_path / "out", s.project_dir
    words = ("python3", "-c", f"open('{out}/r.txt', 'w').write(open('{proj}/main.py').read())",
             "a b", f"--ckpt={out}/c", "$HOME-not-expanded")
    p = plan(s, RunRequest("run", "ignored", argv=words))
    # quoting kept: one word per argv entry, no shell, each word's paths mapped
    assert p.spec.command == ("python3", "-c",
                              "open('/outputs/r.txt', 'w').write(open('/workspace/main.py')"
                              ".read())", "a b", "--ckpt=/outputs/c", "$HOME-not-expanded")
    assert p.spec.labels[LABEL_KIND] == "run"
    # one word that is a whole command line runs through sh -c, mapped the same
    line = plan(s, RunRequest("run", "", argv=(f"ls {out} && echo done",)))
    assert line.spec.command == ("sh", "-c", "ls /outputs && echo done")
    assert plan(s, RunRequest("run", "", argv=("nvidia-smi",))).spec.command == ("nvidia-smi",)


def test_plan_refuses_an_unmapped_host_path_in_the_users_words(tmp_path: Path) -> None:
    s = plan_project(tmp_path)
    home = Path.home()
    with pytest.raises(DltError) as e:
        plan(s, RunRequest("run", "", argv=("ls", f"{home}/dlt-not-mounted", "~/x")))
    msg = one_line(e)
    assert f"{home}/dlt-not-mounted (run's command)" in msg
    assert "~/x (run's command)" in msg and "--allow-unmapped" in msg


def test_plan_refuses_the_home_folder_in_the_command(tmp_path: Path) -> None:
    s = plan_project(tmp_path)
    with pytest.raises(DltError) as e:
        plan(s, RunRequest("train", "python main.py --cache ~/ckpt --log=$HOME/logs"))
    msg = one_line(e)
    assert "~/ckpt (DLT_TRAIN_CMD)" in msg and "$HOME/logs (DLT_TRAIN_CMD)" in msg
    assert "write the host path in full" in msg and "--allow-unmapped" in msg
    ok = plan(s, RunRequest("train", "python main.py --cache ~/ckpt", allow_unmapped=True))
    assert ok.spec.command[-1].endswith("--cache ~/ckpt")


def test_plan_run_folder_is_private(tmp_path: Path) -> None:
    s = plan_project(tmp_path)
    p = plan(s, RunRequest("train", "python main.py"))
    assert (p.run_dir.stat().st_mode & 0o777) == 0o700


def test_plan_mounts_env_files_without_dlt_lines(tmp_path: Path) -> None:
    dotenv = "# settings\nDLT_SUDO_PASSWORD=pw-1\nHF_TOKEN=tok\nexport DLT_GPUS=none\n"
    s = plan_project(tmp_path, dotenv=dotenv)
    (s.project_dir / ".env.gpu1").write_text("A=1\n")            # no DLT_ line: not mounted
    (s.project_dir / ".envrc").write_text("DLT_X=1\n")           # not a dotenv file of ours
    p = plan(s, RunRequest("train", "python main.py"))
    copy = p.run_dir / "configs" / ".env"
    assert copy.read_text() == "# settings\nHF_TOKEN=tok\n"
    assert Mount(str(copy), "/workspace/.env", True) in p.spec.mounts
    assert not any(m.target in ("/workspace/.env.gpu1", "/workspace/.envrc")
                   for m in p.spec.mounts)
    assert (s.project_dir / ".env").read_text() == dotenv          # the original untouched


def test_plan_env_overlay_only_where_the_code_folder_is_this_one(tmp_path: Path) -> None:
    s = plan_project(tmp_path, dotenv="DLT_SUDO_PASSWORD=pw-1\n")
    facts = TargetFacts("gpu1", "/home/u/dltasks/proj", "1000:1000", "/home/u")
    p = plan(s, RunRequest("train", "python main.py"), facts=facts)
    assert not any(m.target == "/workspace/.env" for m in p.spec.mounts)


@pytest.mark.parametrize("path", ["/root/newexp/run1", "/scratch/me/exp1", "/mnt/results/x",
                                  "/data2/runs/e1", "/home/nobody-here/out"])
def test_plan_never_takes_a_users_place_for_the_image(tmp_path: Path, path: str) -> None:
    s = plan_project(tmp_path)
    with pytest.raises(DltError) as e:
        plan(s, RunRequest("train", f"python main.py --out {path}"))
    assert f"{path} (DLT_TRAIN_CMD)" in one_line(e)


def test_plan_mounts_the_env_copy_wherever_the_container_sees_the_project(
        tmp_path: Path) -> None:
    dotenv = "DLT_SUDO_PASSWORD=pw-1\nA=1\n"
    s = plan_project(tmp_path, dotenv=dotenv)
    s2 = resolve(s.project_dir, environ={"DLT_DATA_DIR": str(tmp_path)})  # holds the project
    p = plan(s2, RunRequest("train", "python main.py"))
    copy = str(p.run_dir / "configs" / ".env")
    targets = {m.target for m in p.spec.mounts if m.source == copy}
    assert targets == {"/workspace/.env", "/data/proj/.env"}


def test_ports_publish_on_loopback_only_and_render_the_same_both_ways() -> None:
    from dltasks.engine.spec import (
        PortBinding,
        RunSpec,
        bound_ports,
        create_config,
        docker_run_cmdline,
        parse_ports,
    )
    from dltasks.errors import DltError

    ports = parse_ports(["8888", "6007:6006"])
    assert ports == (PortBinding(8888), PortBinding(6006, 6007))
    spec = RunSpec(image="img", command=("true",), ports=ports)
    body = create_config(spec)
    assert body["ExposedPorts"] == {"8888/tcp": {}, "6006/tcp": {}}
    assert body["HostConfig"]["PortBindings"] == {
        "8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
        "6006/tcp": [{"HostIp": "127.0.0.1", "HostPort": "6007"}]}
    line = docker_run_cmdline(spec)
    assert "-p 127.0.0.1::8888 -p 127.0.0.1:6007:6006" in line
    assert "ExposedPorts" not in create_config(RunSpec(image="img", command=("true",)))
    for bad in ("x", "0", "70000", "1:2:3", "", "8888/udp"):
        with pytest.raises(DltError, match="--port"):
            parse_ports([bad])
    with pytest.raises(DltError, match="twice"):
        parse_ports(["8888", "9000:8888"])
    inspected = {"NetworkSettings": {"Ports": {
        "8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}], "53/udp": None,
        "6006/tcp": None}}}
    assert bound_ports(inspected) == (PortBinding(8888, 49153),)
    assert PortBinding(8888, 49153).describe() == "127.0.0.1:49153->8888"
