"""The batch scripts of `train --slurm` for each runtime, and Slurm's answers (pure logic)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dltasks.engine.spec import Mount, RunSpec
from dltasks.errors import DltError
from dltasks.runs.slurmscript import (
    MADE_MEANWHILE,
    SlurmJob,
    docker_wrapper,
    env_file,
    image_file,
    job_script,
    make_image_script,
    node_line,
    parse_state,
    sbatch_error,
    sbatch_lines,
)

SPEC = RunSpec(image="proj:latest", command=("python3", "train.py", "--lr", "0.1"),
               mounts=(Mount("/shared/me/proj", "/workspace"),
                       Mount("/shared/data", "/data", True)),
               env={"PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline"}, user="1000:1000",
               labels={"dltasks.run": "r1"})


def test_sbatch_lines_with_gpus_gres_and_free_form_options() -> None:
    job = SlurmJob(nodes=2, gpus_per_node=4, partition="gpu", time="4:00:00", account="lab",
                   qos="high", sbatch=("mem=64G", "exclusive"))
    lines = sbatch_lines(job, "dlt-p-r1", "/out/slurm-%j.out")
    assert lines[:4] == ["#SBATCH --job-name=dlt-p-r1", "#SBATCH --nodes=2",
                         "#SBATCH --ntasks-per-node=1", "#SBATCH --output=/out/slurm-%j.out"]
    assert "#SBATCH --gpus-per-node=4" in lines and "#SBATCH --partition=gpu" in lines
    assert "#SBATCH --time=4:00:00" in lines and "#SBATCH --account=lab" in lines
    assert "#SBATCH --qos=high" in lines and "#SBATCH --mem=64G" in lines
    assert "#SBATCH --exclusive" in lines
    gres = sbatch_lines(SlurmJob(gpus_per_node=2, gres=True), "n", "o")
    assert "#SBATCH --gres=gpu:2" in gres and not any("gpus-per-node" in x for x in gres)
    with pytest.raises(DltError, match="write KEY=VALUE"):
        sbatch_lines(SlurmJob(sbatch=("=1",)), "n", "o")


def test_docker_runtime_script_and_wrapper() -> None:
    job = SlurmJob(nodes=2, gpus_per_node=2)
    script = job_script(SPEC, job, name="dlt-p-r1", run_dir="/shared/me/proj/runs/r1",
                        wrapper="/shared/me/proj/runs/r1/node.sh")
    assert script.startswith("#!/bin/bash\n#SBATCH --job-name=dlt-p-r1\n")
    assert "srun --label --kill-on-bad-exit=1 --wait=60 --nodes=$SLURM_NNODES " \
        "--ntasks-per-node=1 bash /shared/me/proj/runs/r1/node.sh" in script
    assert "export DLT_PORT=$((29500 + SLURM_JOB_ID % 1000))" in script
    assert 'echo "$code" > /shared/me/proj/runs/r1/exit-"$SLURM_JOB_ID"' in script
    node = docker_wrapper(SPEC, job, "dlt-p-r1", env="/shared/me/proj/runs/r1/container.env")
    assert 'gpus="${SLURM_STEP_GPUS:-${CUDA_VISIBLE_DEVICES:-}}"' in node   # Slurm's, not all
    assert "trap 'cleanup; exit 143' TERM INT HUP" in node
    assert "-v /shared/data:/data:ro" in node and "--network=host" in node
    assert "--nnodes=2 --node-rank=\"$SLURM_NODEID\"" in node
    assert "--nproc-per-node=2 --max-restarts=0" in node
    assert "python3 train.py --lr 0.1" in node
    # the variables' values come from the private file, never from docker run's argv
    assert "--env-file /shared/me/proj/runs/r1/container.env " in node
    assert "offline" not in node and "offline" not in script
    assert env_file(SPEC, "docker") == "PYTHONUNBUFFERED=1\nWANDB_MODE=offline\n"


def test_pyxis_and_apptainer_scripts() -> None:
    pyxis = job_script(SPEC, SlurmJob(nodes=2, runtime="pyxis"), name="n", run_dir="/r")
    assert "--container-image=proj:latest" in pyxis
    assert "--container-mounts=/shared/me/proj:/workspace,/shared/data:/data:ro" in pyxis
    assert "--container-workdir=/workspace" in pyxis
    # the values are sourced from the run's private file, not written into the script
    assert "\n. /r/container.env\n" in pyxis and "offline" not in pyxis
    assert env_file(SPEC, "pyxis") == "export PYTHONUNBUFFERED=1\nexport WANDB_MODE=offline\n"
    app = job_script(RunSpec(**{**SPEC.__dict__, "image": "/shared/proj.sif"}),
                     SlurmJob(runtime="apptainer"), name="n", run_dir="/r")
    assert "apptainer exec --nv --bind /shared/me/proj:/workspace,/shared/data:/data:ro " \
        "--pwd /workspace /shared/proj.sif bash -c" in app
    with pytest.raises(DltError, match="DLT_SLURM_RUNTIME='podman'"):
        job_script(SPEC, SlurmJob(runtime="podman"), name="n", run_dir="/r")


GOLDEN = Path(__file__).resolve().parent.parent / "data" / "slurm"


@pytest.mark.parametrize("runtime,image", [
    ("pyxis", "/shared/me/proj/runs/.images/proj-bae47b02ec93.sqsh"),
    ("apptainer", "/shared/me/proj/runs/.images/proj-bae47b02ec93.sif"),
    ("docker", "proj:latest"),
])
def test_job_scripts_match_their_golden_files(runtime: str, image: str) -> None:
    """The whole batch script of each runtime, byte for byte (pyxis also runs for real in
    tests/integration/test_slurm.py; apptainer is not packaged here, so this is its check).
    After a deliberate change: DLT_UPDATE_GOLDEN=1 pytest tests/unit/test_slurm.py."""
    import os
    from dataclasses import replace

    job = SlurmJob(nodes=2, gpus_per_node=4, partition="gpu", time="4:00:00",
                   sbatch=("mem=64G",), runtime=runtime)
    script = job_script(replace(SPEC, image=image), job, name="dlt-proj-20261202-010203-abcd",
                        run_dir="/shared/me/proj/runs/20261202-010203-abcd",
                        wrapper="/shared/me/proj/runs/20261202-010203-abcd/node.sh")
    if runtime == "docker":
        script += "\n# node.sh\n" + docker_wrapper(
            replace(SPEC, image=image), job, "dlt-proj-20261202-010203-abcd",
            env="/shared/me/proj/runs/20261202-010203-abcd/container.env")
    golden = GOLDEN / f"{runtime}.sbatch"
    if os.environ.get("DLT_UPDATE_GOLDEN"):
        golden.write_text(script)
    assert script == golden.read_text()


def test_image_files_are_named_by_project_and_image_id() -> None:
    sha = "sha256:bae47b02ec9357adc9497e0a04a95d06894f192e48132cb1a6e8a38d729488ed"
    assert image_file("/shared/p/runs/.images", "proj", sha, "pyxis") == \
        "/shared/p/runs/.images/proj-bae47b02ec93.sqsh"
    assert image_file("/i", "proj", sha, "apptainer") == "/i/proj-bae47b02ec93.sif"


@pytest.mark.parametrize("fails", [False, True])
def test_the_image_is_made_under_a_temporary_name_then_renamed(tmp_path: Path,
                                                               fails: bool) -> None:
    """The one seam: a stand-in `apptainer` on PATH (none is installed here; enroot's path is
    run for real in tests/integration/test_slurm.py). It writes half a file and, in the failing
    case, exits 1: no file by the final name, and no temporary one, is left."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "apptainer"
    end = "exit 1" if fails else 'echo rest >> "$2"'
    tool.write_text(f'#!/bin/sh\necho "$@" > "$ARGS"; echo half > "$2"\n{end}\n')
    tool.chmod(0o755)
    dest = tmp_path / "images" / "proj-bae47b02ec93.sif"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "ARGS": str(tmp_path / "args")}
    r = subprocess.run(["sh", "-c", make_image_script("apptainer"), "_", str(dest),
                        "sha256:bae4", "proj:latest"], env=env, capture_output=True, text=True)
    (args,) = (tmp_path / "args").read_text().splitlines()
    verb, tmp, source = args.split()
    assert verb == "build" and source == "docker-daemon://proj:latest"
    assert tmp.startswith(f"{dest}.part-")
    lock = f".{dest.name}.lock"                   # one maker at a time: flock on it
    assert sorted(p.name for p in dest.parent.iterdir()) == \
        ([lock] if fails else [lock, dest.name])
    assert r.returncode == (1 if fails else 0)
    if not fails:
        assert dest.read_text() == "half\nrest\n"


