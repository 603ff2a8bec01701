"""The pure parts of the sync shortcut (remote/synced.py); the whole of it against real sshd
is tests/integration/test_remote_synced.py."""

from __future__ import annotations

import os
from pathlib import Path

from dltasks.hosts.remote.synced import (
    LOCAL_FS,
    HostCopy,
    listing_digest,
    parse_check,
    stamp_name,
)
from dltasks.scripts import script


def test_parse_check() -> None:
    assert parse_check(["1795700982", "abc123", ""]) == HostCopy(1795700982, "abc123")
    assert parse_check(["1795700982", ""]) == HostCopy(1795700982, "")
    assert parse_check(["1795700982"]) == HostCopy(1795700982, "")
    assert parse_check([]) is None and parse_check(["not a clock"]) is None


def test_stamp_names_follow_the_folder_as_typed() -> None:
    assert stamp_name("~/dltasks/p") == stamp_name("dltasks/p") == stamp_name("~/dltasks/./p/")
    assert stamp_name("~/dltasks/p") != stamp_name("~/dltasks/q")


def test_the_check_only_trusts_local_filesystems() -> None:
    assert "nfs" not in LOCAL_FS and "ext2/ext3" in LOCAL_FS
    check = script("host_describe")
    assert "-cnewer" in check and "stat -f -c %T" in check


def test_listing_digest_sees_what_rsync_sees(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("a\n")
    (tmp_path / "b.log").write_text("b\n")
    rules = ["--exclude=*.log"]
    src = f"{tmp_path}/"
    first = listing_digest(rules, src)
    assert first and first == listing_digest(rules, src)
    (tmp_path / "b.log").write_text("changed, but excluded\n")
    assert listing_digest(rules, src) == first
    os.utime(tmp_path / "a.py", (1_000_000_000, 1_000_000_000))      # the mtime rsync compares
    second = listing_digest(rules, src)
    assert second != first
    (tmp_path / "a.py").write_text("A\n")                             # same size, new mtime
    os.utime(tmp_path / "a.py", (1_000_000_000, 1_000_000_000))      # ...put back: rsync too
    assert listing_digest(rules, src) == second                       # would skip it
    assert listing_digest([], src) != second                          # other rules
    assert listing_digest(rules, f"{tmp_path}/missing/") == ""
