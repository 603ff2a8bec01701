"""Pure parts of the remote layer: safe sync targets, filter rules, rsync stats, ssh argv."""

from __future__ import annotations

import posixpath
import subprocess
from pathlib import Path

import pytest

from dltasks.errors import DltError
from dltasks.hosts.remote.multihost import is_last_host
from dltasks.hosts.remote.sshconfig import SshHost, known_hosts_files, rsh_command, ssh_argv
from dltasks.hosts.remote.syncrules import (
    check_remote_dir,
    dltignore_rules,
    dockerignore_rules,
    filter_args,
    parse_stats,
)
from dltasks.hosts.remote.target import expand_remote_dir, from_home

HOME = "/home/me"


@pytest.mark.parametrize("path", [
    "", "  ", "relative/dir", "/", "//", "/home", "/home/me", "/home/me/", "/home/me/../me",
    "/home/other", "/root", "/Users/x", "/data", "/tmp", "/etc/proj", "/usr/local/proj",
    "/proc/1", "/home/me/.ssh", "/home/me/.config/x", "/home/me/a/../../..",
    "/var/lib", "/var/lib/docker", "/var/lib/me/proj", "/opt/conda", "/opt/conda/envs/x",
    "/mnt/data", "/media/usb", "/run/media/me/disk", "/var/tmp", "/snap/x",
])
def test_dangerous_remote_dirs_refused(path: str) -> None:
    with pytest.raises(DltError) as e:
        check_remote_dir(path, HOME, host="gpu1")
    assert "DLT_REMOTE_DIR" in e.value.message and "\n" not in e.value.message
    assert e.value.message.startswith("refusing to sync to")


@pytest.mark.parametrize("path,expected", [
    ("/home/me/dltasks/proj", "/home/me/dltasks/proj"),
    ("/home/me/proj/", "/home/me/proj"),
    ("/home/me/x/../proj", "/home/me/proj"),
    ("/data/proj", "/data/proj"),
    ("/mnt/ssd/me/proj", "/mnt/ssd/me/proj"),
    ("/tmp/scratch", "/tmp/scratch"),
    ("/home/me/dltasks/.hidden-ok", "/home/me/dltasks/.hidden-ok"),
    ("/mnt/data/me-proj", "/mnt/data/me-proj"),
    ("/var/tmp/me-proj", "/var/tmp/me-proj"),
])
def test_safe_remote_dirs_accepted(path: str, expected: str) -> None:
    assert check_remote_dir(path, HOME) == expected


@pytest.mark.parametrize("raw,expected", [
    ("~/dltasks/p", "/home/me/dltasks/p"),
    ("~", "/home/me"),
    ("dltasks/p", "/home/me/dltasks/p"),
    ("/srv/p/", "/srv/p"),
    ("", ""),
])
def test_expand_remote_dir_against_host_home(raw: str, expected: str) -> None:
    assert expand_remote_dir(raw, HOME) == expected


@pytest.mark.parametrize("raw,expected", [
    ("~/dltasks/p", "dltasks/p"),
    ("~", "."),
    ("~/", "."),
    ("dltasks/./p/", "dltasks/p"),
    ("/srv/p/", "/srv/p"),
    ("", ""),
])
def test_from_home_is_what_the_host_shell_cds_to_from_home(raw: str, expected: str) -> None:
    assert from_home(raw) == expected
    if raw:  # and it agrees with the expansion done here
        assert expand_remote_dir(raw, HOME) == posixpath.normpath(posixpath.join(HOME, expected))


def test_expand_remote_dir_refuses_other_users_tilde() -> None:
    with pytest.raises(DltError):
        expand_remote_dir("~bob/x", HOME)


def test_filter_rules_order_protects_and_includes() -> None:
    args = filter_args(include_runs=["20261126-141502-a3f9"],
                       protect=["outputs", "../outside", "."],
                       dockerignore="# c\n\n*.pyc\n!keep.pyc\n/data/raw\n**/tmp\n")
    assert args[:4] == ["--exclude=/.git/", "--exclude=/.env", "--exclude=/.env.*",
                        "--exclude=/.dltasks/"]
    assert "--exclude=/outputs/" in args
    assert not any("outside" in a for a in args)
    inc = args.index("--include=/runs/20261126-141502-a3f9/***")
    assert args.index("--include=/runs/") < inc < args.index("--exclude=/runs/*")
    # the run's folder is let through before any .gitignore could exclude runs/
    assert inc < args.index("--filter=:- .gitignore")
    assert "--exclude=/*.pyc" in args and "--exclude=/data/raw" in args
    assert "--exclude=/**/tmp" in args
    assert not any("keep" in a for a in args)


