"""Path mapping: the map, the scanner, arguments, environment and config files (pure, fast)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dltasks.errors import DltError
from dltasks.paths.map import Kind, scan, value_hits
from dltasks.paths.scan import (
    Mapped,
    PathMap,
    Root,
    Unmapped,
    covering_folder,
    find_configs,
    format_for,
    make_root,
    map_args,
    map_env,
    map_text,
    rewrite_config,
    suggestion,
    unmapped_message,
)

# A local target: the laptop is the host.
LOCAL = PathMap((
    Root("code", "/home/me/proj", "/home/me/proj", "/workspace"),
    Root("data", "/home/me/data", "/home/me/data", "/data", readonly=True),
    Root("outputs", "/home/me/proj/outputs", "/home/me/proj/outputs", "/outputs"),
    Root("mount:/mnt/datasets", "/mnt/datasets", "/mnt/datasets", "/mnt/datasets", True),
))
# A remote target (three-way): laptop -> gpu1 after sync / .env.gpu1 -> container.
REMOTE = PathMap((
    Root("code", "/home/me/proj", "/home/u/dltasks/proj", "/workspace"),
    Root("data", "/home/me/data", "/mnt/ssd/data", "/data", readonly=True),
    Root("outputs", "/home/me/proj/outputs", "/home/u/dltasks/proj/outputs", "/outputs"),
))
CODE_ONLY = PathMap((Root("code", "/home/me/proj", "/home/me/proj", "/workspace"),))


# ---------------------------------------------------------------------------------------------
# the map


@pytest.mark.parametrize("path, expected", [
    ("/home/me/proj", "/workspace"),
    ("/home/me/proj/", "/workspace/"),
    ("/home/me/proj/a.py", "/workspace/a.py"),
    ("/home/me/proj/src/", "/workspace/src/"),
    ("/home/me/proj/src/pkg/mod.py", "/workspace/src/pkg/mod.py"),
    ("/home/me/proj2", None),
    ("/home/me/proj2/a", None),
    ("/home/me/pro", None),
    ("/home/me/proj.bak/x", None),
    ("/home/me/proj-old", None),
    ("/home/me/projx/", None),
    ("/home/me", None),
    ("/home", None),
    ("/home/me/proj/outputs", "/outputs"),
    ("/home/me/proj/outputs/", "/outputs/"),
    ("/home/me/proj/outputs/run1/ckpt.pt", "/outputs/run1/ckpt.pt"),
    ("/home/me/proj/outputs2/x", "/workspace/outputs2/x"),
    ("/home/me/proj/output", "/workspace/output"),
    ("/home/me/data/train.csv", "/data/train.csv"),
    ("/home/me/data", "/data"),
    ("/home/me/data/", "/data/"),
    ("/home/me/data2/x", None),
    ("/home/me/proj/../data/x", "/data/x"),
    ("/home/me/proj/./a//b", "/workspace/a/b"),
    ("/home/me/proj/a/../b", "/workspace/b"),
    ("/home/me/proj/a/../b/", "/workspace/b/"),
    ("/home/me/proj/..", None),
    ("/home/me/proj/../proj2/x", None),
    ("/home/me//proj/x", "/workspace/x"),
    ("/home/me/proj/outputs/../x", "/workspace/x"),
    ("/home/me/proj/x/../outputs/y", "/outputs/y"),
    ("/mnt/datasets/imagenet", "/mnt/datasets/imagenet"),
    ("/mnt/datasets", "/mnt/datasets"),
    ("/mnt/datasets2", None),
    ("/workspace/x", None),
    ("/data/x", None),
    ("/tmp/x", None),
    ("relative/x", None),
    ("./x", None),
    ("C:\\data", None),
    ("~/x", None),
    ("", None),
    ("/", None),
])
def test_to_container_local(path: str, expected: str | None) -> None:
    assert LOCAL.to_container(path) == expected


@pytest.mark.parametrize("path, expected", [
    ("/home/me/proj/x.py", "/workspace/x.py"),          # laptop spelling
    ("/home/u/dltasks/proj/x.py", "/workspace/x.py"),   # gpu1 spelling
    ("/home/me/data/a.csv", "/data/a.csv"),
    ("/mnt/ssd/data/a.csv", "/data/a.csv"),
    ("/mnt/ssd/data/", "/data/"),
    ("/mnt/ssd/data2/a", None),
    ("/mnt/ssd", None),
    ("/home/u/dltasks/proj/outputs/r", "/outputs/r"),
    ("/home/me/proj/outputs/r", "/outputs/r"),
    ("/home/u/dltasks/proj2/x", None),
    ("/home/u/dltasks", None),
])
def test_to_container_three_way(path: str, expected: str | None) -> None:
    assert REMOTE.to_container(path) == expected


@pytest.mark.parametrize("path, expected", [
    ("/home/me/proj/x", "/home/u/dltasks/proj/x"),
    ("/home/me/proj", "/home/u/dltasks/proj"),
    ("/home/me/proj/", "/home/u/dltasks/proj/"),
    ("/home/me/data/", "/mnt/ssd/data/"),
    ("/home/me/data/a/../b", "/mnt/ssd/data/b"),
    ("/home/me/proj/outputs/r", "/home/u/dltasks/proj/outputs/r"),
    ("/mnt/ssd/data/x", "/mnt/ssd/data/x"),
    ("/home/u/dltasks/proj/y", "/home/u/dltasks/proj/y"),
    ("/home/me/proj2", None),
    ("/workspace/x", None),
    ("rel/x", None),
])
def test_to_host(path: str, expected: str | None) -> None:
    assert REMOTE.to_host(path) == expected


def test_to_host_local_target_is_identity() -> None:
    assert LOCAL.to_host("/home/me/proj/a/b") == "/home/me/proj/a/b"


@pytest.mark.parametrize("path, kind", [
    ("/tmp/x", Kind.SYSTEM), ("/tmp", Kind.SYSTEM), ("/usr/lib/x.so", Kind.SYSTEM),
    ("/dev/shm", Kind.SYSTEM), ("/proc/1/status", Kind.SYSTEM), ("/sys/class", Kind.SYSTEM),
    ("/etc/hosts", Kind.SYSTEM), ("/run/user/1000", Kind.SYSTEM), ("/var/lib/x", Kind.SYSTEM),
    ("/bin/sh", Kind.SYSTEM), ("/lib64/ld.so", Kind.SYSTEM), ("/opt/conda/bin/python",
                                                             Kind.SYSTEM),
    ("/", Kind.SYSTEM), ("/..", Kind.SYSTEM),
    ("/run/media/me/disk/x", Kind.UNMAPPED), ("/tmpfoo/x", Kind.UNMAPPED),
    ("/varx", Kind.UNMAPPED), ("/opt/models/x", Kind.UNMAPPED),
    ("/srv/x", Kind.UNMAPPED), ("/home/other/x", Kind.UNMAPPED), ("/mnt/nas", Kind.UNMAPPED),
    ("/workspace", Kind.CONTAINER), ("/workspace/a", Kind.CONTAINER),
    ("/outputs/x/", Kind.CONTAINER), ("/data/x", Kind.CONTAINER),
    ("/workspace2/a", Kind.UNMAPPED), ("/datax", Kind.UNMAPPED),
    ("/home/me/proj/x", Kind.MAPPED), ("/mnt/datasets/x", Kind.MAPPED),
])
def test_resolve_kind(path: str, kind: Kind) -> None:
    assert LOCAL.resolve(path).kind is kind


def test_host_spelling_wins_over_container_spelling() -> None:
    # /data/raw on the host is the data root, though it is also under the container's /data.
    pm = PathMap((Root("data", "/data/raw", "/data/raw", "/data"),))
    assert pm.to_container("/data/raw/x") == "/data/x"
    assert pm.resolve("/data/other").kind is Kind.CONTAINER


def test_root_slash_maps_everything() -> None:
    pm = PathMap((Root("mount:/", "/", "/", "/host"),))
    assert pm.to_container("/etc/hosts") == "/host/etc/hosts"
    assert pm.to_container("/") == "/host"
    assert pm.to_host("/a") == "/a"


def test_aliases_are_matched_on_boundaries() -> None:
    pm = PathMap((Root("code", "/home/me/proj", "/home/me/proj", "/workspace",
                       aliases=("/data1/me/proj",)),))
    assert pm.to_container("/data1/me/proj/x") == "/workspace/x"
    assert pm.to_container("/data1/me/proj") == "/workspace"
    assert pm.to_container("/data1/me/proj2") is None
    assert pm.to_host("/data1/me/proj/x") == "/home/me/proj/x"


def test_longest_alias_beats_shorter_root() -> None:
    pm = PathMap((Root("code", "/a", "/a", "/workspace"),
                  Root("data", "/x/data", "/x/data", "/data", aliases=("/a/b/c",))))
    assert pm.to_container("/a/b/c/d") == "/data/d"
    assert pm.to_container("/a/b/d") == "/workspace/b/d"


def test_equal_spellings_first_root_wins() -> None:
    pm = PathMap((Root("one", "/x", "/x", "/a"), Root("two", "/x", "/x", "/b")))
    assert pm.to_container("/x/1") == "/a/1"


def test_roots_are_normalised() -> None:
    r = Root("code", "/home/me/proj/", "/home/me//proj/", "/workspace/", aliases=("/p/", "/p"))
    assert (r.local, r.host, r.container, r.aliases) == ("/home/me/proj", "/home/me/proj",
                                                         "/workspace", ("/p",))
    assert r.spellings == ("/home/me/proj", "/p")


@pytest.mark.parametrize("kwargs, fragment", [
    ({"local": "rel/x"}, "local path 'rel/x' is not absolute"),
    ({"host": "~/x"}, "host path '~/x' is not absolute"),
    ({"container": "data"}, "container path 'data' is not absolute"),
    ({"container": "/"}, "cannot mount over /"),
    ({"container": "//"}, "cannot mount over /"),
    ({"aliases": ("x",)}, "alias path 'x'"),
])
def test_bad_roots_are_refused(kwargs: dict[str, object], fragment: str) -> None:
    args: dict[str, object] = {"name": "data", "local": "/a", "host": "/a", "container": "/d"}
    args.update(kwargs)
    with pytest.raises(DltError, match=fragment) as e:
        Root(**args)  # type: ignore[arg-type]
    assert "\n" not in str(e.value)


def test_two_roots_at_one_container_path_are_refused() -> None:
    with pytest.raises(DltError, match="both go to /data"):
        PathMap((Root("data", "/a", "/a", "/data"), Root("mount:/b", "/b", "/b", "/data/")))


def test_table() -> None:
    assert REMOTE.table()[1] == ("data", "/home/me/data", "/mnt/ssd/data", "/data")
    assert [row[0] for row in LOCAL.table()] == ["code", "data", "outputs", "mount:/mnt/datasets"]


def test_make_root_adds_the_realpath_of_a_symlinked_folder(tmp_path: Path) -> None:
    real = tmp_path / "disk" / "proj"
    real.mkdir(parents=True)
    link = tmp_path / "proj"
    link.symlink_to(real)
    root = make_root("code", str(link), "/workspace")
    assert root.local == str(link) and root.host == str(link)
    assert root.aliases == (os.path.realpath(real),)
    pm = PathMap((root,))
    assert pm.to_container(f"{real}/train.yaml") == "/workspace/train.yaml"
    assert pm.to_container(f"{link}/train.yaml") == "/workspace/train.yaml"
    assert pm.to_container(f"{real}2/train.yaml") is None


def test_make_root_without_symlink_has_no_alias(tmp_path: Path) -> None:
    root = make_root("data", str(tmp_path), "/data", host="/mnt/ssd/data", readonly=True)
    assert root.aliases == () or root.aliases == (os.path.realpath(tmp_path),)
    assert (root.host, root.readonly) == ("/mnt/ssd/data", True)


# ---------------------------------------------------------------------------------------------
# finding paths in text


@pytest.mark.parametrize("text, paths", [
    ("/a/b", ["/a/b"]),
    ("x /a/b y", ["/a/b"]),
    ("\t/a\n/b\r\n", ["/a", "/b"]),
    ("a/b/c", []),
    ("1/2", []),
    ("and/or", []),
    ("2024/01/02", []),
    ("http://host/a/b", []),
    ("https://example.com:8080/x/y?q=/z&r=/w", []),
    ("s3://bucket/key", []),
    ("hdfs://nn:9000/user/me", []),
    ("file:///home/me/x", ["/home/me/x"]),
    ("FILE:///a/b", ["/a/b"]),
    ("file://localhost/a/b", ["/a/b"]),
    ("file://otherhost/a/b", []),
    ("notfile:///a/b", []),
    ("//server/share/x", []),
    ("\\\\server\\share\\x", []),
    ("C:\\data\\x", []),
    ("C:/data/x", []),
    ("c:/data", []),
    ("/a:/b", ["/a", "/b"]),
    ("/a/b:/c/d:/e", ["/a/b", "/c/d", "/e"]),
    ("PATH=/usr/bin:/home/me/bin", ["/usr/bin", "/home/me/bin"]),
    ("src:/a/b", []),
    ("gpu1:/data/x", []),
    ("--data=/a/b", ["/a/b"]),
    ("key=/a", ["/a"]),
    ("'/a b'", ["/a"]),
    ('"/a/b"', ["/a/b"]),
    ("`/a/b`", ["/a/b"]),
    ("(/a/b)", ["/a/b"]),
    ("[/a, /b]", ["/a", "/b"]),
    ("{/a}", ["/a"]),
    ("see /a/b.", ["/a/b"]),
    ("/a/b/..", ["/a/b/.."]),
    ("/a/.", ["/a/."]),
    ("/a/b.txt", ["/a/b.txt"]),
    ("/a/.hidden", ["/a/.hidden"]),
    ("/a/*.csv", ["/a/"]),
    ("/a/$USER/x", ["/a/"]),
    ("${HOME}/x", []),
    ("$HOME/x", []),
    ("~/x", []),
    ("./x", []),
    ("../x", []),
    ("/", []),
    ("a / b", []),
    ("</div>", []),
    ("x>/a", []),
    ("a|/b", ["/b"]),
    ("a;/b", ["/b"]),
    ("a&&/b", ["/b"]),
    ("# /a/b", ["/a/b"]),
    ("^/api/v1", []),
    ("/a\\ b", ["/a"]),
    ("/a/b,/c", ["/a/b", "/c"]),
    ("x=/a/lr=0.1/y", ["/a/lr=0.1/y"]),
    ("/* comment */", []),
    ("// comment", []),
    ("-v /h:/c:ro", ["/h", "/c"]),
    ("", []),
])
def test_scan(text: str, paths: list[str]) -> None:
    hits = scan(text)
    assert [h.path for h in hits] == paths
    assert all(text[h.start:h.end] == h.path for h in hits)


@pytest.mark.parametrize("value, paths", [
    ("/home/me/My Data/x.csv", ["/home/me/My Data/x.csv"]),
    ("/a b", ["/a b"]),
    ("/usr/bin/python /home/me/x.py", ["/usr/bin/python", "/home/me/x.py"]),
    ("/a -v", ["/a"]),
    ("/a:/b", ["/a", "/b"]),
    ("/a,/b", ["/a", "/b"]),
    ("/a;/b", ["/a", "/b"]),
    ("/a/lr=0.1,bs=2", ["/a/lr=0.1,bs=2"]),
    ("/a/x:y", ["/a/x:y"]),
    ("/a\n/b", ["/a", "/b"]),
    ("/a ", ["/a"]),
    ("//srv/x", []),
    ("python /a", ["/a"]),
    ("/a/*.csv", ["/a/*.csv"]),
    ("/a/$X", ["/a/$X"]),
    ("/", ["/"]),
])
def test_value_hits(value: str, paths: list[str]) -> None:
    assert [h.path for h in value_hits(value)] == paths


# ---------------------------------------------------------------------------------------------
# arguments and environment


@pytest.mark.parametrize("args, expected", [
    (["/home/me/proj/a.py"], ["/workspace/a.py"]),
    (["--data=/home/me/data/x"], ["--data=/data/x"]),
    (["--data", "/home/me/data/x"], ["--data", "/data/x"]),
    (["-d=/home/me/data"], ["-d=/data"]),
    (["data.path=/home/me/data/x"], ["data.path=/data/x"]),
    (["+data.path=/home/me/data/x"], ["+data.path=/data/x"]),
    (["DATA=/home/me/data/"], ["DATA=/data/"]),
    (["--out=/home/me/proj/outputs/My Run"], ["--out=/outputs/My Run"]),
    (["/home/me/data/My File.csv"], ["/data/My File.csv"]),
    (["--lr=0.1", "--epochs", "3"], ["--lr=0.1", "--epochs", "3"]),
    (["relative/x", "./y", "../z"], ["relative/x", "./y", "../z"]),
    (["C:\\data", "C:/data"], ["C:\\data", "C:/data"]),
    (["http://h/home/me/data"], ["http://h/home/me/data"]),
    (["file:///home/me/data/x"], ["file:///data/x"]),
    (["--paths=/home/me/data/a:/home/me/proj/b"], ["--paths=/data/a:/workspace/b"]),
    (["--mount=/home/me/data:/data:ro"], ["--mount=/data:/data:ro"]),
    (["--x=/home/me/proj/../data/y"], ["--x=/data/y"]),
    (["/home/me/proj/"], ["/workspace/"]),
    (["/workspace/a", "/tmp/x", "/mnt/datasets/i"], ["/workspace/a", "/tmp/x", "/mnt/datasets/i"]),
    (["-c", "python /home/me/proj/t.py --in /home/me/data"],
     ["-c", "python /workspace/t.py --in /data"]),
    ([], []),
])
def test_map_args(args: list[str], expected: list[str]) -> None:
    out, unmapped = map_args(args, LOCAL)
    assert out == expected
    assert unmapped == []


def test_map_args_three_way_takes_laptop_and_host_spellings() -> None:
    out, _ = map_args(["--a=/home/me/data/x", "--b=/mnt/ssd/data/x", "/home/u/dltasks/proj/c"],
                      REMOTE)
    assert out == ["--a=/data/x", "--b=/data/x", "/workspace/c"]


def test_map_args_reports_unmapped_with_position() -> None:
    out, unmapped = map_args(["train", "--data=/srv/ds/x", "/home/me/proj2/y"], LOCAL)
    assert out == ["train", "--data=/srv/ds/x", "/home/me/proj2/y"]
    assert [(u.path, u.where) for u in unmapped] == [("/srv/ds/x", "argument 2"),
                                                      ("/home/me/proj2/y", "argument 3")]
    assert unmapped[0].suggestion == "DLT_MOUNTS=/srv/ds:/srv/ds:ro"


@pytest.mark.parametrize("env, expected", [
    ({"DATA": "/home/me/data/x"}, {"DATA": "/data/x"}),
    ({"PYTHONPATH": "src:/home/me/proj/lib"}, {"PYTHONPATH": "src:/workspace/lib"}),
    ({"PATH": "/usr/bin:/home/me/proj/bin"}, {"PATH": "/usr/bin:/workspace/bin"}),
    ({"LD_LIBRARY_PATH": "/usr/lib:/home/me/proj/lib:"},
     {"LD_LIBRARY_PATH": "/usr/lib:/workspace/lib:"}),
    ({"PLUGIN_DIRS": "plugins:/home/me/data/p"}, {"PLUGIN_DIRS": "plugins:/data/p"}),
    ({"X": "/home/me/data:/home/me/proj"}, {"X": "/data:/workspace"}),
    ({"CMD": "python /home/me/proj/x.py --in /home/me/data"},
     {"CMD": "python /workspace/x.py --in /data"}),
    ({"TOKEN": "abc/def+/g=="}, {"TOKEN": "abc/def+/g=="}),
    ({"URL": "http://host/home/me/data"}, {"URL": "http://host/home/me/data"}),
    ({"HF_HOME": "/home/me/proj/outputs/hf"}, {"HF_HOME": "/outputs/hf"}),
    ({"N": "3", "EMPTY": ""}, {"N": "3", "EMPTY": ""}),
    ({"SPACED": "/home/me/data/My Data"}, {"SPACED": "/data/My Data"}),
    ({"GOOGLE_APPLICATION_CREDENTIALS": "/home/me/proj/key.json"},
     {"GOOGLE_APPLICATION_CREDENTIALS": "/workspace/key.json"}),
    ({"B": "/tmp/x", "A": "/workspace/y"}, {"B": "/tmp/x", "A": "/workspace/y"}),
])
def test_map_env(env: dict[str, str], expected: dict[str, str]) -> None:
    out, unmapped = map_env(env, LOCAL)
    assert out == expected
    assert list(out) == list(env)
    assert unmapped == []


def test_map_env_reports_unmapped_by_name() -> None:
    out, unmapped = map_env({"A": "/srv/a", "PYTHONPATH": "/srv/lib:/home/me/proj"}, LOCAL)
    assert out == {"A": "/srv/a", "PYTHONPATH": "/srv/lib:/workspace"}
    assert [(u.path, u.where) for u in unmapped] == [("/srv/a", "env A"),
                                                      ("/srv/lib", "env PYTHONPATH")]


# ---------------------------------------------------------------------------------------------
# config texts


def yaml_map(text: str, pm: PathMap = LOCAL) -> Mapped:
    return map_text(text, pm, fmt="yaml", where="c.yaml")


@pytest.mark.parametrize("text, expected", [
    ("data: /home/me/data/train.csv\n", "data: /data/train.csv\n"),
    ("data: '/home/me/data/x'\n", "data: '/data/x'\n"),
    ('data: "/home/me/data/x"\n', 'data: "/data/x"\n'),
    ("data: /home/me/data/x  # where the csv is\n", "data: /data/x  # where the csv is\n"),
    ("a:\n  b:\n    c: /home/me/proj/x\n", "a:\n  b:\n    c: /workspace/x\n"),
    ("l:\n  - /home/me/data/a\n  - rel/b\n  - /home/me/proj/outputs/\n",
     "l:\n  - /data/a\n  - rel/b\n  - /outputs/\n"),
    ("l: [/home/me/data/a, '/home/me/proj/b']\n", "l: [/data/a, '/workspace/b']\n"),
    ("m: {x: /home/me/data, y: 3}\n", "m: {x: /data, y: 3}\n"),
    ("- {p: /home/me/data/a}\n- [/home/me/proj/b]\n", "- {p: /data/a}\n- [/workspace/b]\n"),
    ("cmd: python /home/me/proj/t.py --out=/home/me/proj/outputs/r\n",
     "cmd: python /workspace/t.py --out=/outputs/r\n"),
    ("u: file:///home/me/data/x\n", "u: file:///data/x\n"),
    ("u: http://h/home/me/data/x\n", "u: http://h/home/me/data/x\n"),
    ("w: C:\\data\\x\n", "w: C:\\data\\x\n"),
    ("p: /home/me/data/My Data/x.csv\n", "p: /data/My Data/x.csv\n"),
    ("p: /home/me/proj2/x\n", "p: /home/me/proj2/x\n"),
    ("p: /workspace/x\nq: /tmp/y\n", "p: /workspace/x\nq: /tmp/y\n"),
    ("# only a comment /home/me/data\np: 1\n", "# only a comment /home/me/data\np: 1\n"),
    ("# data /home/me/data/x\np: /home/me/data/x\n", "# data /data/x\np: /data/x\n"),
    ("/home/me/data/x: 1\n", "/home/me/data/x: 1\n"),
    ("a: &d /home/me/data\nb: *d\n", "a: &d /data\nb: *d\n"),
    ("obj: !!python/object:x.Y {p: /home/me/data}\n", "obj: !!python/object:x.Y {p: /data}\n"),
    ("p: /home/me/data\n---\nq: /home/me/proj\n", "p: /data\n---\nq: /workspace\n"),
    ("t: |\n  line /home/me/data/a\n  more\n", "t: |\n  line /data/a\n  more\n"),
    ("a: /home/me/data\r\nb: /home/me/proj/x\r\n", "a: /data\r\nb: /workspace/x\r\n"),
    ("a: /home/me/proj/a/../b\n", "a: /workspace/b\n"),
    ("", ""),
    ("n: 3\n", "n: 3\n"),
])
def test_yaml(text: str, expected: str) -> None:
    assert yaml_map(text).text == expected


def test_yaml_three_way_both_spellings() -> None:
    text = "a: /home/me/data/x\nb: /mnt/ssd/data/x\nc: /home/u/dltasks/proj/y\n"
    assert yaml_map(text, REMOTE).text == "a: /data/x\nb: /data/x\nc: /workspace/y\n"


def test_yaml_replacements_and_unmapped_with_lines() -> None:
    text = ("data: /home/me/data/x\n"
            "more:\n"
            "  - /srv/big/set1\n"
            "  - /home/me/data/x\n"
            "out: /home/me/proj/outputs/run\n"
            "other: /home/me/proj2/y\n")
    m = yaml_map(text)
    assert m.replacements == (("/home/me/data/x", "/data/x"),
                              ("/home/me/proj/outputs/run", "/outputs/run"))
    assert m.unmapped == (
        Unmapped("/srv/big/set1", "c.yaml:3", "DLT_MOUNTS=/srv/big:/srv/big:ro"),
        Unmapped("/home/me/proj2/y", "c.yaml:6", "DLT_MOUNTS=/home/me/proj2:/home/me/proj2:ro"))


@pytest.mark.parametrize("text, expected", [
    ('{"data": "/home/me/data/x"}', '{"data": "/data/x"}'),
    ('{"data": "\\/home\\/me\\/data\\/x"}', '{"data": "\\/data\\/x"}'),
    ('{"a": ["/home/me/data/a", {"b": "/home/me/proj/b/"}]}',
     '{"a": ["/data/a", {"b": "/workspace/b/"}]}'),
    ('{\n  "a": "/home/me/data",\n  "n": 1\n}\n', '{\n  "a": "/data",\n  "n": 1\n}\n'),
    ('{"cmd": "--out=/home/me/proj/outputs/x"}', '{"cmd": "--out=/outputs/x"}'),
    ('{"u": "file:///home/me/data/x"}', '{"u": "file:///data/x"}'),
    ('{"u": "http://h/home/me/data"}', '{"u": "http://h/home/me/data"}'),
    ('{"w": "C:\\\\data"}', '{"w": "C:\\\\data"}'),
    ('{"/home/me/data/k": 1}', '{"/home/me/data/k": 1}'),
    ('{"a": "/home/me/data", "b": "\\/home\\/me\\/data"}', '{"a": "/data", "b": "\\/data"}'),
    ('["/home/me/proj2/x", "/home/me/proj/x"]', '["/home/me/proj2/x", "/workspace/x"]'),
    ('\ufeff{"a": "/home/me/data"}', '\ufeff{"a": "/data"}'),
    ('{"\\/home\\/me\\/data\\/k": "\\/home\\/me\\/data"}',
     '{"\\/home\\/me\\/data\\/k": "\\/data"}'),
    ('{"\\/home\\/me\\/data\\/k": "/home/me/data"}', '{"\\/home\\/me\\/data\\/k": "/data"}'),
])
def test_json(text: str, expected: str) -> None:
    assert map_text(text, LOCAL, fmt="json", where="c.json").text == expected


@pytest.mark.parametrize("text, expected", [
    ('data = "/home/me/data/x"\n', 'data = "/data/x"\n'),
    ("data = '/home/me/data/x'\n", "data = '/data/x'\n"),
    ('[train]\nout = "/home/me/proj/outputs" # c\n', '[train]\nout = "/outputs" # c\n'),
    ('paths = ["/home/me/data/a", "rel", "/home/me/proj/b"]\n',
     'paths = ["/data/a", "rel", "/workspace/b"]\n'),
    ('[[runs]]\np = "/home/me/data/1"\n[[runs]]\np = "/home/me/data/2"\n',
     '[[runs]]\np = "/data/1"\n[[runs]]\np = "/data/2"\n'),
    ('t = {p = "/home/me/data"}\n', 't = {p = "/data"}\n'),
    ('w = \'C:\\data\'\n', 'w = \'C:\\data\'\n'),
    ('n = 3\nd = 2024-01-02\n', 'n = 3\nd = 2024-01-02\n'),
])
def test_toml(text: str, expected: str) -> None:
    assert map_text(text, LOCAL, fmt="toml", where="c.toml").text == expected


@pytest.mark.parametrize("text, expected", [
    ("[paths]\ndata = /home/me/data/x\n", "[paths]\ndata = /data/x\n"),
    ("[paths]\ndata: /home/me/data/x\n", "[paths]\ndata: /data/x\n"),
    ("[a]\nx = /home/me/data\n[b]\ny = /home/me/proj/z\n",
     "[a]\nx = /data\n[b]\ny = /workspace/z\n"),
    ("[DEFAULT]\nroot = /home/me/proj\n[s]\nk = 1\n", "[DEFAULT]\nroot = /workspace\n[s]\nk = 1\n"),
    ("; comment /home/me/data\n[s]\nk = 1\n", "; comment /home/me/data\n[s]\nk = 1\n"),
    ("[s]\nfiles =\n  /home/me/data/a\n  /home/me/data/b\n",
     "[s]\nfiles =\n  /data/a\n  /data/b\n"),
    ("[s]\np = %(here)s/x\n", "[s]\np = %(here)s/x\n"),
    ("data = /home/me/data\nn = 2\n", "data = /data\nn = 2\n"),
    ("[net]\nw = /home/me/data/a\n[net]\nw = /home/me/data/b\n",
     "[net]\nw = /data/a\n[net]\nw = /data/b\n"),
])
def test_ini(text: str, expected: str) -> None:
    assert map_text(text, LOCAL, fmt="ini", where="c.ini").text == expected


@pytest.mark.parametrize("text, expected", [
    ("DATA=/home/me/data/x\n", "DATA=/data/x\n"),
    ('DATA="/home/me/data/My Data"\n', 'DATA="/data/My Data"\n'),
    ("DATA='/home/me/data/x'\n", "DATA='/data/x'\n"),
    ("export OUT=/home/me/proj/outputs\n", "export OUT=/outputs\n"),
    ("# DATA=/home/me/data\nN=1\n", "# DATA=/home/me/data\nN=1\n"),
    ("PYTHONPATH=/home/me/proj/src:/home/me/proj/lib\n",
     "PYTHONPATH=/workspace/src:/workspace/lib\n"),
    ("X=${HOME}/data\n", "X=${HOME}/data\n"),
    ("\n\nK=v\n", "\n\nK=v\n"),
])
def test_env_file(text: str, expected: str) -> None:
    assert map_text(text, LOCAL, fmt="env", where=".env.run").text == expected


@pytest.mark.parametrize("text, expected", [
    ("python /home/me/proj/t.py --data /home/me/data\n", "python /workspace/t.py --data /data\n"),
    ("/home/me/data/a\n/home/me/data/b\n", "/data/a\n/data/b\n"),
    ("see /home/me/data.\n", "see /data.\n"),
    ("http://x/home/me/data /home/me/data\n", "http://x/home/me/data /data\n"),
    ("# any /home/me/proj/x\n", "# any /workspace/x\n"),
    ("-v /home/me/data:/data:ro", "-v /data:/data:ro"),
    ("<path>/home/me/data/x</path>", "<path>/home/me/data/x</path>"),
    ("path=/home/me/data/x;", "path=/data/x;"),
    ("/home/me/proj2/x /home/me/proj/x", "/home/me/proj2/x /workspace/x"),
    ("no paths at all", "no paths at all"),
])
def test_text(text: str, expected: str) -> None:
    assert map_text(text, LOCAL, fmt="text", where="run.sh").text == expected


def test_text_reports_unmapped_once_at_first_line() -> None:
    m = map_text("a\n/srv/x/y\n/srv/x/y\n", LOCAL, fmt="text", where="run.sh")
    assert m.unmapped == (Unmapped("/srv/x/y", "run.sh:2", "DLT_MOUNTS=/srv/x:/srv/x:ro"),)
    assert m.replacements == ()


def test_replacements_are_distinct_in_order() -> None:
    m = map_text("/home/me/proj/b /home/me/data/a /home/me/proj/b", LOCAL, fmt="text", where="t")
    assert m.replacements == (("/home/me/proj/b", "/workspace/b"), ("/home/me/data/a", "/data/a"))


@pytest.mark.parametrize("fmt, text, where", [
    ("yaml", "a: [1, 2\nb: 3\n", "c.yaml:2"),
    ("yaml", "a: 1\n  b: 2\n", "c.yaml:2"),
    ("yaml", "a: 'x\n", "c.yaml:2"),
    ("json", '{"a": 1,\n "b": }\n', "c.json:2"),
    ("json", '{"a": "/x"', "c.json:1"),
    ("toml", 'a = 1\nb = \n', "c.toml:2"),
    ("toml", 'a = "x\n', "c.toml:1"),
    ("ini", "[s]\nk = 1\nthis is not ini\n", "c.ini:3"),
    ("ini", "[s\nk = 1\n", "c.ini:1"),
    ("env", "A=1\nB='x\n", "c.env:2"),
])
def test_malformed_files_are_refused_with_line(fmt: str, text: str, where: str) -> None:
    with pytest.raises(DltError) as e:
        map_text(text, LOCAL, fmt=fmt, where=where.rsplit(":", 1)[0])
    msg = str(e.value)
    assert msg.startswith(f"{where}: invalid {fmt.upper()} (")
    assert "DLT_CONFIGS" in msg and "\n" not in msg


def test_path_written_with_escapes_is_refused() -> None:
    with pytest.raises(DltError, match="cannot rewrite '/home/me/data/x' in place"):
        map_text('{"a": "\\u002fhome/me/data/x"}', LOCAL, fmt="json", where="c.json")


def test_unknown_format() -> None:
    with pytest.raises(ValueError):
        map_text("", LOCAL, fmt="xml", where="x")


@pytest.mark.parametrize("name, fmt", [
    ("config.yaml", "yaml"), ("a/b/C.YML", "yaml"), ("x.json", "json"), ("pyproject.toml", "toml"),
    ("setup.cfg", "ini"), ("x.ini", "ini"), (".env", "env"), (".env.gpu1", "env"),
    ("prod.env", "env"), ("run.sh", "text"), ("notes.txt", "text"), ("Makefile", "text"),
    ("x.jsonl", "text"), ("x.yaml.bak", "text"), (".envrc", "text"), ("x.conf", "text"),
])
def test_format_for(name: str, fmt: str) -> None:
    assert format_for(name) == fmt


# ---------------------------------------------------------------------------------------------
# files


def test_rewrite_config_leaves_src_byte_identical(tmp_path: Path) -> None:
    src = tmp_path / "proj" / "train.yaml"
    src.parent.mkdir()
    original = b"# keep me\r\ndata: /home/me/data/x  # c\r\nout: /srv/o/y\r\n"
    src.write_bytes(original)
    os.chmod(src, 0o755)
    before = os.stat(src)
    dest = tmp_path / "runs" / "r1" / "configs" / "train.yaml"
    m = rewrite_config(src, dest, LOCAL, where="train.yaml")
    assert src.read_bytes() == original
    after = os.stat(src)
    assert (before.st_mtime_ns, before.st_mode) == (after.st_mtime_ns, after.st_mode)
    assert dest.read_bytes() == b"# keep me\r\ndata: /data/x  # c\r\nout: /srv/o/y\r\n"
    assert os.stat(dest).st_mode & 0o777 == 0o755
    assert m.unmapped == (Unmapped("/srv/o/y", "train.yaml:3", "DLT_MOUNTS=/srv/o:/srv/o:ro"),)


def test_rewrite_config_refuses_non_utf8(tmp_path: Path) -> None:
    src = tmp_path / "c.yaml"
    src.write_bytes(b"a: /home/me/data/caf\xe9\n")
    with pytest.raises(DltError) as e:
        rewrite_config(src, tmp_path / "out" / "c.yaml", LOCAL, where="configs/c.yaml")
    assert str(e.value) == ("configs/c.yaml: not UTF-8 text (byte 0xe9 at offset 20); save it "
                            "as UTF-8, or leave it out of DLT_CONFIGS")
    assert not (tmp_path / "out").exists()


def test_rewrite_config_refuses_to_write_over_src(tmp_path: Path) -> None:
    src = tmp_path / "c.yaml"
    src.write_text("a: /home/me/data\n")
    with pytest.raises(DltError, match="in place"):
        rewrite_config(src, src, LOCAL, where="c.yaml")
    assert src.read_text() == "a: /home/me/data\n"


def test_rewrite_config_refuses_a_symlink_to_src(tmp_path: Path) -> None:
    src = tmp_path / "c.yaml"
    src.write_text("a: /home/me/data\n")
    (tmp_path / "link.yaml").symlink_to(src)
    with pytest.raises(DltError, match="in place"):
        rewrite_config(src, tmp_path / "link.yaml", LOCAL, where="c.yaml")
    assert src.read_text() == "a: /home/me/data\n"


def test_rewrite_config_malformed_names_file_and_line(tmp_path: Path) -> None:
    src = tmp_path / "c.json"
    src.write_text('{"a": "/home/me/data",\n}\n')
    with pytest.raises(DltError, match=r"^c\.json:2: invalid JSON"):
        rewrite_config(src, tmp_path / "o" / "c.json", LOCAL, where="c.json")


def test_rewrite_config_missing_src(tmp_path: Path) -> None:
    with pytest.raises(DltError, match="cannot read it"):
        rewrite_config(tmp_path / "nope.yaml", tmp_path / "o.yaml", LOCAL, where="nope.yaml")


def _tree(root: Path, files: list[str]) -> None:
    for f in files:
        p = root / f
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x: 1\n")


FILES = ["a.yaml", "b.yml", "c.json", "main.py", "configs/m.yaml", "configs/deep/er/x.txt",
         "sub/s.yaml", ".git/config.yaml", "runs/r1/configs/a.yaml", "__pycache__/x.yaml",
         ".venv/lib/x.yaml", "venv/pyvenv.cfg", "venv/lib/y.yaml", "outputs/o.yaml",
         "configs/runs/keep.yaml", "node_modules/p/x.json"]


@pytest.mark.parametrize("globs, exclude, expected", [
    (["*.yaml"], [], ["a.yaml"]),
    (["*.yaml", "*.yml", "*.json"], [], ["a.yaml", "b.yml", "c.json"]),
    (["configs/**/*"], [], ["configs/deep/er/x.txt", "configs/m.yaml", "configs/runs/keep.yaml"]),
    (["**/*.yaml"], ["outputs"], ["a.yaml", "configs/m.yaml", "configs/runs/keep.yaml",
                                  "sub/s.yaml"]),
    (["**/*.yaml"], ["outputs/", "configs/runs/*"], ["a.yaml", "configs/m.yaml", "sub/s.yaml"]),
    (["**/*.yaml"], ["runs/**", ".git/**", "outputs/**", "configs/runs/**"],
     ["a.yaml", "configs/m.yaml", "sub/s.yaml"]),
    (["./sub/*.yaml"], [], ["sub/s.yaml"]),
    (["configs/*.yaml"], [], ["configs/m.yaml"]),
    (["nothing/*"], [], []),
    ([], [], []),
])
def test_find_configs(tmp_path: Path, globs: list[str], exclude: list[str],
                      expected: list[str]) -> None:
    _tree(tmp_path, FILES)
    found = find_configs(tmp_path, globs, exclude)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == expected


def test_find_configs_absolute_exclude_and_glob(tmp_path: Path) -> None:
    _tree(tmp_path, FILES)
    found = find_configs(tmp_path, [f"{tmp_path}/**/*.yaml"], [str(tmp_path / "outputs"),
                                                                  "/elsewhere"])
    assert "outputs/o.yaml" not in [p.relative_to(tmp_path).as_posix() for p in found]
    with pytest.raises(DltError, match="outside the project"):
        find_configs(tmp_path, ["/etc/*.conf"])


# ---------------------------------------------------------------------------------------------
# suggestions and the message


@pytest.mark.parametrize("path, folder", [
    ("/mnt/datasets/imagenet/train", "/mnt/datasets"),
    ("/mnt/datasets/x.csv", "/mnt/datasets"),
    ("/mnt/x.csv", "/mnt"),
    ("/home/me/data2/x.csv", "/home/me/data2"),
    ("/home/me/x.csv", "/home/me"),
    ("/home/me/a/b/c", "/home/me/a"),
    ("/Users/me/Downloads/f.csv", "/Users/me/Downloads"),
    ("/media/me/disk/a/b", "/media/me/disk"),
    ("/run/media/me/disk/a", "/run/media/me/disk"),
    ("/srv/x", "/srv"),
    ("/srv/x/", "/srv/x"),
    ("/scratch/u/big/f", "/scratch/u"),
    ("/mnt/a/../b/c", "/mnt/b"),
])
def test_covering_folder(path: str, folder: str) -> None:
    assert covering_folder(path) == folder


@pytest.mark.parametrize("pm, path, expected", [
    (LOCAL, "/mnt/other/x", "DLT_MOUNTS=/mnt/other:/mnt/other:ro"),
    (LOCAL, "/srv/runs/exp1/x", "DLT_MOUNTS=/srv/runs:/srv/runs"),
    (LOCAL, "/srv/x/checkpoints/", "DLT_MOUNTS=/srv/x:/srv/x"),
    (CODE_ONLY, "/mnt/other/x", "DLT_DATA_DIR=/mnt/other"),
    (CODE_ONLY, "/srv/outputs/x", "DLT_OUTPUT_DIR=/srv/outputs"),
    (CODE_ONLY, "/home/me/model_out/x", "DLT_OUTPUT_DIR=/home/me/model_out"),
    (CODE_ONLY, "/mnt/My Disk/x", '"DLT_DATA_DIR=/mnt/My Disk"'),
    (LOCAL, "/mnt/My Disk/x", '"DLT_MOUNTS=/mnt/My Disk:/mnt/My Disk:ro"'),
])
def test_suggestion(pm: PathMap, path: str, expected: str) -> None:
    assert suggestion(path, pm) == expected


def test_unmapped_message_is_one_line_with_every_path() -> None:
    _, from_args = map_args(["--a=/srv/ds/a", "/srv/ds/b"], LOCAL)
    m = yaml_map("x: /mnt/nas/y\n")
    msg = unmapped_message([*m.unmapped, *from_args])
    assert "\n" not in msg
    assert msg.startswith("3 host paths are outside every folder mounted in the container: ")
    assert "/mnt/nas/y (c.yaml:1) [DLT_MOUNTS=/mnt/nas:/mnt/nas:ro]" in msg
    assert "/srv/ds/a (argument 1), /srv/ds/b (argument 2) [DLT_MOUNTS=/srv/ds:/srv/ds:ro]" in msg
    assert "add /mnt/nas:/mnt/nas:ro,/srv/ds:/srv/ds:ro to DLT_MOUNTS" in msg
    assert msg.endswith("or pass --allow-unmapped to run anyway")


def test_unmapped_message_keeps_one_data_dir() -> None:
    _, un = map_args(["/mnt/a/x", "/srv/b/y", "/mnt/a/z"], CODE_ONLY)
    assert [u.suggestion for u in un] == ["DLT_DATA_DIR=/mnt/a", "DLT_DATA_DIR=/srv/b",
                                          "DLT_DATA_DIR=/mnt/a"]
    msg = unmapped_message(un)
    assert "/mnt/a/x (argument 1), /mnt/a/z (argument 3) [DLT_DATA_DIR=/mnt/a]" in msg
    assert "/srv/b/y (argument 2) [DLT_MOUNTS=/srv/b:/srv/b:ro]" in msg
    assert "set DLT_DATA_DIR=/mnt/a and add /srv/b:/srv/b:ro to DLT_MOUNTS in .env" in msg
    assert msg.startswith("3 host paths are")


def test_unmapped_message_single_and_capped() -> None:
    one = unmapped_message([Unmapped("/x/y", "env X", "DLT_DATA_DIR=/x")])
    assert one.startswith("1 host path is outside") and "set DLT_DATA_DIR=/x in .env" in one
    many = [Unmapped(f"/srv/d/{i}", f"argument {i}", "DLT_MOUNTS=/srv/d:/srv/d:ro")
            for i in range(30)]
    msg = unmapped_message(many)
    assert "/srv/d/19 (argument 19)" in msg and "/srv/d/20" not in msg
    assert "and 10 more" in msg
    assert unmapped_message([]) == ""


# ---------------------------------------------------------------------------------------------
# properties over random inputs (fixed seeds: deterministic)

_ATOMS = ["/", "/home/me/proj", "/home/me/data", "/mnt/ssd/data", "/home/me/proj/outputs", "a",
          "..", ".", " ", ":", "=", ",", "file://", "http://", "C:", "\\", '"', "'", "x", "-",
          "\n", "/tmp", "//", "$", "*", "\\/", "é", "/srv"]


@pytest.mark.parametrize("seed", range(4))
def test_mapping_is_idempotent_and_hits_are_exact(seed: int) -> None:
    import random

    rnd = random.Random(seed)
    for _ in range(500):
        s = "".join(rnd.choice(_ATOMS) for _ in range(rnd.randint(0, 12)))
        assert all(s[h.start:h.end] == h.path and h.path[0] == "/" for h in scan(s))
        for pm in (LOCAL, REMOTE):
            once = map_text(s, pm, fmt="text", where="t").text
            assert map_text(once, pm, fmt="text", where="t").text == once
            args, _ = map_args([s], pm)
            assert map_args(args, pm)[0] == args


_VALUES = ["/home/me/data/a.csv", "/home/me/proj/src/", "/mnt/ssd/data/x", "rel/p", "/srv/q",
           "/home/me/data/My Data/f", "--out=/home/me/proj/outputs/r", "http://h/home/me/data",
           "file:///home/me/data/u", "/tmp/t", "/home/me/proj2/z", "C:\\w", "/workspace/k",
           "/home/me/data:/home/me/proj", "/home/me/proj/a/../b", "3", "/home/me/data/x."]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
@pytest.mark.parametrize("seed", range(3))
def test_structured_rewrite_equals_mapping_each_value(fmt: str, seed: int) -> None:
    import json
    import random

    import yaml

    from dltasks.paths.scan import map_value

    rnd = random.Random(seed)
    for _ in range(30):
        data = {f"k{i}": (rnd.choice(_VALUES) if rnd.random() < 0.7 else
                          {"n": [rnd.choice(_VALUES) for _ in range(3)]}) for i in range(6)}
        text = yaml.safe_dump(data) if fmt == "yaml" else json.dumps(data, indent=rnd.choice(
            [None, 2]))
        if fmt == "json" and rnd.random() < 0.5:
            text = text.replace("/", "\\/")
        mapped = map_text(text, REMOTE, fmt=fmt, where="c")

        def expect(v: object) -> object:
            if isinstance(v, str):
                return map_value(v, REMOTE, where="v")[0]
            if isinstance(v, dict):
                return {k: expect(x) for k, x in v.items()}
            return [expect(x) for x in v]  # type: ignore[attr-defined]

        loaded = yaml.safe_load(mapped.text) if fmt == "yaml" else json.loads(mapped.text)
        assert loaded == expect(data)
