"""Pure parts of the sync record (remote/sent.py) and fetch's merge (remote/fetch.py); the
whole of both against real sshd is tests/integration/test_remote_sync.py and
test_remote_results.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dltasks.errors import DltError
from dltasks.hosts.remote.fetch import beside, merge, run_window
from dltasks.hosts.remote.sent import (
    RUN_ID_GLOB,
    Sent,
    deletions,
    identical,
    open_host_copy,
    parse_items,
    parse_out,
    record_of,
    safe_rel,
    split_new,
)
from dltasks.runs.record import RunRecord


def test_parse_out_keeps_paths_unescaped_and_skips_the_root() -> None:
    out = ("dlt:.d         :./\ndlt:>f+++++++++:a b.py\ndlt:cd+++++++++:sub/\n"
           "dlt:.f         :sub/caf\\#303\\#251.txt\nNumber of files: 3\n")
    assert parse_out(out) == ["a b.py", "sub", "sub/café.txt"]


def test_only_safe_paths_are_recorded_or_deleted() -> None:
    for bad in ("", "/etc/passwd", "../x", "a/../../x", "a//b", ".dltasks/sent", "runs/r1/x",
                "a\nb"):
        assert not safe_rel(bad), bad
    assert safe_rel("checkpoints/ckpt.pt") and safe_rel(".hidden")


def test_deletions_are_what_was_sent_and_is_no_longer(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "deep").mkdir(parents=True)
    (tmp_path / "pkg" / "deep" / "a.py").write_text("a")
    (tmp_path / "keep.py").write_text("k")
    (tmp_path / "ln").symlink_to("keep.py")
    before = record_of(tmp_path, ["pkg", "pkg/deep", "pkg/deep/a.py", "keep.py", "ln",
                                  "missing.py", "../up"])
    assert set(before.files) == {"pkg/deep/a.py", "keep.py"}
    assert before.links == {"ln"} and before.dirs == {"pkg", "pkg/deep"}
    assert Sent.from_json(before.to_json()) == before
    now = record_of(tmp_path, ["keep.py"])
    size, mtime = before.files["pkg/deep/a.py"]
    assert deletions(before, now) == [f"f\t{size} {mtime}\tpkg/deep/a.py", "l\t\tln",
                                      "d\t\tpkg/deep", "d\t\tpkg"]
    assert deletions(before, before) == [] and deletions(Sent(), now) == []
    assert Sent.from_json("not json") == Sent()


def test_a_folder_dltasks_did_not_make_is_refused_in_one_line() -> None:
    with pytest.raises(DltError) as e:
        open_host_copy("/h/p\nforeign\n", 0, "", "/h/p", "gpu1")
    assert "\n" not in e.value.message and "not made by dltasks" in e.value.message
    assert "DLT_REMOTE_DIR" in e.value.message and "`fab -H gpu1 sync --adopt`" in e.value.message
    got = open_host_copy('/real/p\nmark\n{"files": {"a": [1, 2]}}', 0, "", "/h/p", "gpu1")
    assert got.real == "/real/p" and got.sent.files == {"a": (1, 2)}


def test_merge_keeps_differing_local_files(tmp_path: Path) -> None:
    staging, dest = tmp_path / "s", tmp_path / "d"
    (staging / "sub").mkdir(parents=True)
    dest.mkdir()
    (staging / "new.txt").write_text("new")
    (staging / "same.txt").write_text("same")
    (staging / "m.txt").write_text("theirs")
    (staging / "sub" / "x").write_text("x")
    (dest / "same.txt").write_text("same")
    (dest / "m.txt").write_text("mine")
    (dest / "sub").write_text("a file in the way")
    done = merge(staging, dest, "gpu1")
    assert (dest / "new.txt").read_text() == "new" and (dest / "m.txt").read_text() == "mine"
    assert (dest / "m.from-gpu1.txt").read_text() == "theirs"
    assert (done.moved, done.same, done.kept, done.blocked) == (
        1, 1, [("m.txt", "m.from-gpu1.txt")], ["sub/x"])
    (staging / "m.txt").write_text("theirs")  # again: already beside, nothing new
    again = merge(staging, dest, "gpu1")
    assert again.kept == [] and again.moved == 0 and again.same == 2  # m.txt, same.txt
    (staging / "m.txt").write_text("theirs, later")
    assert merge(staging, dest, "gpu1").kept == [("m.txt", "m.from-gpu1-2.txt")]
    assert beside(Path("a/ckpt"), "h", 1) == Path("a/ckpt.from-h")


def test_merge_never_follows_or_brings_a_symlink_out_of_dest(tmp_path: Path) -> None:
    staging, dest, outside = tmp_path / "s", tmp_path / "d", tmp_path / "outside"
    (staging / "sub" / "deep").mkdir(parents=True)
    dest.mkdir()
    outside.mkdir()
    (staging / "abs").symlink_to(outside)                     # absolute: out
    (staging / "sub" / "up").symlink_to("../../outside")      # relative, climbs out
    (staging / "sub" / "ok").symlink_to("deep")                # stays inside: brought
    (staging / "gone").mkdir()
    (staging / "gone" / "x.txt").write_text("x")
    (dest / "gone").symlink_to(outside / "nothing-yet")       # a dangling link in dest
    done = merge(staging, dest, "gpu1")
    assert sorted(done.unsafe) == ["abs", "sub/up"] and done.blocked == ["gone/x.txt"]
    assert not os.path.lexists(dest / "abs") and not os.path.lexists(dest / "sub" / "up")
    assert os.readlink(dest / "sub" / "ok") == "deep"
    assert list(outside.iterdir()) == []                       # nothing landed outside


def test_run_window_prefers_the_engines_times() -> None:
    record = RunRecord.from_json({"run_id": "", "started": "2026-01-01T00:00:00+00:00",
                                  "ended": None})
    info = {"State": {"Running": False, "StartedAt": "2026-01-01T00:00:10.5Z",
                      "FinishedAt": "2026-01-01T00:00:20.9Z"}}
    assert run_window(record, info) == (1767225609, 1767225621)
    assert run_window(record, {"State": {"Running": True,
                                         "StartedAt": "2026-01-01T00:00:10Z"}})[1] is None
    assert run_window(record, None) == (1767225599, None)
    with pytest.raises(DltError):
        run_window(RunRecord.from_json({}), None)


def test_new_paths_are_those_no_sync_sent() -> None:
    out = ("dlt:cd+++++++++:./\ndlt:>f+++++++++:main.py\ndlt:cd+++++++++:checkpoints/\n"
           "dlt:>f+++++++++:checkpoints/ckpt.pt\ndlt:cd+++++++++:runs/\n"
           "dlt:>f+++++++++:runs/20261207-010203-abcd/configs/a.yaml\n")
    before = Sent({"main.py": (1, 2)})
    known, new = split_new(parse_items(out), before)
    assert new == ["checkpoints", "checkpoints/ckpt.pt"]
    assert known == ["main.py", "runs", "runs/20261207-010203-abcd/configs/a.yaml"]
    assert split_new(parse_items(out), Sent())[1] == ["main.py", "checkpoints",
                                                        "checkpoints/ckpt.pt"]


@pytest.mark.parametrize("item,same", [(".f         ", True), (".f...p.....", True),
                                       (".L         ", True), (">f.st......", False),
                                       (">f..t......", False), (".f.s.......", False),
                                       ("cL+++++++++", False), ("*deleting  ", False)])
def test_identical_is_rsyncs_quick_check(item: str, same: bool) -> None:
    assert identical(item) is same


def test_run_id_glob_is_the_run_id() -> None:
    import fnmatch

    from dltasks.runs.record import RUN_ID, RUN_ID_EXAMPLE

    assert fnmatch.fnmatchcase(RUN_ID_EXAMPLE, RUN_ID_GLOB) and RUN_ID.fullmatch(RUN_ID_EXAMPLE)
    for bad in ("notes", "20261207-010203-abcg", "2026120-010203-abcd", "r1"):
        assert not fnmatch.fnmatchcase(bad, RUN_ID_GLOB), bad