def test_filter_rules_without_runs_protect_all_runs() -> None:
    args = filter_args()
    assert "--exclude=/runs/" in args and not any(a.startswith("--include") for a in args)
    assert args[-2:] == ["--filter=:- .gitignore", "--filter=:- .dltignore"]


def test_dltignore_rules_keep_reincludes_in_gits_order() -> None:
    text = "# c\n\n*.bin\n!keep.bin\ndata/raw\n/top.txt\n!input.txt\n**/cache\n\\!odd\n"
    assert dltignore_rules(text) == [
        "--filter=- !odd", "--filter=- cache", "--filter=+ input.txt", "--filter=- /top.txt",
        "--filter=- /data/raw", "--filter=+ keep.bin", "--filter=- *.bin"]


def test_dltignore_reincludes_come_after_what_is_never_sent() -> None:
    args = filter_args(dltignore="!.env\n!input.txt\n", dockerignore="input.txt\n")
    assert args.index("--exclude=/.env") < args.index("--filter=+ .env")
    assert args.index("--filter=+ input.txt") < args.index("--exclude=/input.txt")
    assert args.index("--filter=+ input.txt") < args.index("--filter=:- .gitignore")


def test_dltignore_reinclude_sends_gitignored_files_with_real_rsync(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "data").mkdir(parents=True)
    (src / "shards").mkdir()
    (src / ".gitignore").write_text("input.txt\n*.bin\nsecret.key\n")
    (src / "data" / "input.txt").write_text("to be or not to be\n")
    for i in range(3):
        (src / "shards" / f"train_{i}.bin").write_bytes(bytes([i]) * 100)
    (src / "shards" / "skip.bin").write_bytes(b"x")
    (src / "secret.key").write_text("k")
    (src / ".env").write_text("TOKEN=x\n")
    (src / ".dltignore").write_text("!input.txt\n!*.bin\nshards/skip.bin\n!.env\n")
    rules = filter_args(dltignore=(src / ".dltignore").read_text())
    subprocess.run(["rsync", "-a", *rules, f"{src}/", f"{dst}/"], check=True)
    got = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())
    assert got == [".dltignore", ".gitignore", "data/input.txt", "shards/train_0.bin",
                   "shards/train_1.bin", "shards/train_2.bin"]


def test_filter_rules_refuse_odd_run_ids() -> None:
    with pytest.raises(DltError):
        filter_args(include_runs=["../x"])


def test_dockerignore_rules_skip_comments_and_negations() -> None:
    assert dockerignore_rules("#x\n.\n/\n!a\n ./b/ \nc/../d\n") == ["--exclude=/b",
                                                                     "--exclude=/d"]


STATS = """
Number of files: 5,012 (reg: 5,000, dir: 12)
Number of created files: 0
Number of deleted files: 3
Number of regular files transferred: 1,234
Total file size: 20,480,000 bytes
Literal data: 1,000 bytes
Total bytes sent: 123,456
Total bytes received: 789
"""


def test_parse_stats() -> None:
    s = parse_stats(STATS)
    assert (s.files, s.transferred, s.deleted) == (5012, 1234, 3)
    assert (s.bytes_sent, s.bytes_received, s.literal_bytes) == (123456, 789, 1000)
    assert parse_stats("").files == 0