def test_a_file_made_meanwhile_is_taken_as_it_is(tmp_path: Path) -> None:
    """The file appeared while this submission waited for the lock: no tool is run."""
    dest = tmp_path / "proj-bae47b02ec93.sqsh"
    dest.write_text("made by the other one")
    r = subprocess.run(["sh", "-c", make_image_script("pyxis"), "_", str(dest), "sha256:bae4",
                        "proj:latest"], env={"PATH": "/usr/bin:/bin"}, capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stdout.strip() == MADE_MEANWHILE, r.stderr
    assert dest.read_text() == "made by the other one"


def test_output_lines_get_node_and_rank() -> None:
    assert node_line("1: [default1]:epoch 3", nproc=2) == "[node 1 rank 3] epoch 3"
    assert node_line("0: W1202 torchrun warning", nproc=1) == "[node 0] W1202 torchrun warning"
    assert node_line("dlt: job 4 on n[1-2]", nproc=1) == "dlt: job 4 on n[1-2]"


def test_slurm_answers() -> None:
    line = ("JobId=7 JobName=dlt-p-r1 UserId=root(0) JobState=TIMEOUT Reason=TimeLimit "
            "Dependency=(null) ExitCode=0:15 RunTime=00:01:02 NodeList=n1")
    assert parse_state(line) == ("TIMEOUT", "TimeLimit", "0:15", "n1")
    job = SlurmJob(partition="gpu", gpus_per_node=9)
    assert "has no partition 'gpu'" in sbatch_error(
        "sbatch: error: invalid partition specified: gpu", "login1", job)
    assert "offers 9 GPU(s) per node" in sbatch_error(
        "sbatch: error: Batch job submission failed: Requested node configuration is not "
        "available", "login1", job)


def test_how_a_job_ended() -> None:
    from dltasks.runs.slurm import outcome, parse_sacct

    assert parse_sacct("CANCELLED by 0|0:15|n[1-2]\n") == ("CANCELLED", "0:15", "n[1-2]")
    assert parse_sacct("") == ("", "", "")
    assert outcome("TIMEOUT", "0:15", "") == (143, "TIMEOUT")
    assert outcome("", "", "3\n") == (3, "FAILED")         # only the exit file knows
    assert outcome("COMPLETED", "0:0", "0") == (0, "COMPLETED")
    assert outcome("", "", "") == (1, "UNKNOWN")
    # what sacct says of a job `stop` (scancel) ended: the job's line has no signal
    assert parse_sacct("CANCELLED by 0|0:0|n[1-2]\n") == ("CANCELLED", "0:0", "n[1-2]")
    assert outcome("CANCELLED", "0:0", "") == (143, "CANCELLED")
    assert outcome("TIMEOUT", "0:0", "") == (143, "TIMEOUT")
    assert outcome("NODE_FAIL", "0:0", "") == (1, "NODE_FAIL")
    assert outcome("CANCELLED", "2:0", "") == (2, "CANCELLED")   # its own code stands


class _Answers:
    """The one seam: a host whose shell answers final_state's round trips in turn."""

    def __init__(self, *stdouts: str) -> None:
        from dltasks.hosts.shell import CmdResult

        self.results = [CmdResult("sh", 0, out, "") for out in stdouts]
        self.calls = 0
        self.shell = self

    def run(self, command: str) -> object:
        self.calls += 1
        return self.results[min(self.calls, len(self.results)) - 1]


def test_the_end_waits_for_sacct_while_it_lags_behind_scontrol() -> None:
    """scontrol says COMPLETED with the node list shrunk to what is still completing; sacct
    still says RUNNING, then has the end with the whole allocation: sacct's answer is kept."""
    from dltasks.runs.record import SlurmInfo
    from dltasks.runs.slurm import final_state

    lagging = "RUNNING|0:0|n[1-2]\n--\nJobState=COMPLETED ExitCode=0:0 NodeList=n1\n--\n0\n"
    known = "COMPLETED|0:0|n[1-2]\n--\nJobState=COMPLETED ExitCode=0:0 NodeList=n1\n--\n0\n"
    host = _Answers(lagging, known)
    end = final_state(host, SlurmInfo("7", run_dir="/r"))  # type: ignore[arg-type]
    assert (end.source, end.state, end.nodes, end.code) == ("sacct", "COMPLETED", "n[1-2]", 0)
    assert host.calls == 2
    never = _Answers(lagging)  # accounting that never hears of it: scontrol, after lag_s
    end = final_state(never, SlurmInfo("7", run_dir="/r"), lag_s=0.6)  # type: ignore[arg-type]
    assert (end.source, end.state) == ("scontrol", "COMPLETED") and never.calls >= 2
    assert end.nodes == "n[1-2]"  # sacct's allocation while running, not scontrol's remnant
    silent = _Answers("--\nJobState=COMPLETED ExitCode=0:0 NodeList=n[1-2]\n--\n")
    end = final_state(silent, SlurmInfo("7", run_dir="/r"))  # type: ignore[arg-type]
    assert end.source == "scontrol" and silent.calls == 1  # no accounting: no wait


def test_the_nodes_a_job_was_seen_running_on_outlast_scontrols_shrunk_list() -> None:
    """Accounting that has not heard of the job (slurmdbd behind, or none): the allocation
    squeue showed while the job ran is kept over scontrol's list of the nodes still
    completing; scontrol's list stands where no one saw the job run."""
    from dltasks.runs.record import SlurmInfo
    from dltasks.runs.slurm import final_state

    shrunk = "--\nJobState=COMPLETED ExitCode=0:0 NodeList=n1\n--\n0\n"
    end = final_state(_Answers(shrunk), SlurmInfo("7", run_dir="/r"),  # type: ignore[arg-type]
                      seen="n[1-2]")
    assert (end.source, end.state, end.nodes, end.code) == ("scontrol", "COMPLETED", "n[1-2]", 0)
    end = final_state(_Answers(shrunk), SlurmInfo("7", run_dir="/r"))  # type: ignore[arg-type]
    assert end.nodes == "n1"
    forgotten = "--\n--\n0\n"  # Slurm forgot it: the exit file, and the nodes seen
    end = final_state(_Answers(forgotten), SlurmInfo("7", run_dir="/r"),  # type: ignore[arg-type]
                      seen="n[1-2]")
    assert (end.source, end.state, end.nodes, end.code) == ("exit file", "COMPLETED", "n[1-2]", 0)


CONTROL = ["\n", "\r", "\t", "\x00", "\x1b", "\x7f"]


@pytest.mark.parametrize("field", ["partition", "time", "account", "qos"])
@pytest.mark.parametrize("char", CONTROL)
def test_a_control_character_in_a_slurm_value_is_refused_in_one_line(field: str,
                                                                     char: str) -> None:
    """A newline in --partition would add a line (a shell command of the job, or another
    #SBATCH option) to the batch script: refused, naming the flag and its setting."""
    value = f"gpu{char}rm -rf ~"
    with pytest.raises(DltError) as e:
        SlurmJob(**{field: value})  # type: ignore[arg-type]
    msg = e.value.message
    assert "\n" not in msg and msg.startswith(f"--{field} (or DLT_SLURM_{field.upper()}) ")
    assert f"holds a control character ({char!r})" in msg and "on one line" in msg


@pytest.mark.parametrize("char", CONTROL)
def test_a_control_character_in_an_sbatch_option_is_refused(char: str) -> None:
    for kv in (f"comment=a{char}b", f"exclusive{char}"):
        with pytest.raises(DltError) as e:
            SlurmJob(sbatch=("mem=1G", kv))
        msg = e.value.message
        assert "\n" not in msg and msg.startswith("--sbatch (or DLT_SLURM_SBATCH) ")
        assert f"({char!r})" in msg


def test_sbatch_values_are_quoted_as_sbatch_reads_them() -> None:
    """Values with a space, quote, # or backslash go in double quotes with \\ and " escaped
    (sbatch's #SBATCH parser; tests/integration/test_slurm.py submits such a job for real)."""
    job = SlurmJob(partition="gpu", sbatch=('comment=a b "c" #d \\e', "exclusive"))
    lines = sbatch_lines(job, "dlt-p-r1", "/home/my proj/runs/r1/slurm-%j.out")
    assert '#SBATCH --output="/home/my proj/runs/r1/slurm-%j.out"' in lines
    assert '#SBATCH --comment="a b \\"c\\" #d \\\\e"' in lines
    assert "#SBATCH --partition=gpu" in lines and "#SBATCH --exclusive" in lines
    script = job_script(SPEC, SlurmJob(), name="n", run_dir="/home/100% me/proj/runs/r1",
                        wrapper="/home/100% me/proj/runs/r1/node.sh")
    # a % of the path is %% in sbatch's file name pattern; the shell lines are shell-quoted
    assert '#SBATCH --output="/home/100%% me/proj/runs/r1/slurm-%j.out"' in script
    assert "bash '/home/100% me/proj/runs/r1/node.sh'" in script
    assert "echo \"$code\" > '/home/100% me/proj/runs/r1'/exit-" in script
    with pytest.raises(DltError, match=r"^the job's output file .*control character \('\\n'\)"):
        job_script(SPEC, SlurmJob(), name="n", run_dir="/home/a\nb/runs/r1")


@pytest.mark.parametrize("runtime", ["pyxis", "apptainer"])
def test_a_comma_in_a_mounted_path_is_refused_for_mount_lists(runtime: str) -> None:
    from dataclasses import replace

    spec = replace(SPEC, mounts=(Mount("/shared/me/a,b/proj", "/workspace"),))
    with pytest.raises(DltError) as e:
        job_script(spec, SlurmJob(runtime=runtime), name="n", run_dir="/r")
    msg = e.value.message
    assert msg.startswith("the mounted path '/shared/me/a,b/proj' holds ',', which separates "
                          "the mounts of ") and "\n" not in msg
    assert msg.endswith("move or link it to a path without ',', or set "
                        "DLT_SLURM_RUNTIME=docker")
    # docker -v takes one mount each: a comma goes through; a space in a path is quoted
    ok = replace(SPEC, mounts=(Mount("/shared/me/a,b c/proj", "/workspace"),))
    assert "-v '/shared/me/a,b c/proj:/workspace'" in docker_wrapper(ok, SlurmJob(), "n",
                                                                      env="/r/e")
    spaced = job_script(replace(SPEC, mounts=(Mount("/shared/my proj", "/workspace"),)),
                        SlurmJob(runtime=runtime), name="n", run_dir="/shared/my proj/runs/r")
    assert "'/shared/my proj:/workspace'" in spaced


def test_a_colon_or_control_character_in_a_mounted_path_is_refused() -> None:
    from dataclasses import replace

    for runtime in ("docker", "pyxis", "apptainer"):
        spec = replace(SPEC, mounts=(Mount("/shared/a:b", "/workspace"),))
        with pytest.raises(DltError, match="^the mounted path '/shared/a:b' holds ':', which "
                                           "separates SOURCE:TARGET"):
            job_script(spec, SlurmJob(runtime=runtime), name="n", run_dir="/r")
    with pytest.raises(DltError, match="separates SOURCE:TARGET.* in docker run -v: move"):
        docker_wrapper(replace(SPEC, mounts=(Mount("/s", "/a:b"),)), SlurmJob(), "n", env="/e")
        bad = replace(SPEC, mounts=(Mount("/shared/a\nb", "/workspace"),))
        with pytest.raises(DltError, match=r"control character \('\\n'\)"):
            job_script(bad, SlurmJob(runtime=runtime), name="n", run_dir="/r")


def test_env_file_carries_any_value_for_pyxis_and_refuses_line_breaks_for_docker() -> None:
    from dataclasses import replace

    spec = replace(SPEC, env={"HF_TOKEN": "s3cr'et value", "MULTI": "a\nb"})
    text = env_file(spec, "pyxis")
    out = subprocess.run(["bash", "-c", f'{text}\nprintf "%s|" "$HF_TOKEN" "$MULTI"'],
                         capture_output=True, text=True).stdout
    assert out == "s3cr'et value|a\nb|"
    with pytest.raises(DltError) as e:
        env_file(spec, "docker")
    assert e.value.message.startswith("the container variable 'MULTI' holds a line break")
    assert "a\nb" not in e.value.message


def test_a_project_name_with_shell_characters_is_quoted_in_the_scripts() -> None:
    import subprocess

    name = 'dlt-my "x" $(touch /tmp/pwned-by-name)-r1'
    node = docker_wrapper(SPEC, SlurmJob(), name, env="/shared/r1/container.env")
    line = next(ln for ln in node.splitlines() if ln.startswith("name="))
    got = subprocess.run(["bash", "-c", f"SLURM_NODEID=3; {line}; printf %s \"$name\""],
                         capture_output=True, text=True, check=True).stdout
    assert got == name + "-n3"
    script = job_script(SPEC, SlurmJob(), name=name, run_dir="/shared/r1",
                        wrapper="/shared/r1/node.sh")
    assert "$(touch" not in "\n".join(ln for ln in script.splitlines() if ln.startswith("# "))
