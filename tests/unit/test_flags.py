"""Short flags: none made up. Every one-letter flag a task has is in the reviewed list below,
with the convention behind it; ``-h`` is help on every task (issue 21: invoke's automatic short
flags made `train -h` mean `--share`, so asking for help started a run)."""

from __future__ import annotations

from dltasks.tasks import ns

#: (task, flag) -> (short letter, why a user can expect it). Adding one: name its convention.
REVIEWED: dict[tuple[str, str], tuple[str, str]] = {
    ("train", "gpu"): ("g", "-g/--gpu is how many training scripts and launchers take "
                            "GPUs; the flag users type most (issue 21 names it)"),
    ("shell", "gpu"): ("g", "the same GPU selection as train's -g"),
    ("test-gpu", "gpu"): ("g", "the same GPU selection as train's -g"),
    ("run", "gpu"): ("g", "the same GPU selection as train's -g"),
    ("run", "detach"): ("d", "the same as train's -d (docker run -d)"),
    ("train", "detach"): ("d", "docker run -d / docker compose up -d: start in the background"),
    ("notebook", "gpu"): ("g", "the same GPU selection as train's -g"),
    ("notebook", "detach"): ("d", "the same as train's -d: start in the background"),
    ("tensorboard", "detach"): ("d", "the same as train's -d: start in the background"),
    ("logs", "follow"): ("f", "tail -f, docker logs -f, journalctl -f"),
    ("ps", "all"): ("a", "docker ps -a, ps -a: include what is not running / every project"),
    ("build", "tag"): ("t", "docker build -t"),
    ("build", "dockerfile"): ("f", "docker build -f"),
}
# Decided against (no convention, or two that disagree): -i for --image (docker run -i is
# interactive, ssh/fab -i is an identity file), -n for --dry-run or --nproc, -w for --wait,
# -f for --force (it rebuilds images: spelled out), -v for --version (-v is verbose elsewhere),
# and every Slurm flag (sbatch's own letters differ from ours: -N nodes, -t time, -A account).


def _short_flags() -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for name in ns.task_names:
        for arg in ns[name].get_arguments():
            for alias in arg.names[1:]:
                assert len(alias) == 1, (name, arg.names)  # invoke: extra names are letters
                found[(name, arg.name.replace("_", "-"))] = alias
    return found


def test_every_short_flag_is_in_the_reviewed_list() -> None:
    found = _short_flags()
    unreviewed = {k: v for k, v in found.items()
                  if k not in REVIEWED or REVIEWED[k][0] != v}
    assert not unreviewed, f"short flags with no reviewed convention: {unreviewed}"
    assert {k: v[0] for k, v in REVIEWED.items()} == found  # the list has no stale entry
    assert all(reason for _, reason in REVIEWED.values())


def test_h_is_no_task_flag_so_it_stays_help() -> None:
    for name in ns.task_names:
        for arg in ns[name].get_arguments():
            assert "h" not in arg.names and "help" not in arg.names, (name, arg.names)


def test_short_flags_are_unique_within_a_task() -> None:
    for name in ns.task_names:
        letters = [a for arg in ns[name].get_arguments() for a in arg.names[1:]]
        assert len(letters) == len(set(letters)), name


def test_train_has_no_short_flag_invoke_once_gave() -> None:
    """-h and -l stay invoke's help and list; the letters invoke once made up for train
    (-l --slurm, -e --nnodes, -o --root...) are no train flags now."""
    train = {f"-{a}" for arg in ns["train"].get_arguments() for a in arg.names[1:]}
    assert "-g" in train
    assert not {"-h", "-l", "-e", "-s", "-o", "-r", "-n", "-w"} & train


def test_flag_help_survives_a_second_parser() -> None:
    # `dlt exec RUN -h` builds a second parser to print the task's help: invoke hands a flag's
    # help over once, so the second one listed the flags bare
    from dltasks.tasks import ns

    for name in ("exec", "train", "logs"):
        task = ns.tasks[name]
        for _ in range(2):
            helped = [a for a in task.get_arguments() if a.name in task._flag_help]
            assert helped and all(a.help == task._flag_help[a.name] for a in helped), name
    assert ns.tasks["exec"]._flag_help["node"].startswith("A job's node")