def test_known_hosts_files_default_and_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/h")
    assert known_hosts_files({}) == ("/h/.ssh/known_hosts", "/h/.ssh/known_hosts2",
                                     "/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
    got = known_hosts_files({"userknownhostsfile": "~/kh1 /x/kh2",
                             "globalknownhostsfile": "none"})
    assert got == ("/h/kh1", "/x/kh2")


def test_ssh_argv_spells_out_everything_and_jumps() -> None:
    hop = SshHost("gpu1", "10.0.0.1", "alice", 2222, ("/k/id",), known_hosts=("/h/kh",))
    host = SshHost("gpu2", "10.0.0.2", "bob", 22, ("/k/id2",), jump=hop,
                   known_hosts=("/h/kh", "/etc/ssh/ssh_known_hosts"))
    argv = ssh_argv(host)
    assert argv[:3] == ["ssh", "-F", "/dev/null"] and argv[-1] == "10.0.0.2"
    assert "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv
    assert "UserKnownHostsFile=/h/kh" in argv
    assert "GlobalKnownHostsFile=/etc/ssh/ssh_known_hosts" in argv
    assert argv[argv.index("-p") + 1] == "22" and argv[argv.index("-l") + 1] == "bob"
    proxy = next(a for a in argv if a.startswith("ProxyCommand="))
    assert "-W %h:%p" in proxy and "10.0.0.1" in proxy and "2222" in proxy and "alice" in proxy
    assert host.key_name == "10.0.0.2" and hop.key_name == "[10.0.0.1]:2222"
    assert not rsh_command(host).endswith("10.0.0.2")


@pytest.mark.parametrize("argv,hosts", [
    (["fab", "-H", "gpu1,gpu2", "sync"], ["gpu1", "gpu2"]),
    (["fab", "--hosts=a,b,c", "train"], ["a", "b", "c"]),
    (["fab", "-Hx", "ps"], ["x"]),
    (["fab", "--hosts", "u@h:22", "ps"], ["u@h:22"]),
    (["fab", "ps", "--", "-H", "no"], []),
    # a task's own flags are not fab's: -H inside train's --args names no host
    (["fab", "-H", "gpu1", "train", "--args", "-H 1024 --lr 0.1"], ["gpu1"]),
    (["fab", "-H", "gpu1", "train", "-H", "x"], ["gpu1"]),
    (["fab", "-i", "key", "-H", "a", "ps"], ["a"]),       # -i's value is no task
    (["fab", "-S", "cfg", "-Hb", "sync", "-Hc"], ["b"]),
    (["inv", "ps"], []),
])
def test_cli_hosts(argv: list[str], hosts: list[str]) -> None:
    from dltasks.tasks.invocation import cli_hosts, parse

    assert cli_hosts(argv) == hosts
    assert parse(argv).hosts == tuple(hosts)


class _Conn:
    def __init__(self, alias: str, user: str = "me") -> None:
        self.original_host, self.host, self.user = alias, "10.0.0.9", user


def test_is_last_host() -> None:
    from dltasks.tasks.invocation import parse

    hosts = parse(["fab", "-H", "gpu1,me@gpu2", "sync"]).hosts
    assert not is_last_host(_Conn("gpu1"), hosts)
    assert is_last_host(_Conn("gpu2"), hosts)
    assert is_last_host(_Conn("gpu1"), parse(["fab", "-H", "gpu1", "sync"]).hosts)


def test_several_hosts() -> None:
    from dltasks.tasks.invocation import parse

    assert parse(["fab", "-H", "a,b", "ps"]).several_hosts
    assert not parse(["fab", "-H", "a", "ps"]).several_hosts
    assert not parse(["inv", "ps"]).several_hosts


@pytest.mark.parametrize("value", ["~/dltasks/proj/results", "/home/me/dltasks/proj/results",
                                   "/home/me/dltasks/proj/./results/", "results"])
def test_outputs_inside_the_host_project_are_protected_in_every_spelling(
        tmp_path: Path, value: str) -> None:
    from dltasks.hosts.remote.sync import _protected
    from dltasks.settings import resolve

    s = resolve(tmp_path, environ={"DLT_OUTPUT_DIR": value})
    assert "results" in _protected(s, "/home/me/dltasks/proj", "/home/me")
    rules = filter_args(protect=_protected(s, "/home/me/dltasks/proj", "/home/me"))
    assert "--exclude=/results/" in rules or "--exclude=/results" in rules, rules


def test_outputs_outside_the_host_project_protect_nothing(tmp_path: Path) -> None:
    from dltasks.hosts.remote.sync import _protected
    from dltasks.settings import resolve

    for value in ("~/other/results", "/home/me/dltasks/proj2", "/data/results"):
        s = resolve(tmp_path, environ={"DLT_OUTPUT_DIR": value})
        assert _protected(s, "/home/me/dltasks/proj", "/home/me") == [], value
