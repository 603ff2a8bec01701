"""Knowing, without running rsync, that a sync has nothing to do.

rsync (as we run it) copies what its filters let through when the size or the mtime (to the
second) differs, and deletes on the host what is gone here. So a new rsync would copy and
delete nothing when both hold:

1. here: ``rsync --list-only`` with the same filters prints what it printed before the last
   successful sync (names, sizes, mtimes, modes): :func:`listing_digest`;
2. there: nothing in the host's copy changed since that sync began: no file or folder under
   it has a ctime newer than the sync's stamp (``find -cnewer``; a write, a delete, a chmod,
   a rename all move a ctime, and nobody can set one back). The sync's own record
   (``.dltasks/``, :mod:`.sent`) is not looked at: it changes only when the listing of (1)
   did, and a sync deletes only what the record lists and the listing no longer has.

The stamp is ``~/.cache/dltasks/sync/<name>`` on the host: it holds the digest of (1), and its
mtime is the host's clock, in whole seconds, one second before that sync began. rsync reads
the copy only after that, so any change it did not see has a later ctime, also on filesystems
with one-second timestamps. ctimes must come from that same clock: the shortcut is taken only
when the copy is on a local filesystem (not NFS, CIFS, Lustre... whose server stamps ctimes
with its own clock). Anything uncertain (no stamp, another digest, another filesystem, an
error from find) means: run rsync. The host needs only sh, stat, find and touch.

After a sync that changed the host's copy, the next one runs rsync once more (its own writes
are newer than its stamp), and finds nothing to do; the one after that takes the shortcut.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from dltasks.hosts.remote.exec import from_home, quick_exec
from dltasks.hosts.shell import local, quote
from dltasks.hosts.target import HostCopy

STAMP_DIR = ".cache/dltasks/sync"
MARGIN_S = 1
#: Filesystems whose ctimes come from the host's own clock (GNU `stat -f -c %T` names); the
#: check in ``scripts/host_describe.sh`` lists the same (tests/unit/test_scripts.py).
LOCAL_FS = ("ext2/ext3", "xfs", "btrfs", "tmpfs", "zfs", "f2fs", "overlayfs")


def stamp_name(remote_dir: str) -> str:
    """The stamp's file name for DLT_REMOTE_DIR (as typed: one stamp per spelling)."""
    return hashlib.sha256(from_home(remote_dir).encode()).hexdigest()[:24]


def stamp_path(remote_dir: str) -> str:
    """The stamp, relative to the host's home."""
    return f"{STAMP_DIR}/{stamp_name(remote_dir)}"


def parse_check(lines: Sequence[str]) -> HostCopy | None:
    """The check's output (the lines after the host description), None when unreadable."""
    try:
        clock = int(lines[0].strip())
    except (IndexError, ValueError):
        return None
    return HostCopy(clock, lines[1].strip() if len(lines) > 1 else "")


def listing_digest(rules: Sequence[str], src: str) -> str:
    """What rsync would compare, here: its listing of ``src`` through ``rules``; "" when
    rsync cannot list (then there is no shortcut)."""
    res = local(["rsync", "-a", "--list-only", *rules, src])
    if not res.ok:
        return ""
    h = hashlib.sha256()
    for part in (*rules, src, res.stdout):
        h.update(part.encode(errors="surrogateescape") + b"\0")
    return h.hexdigest()


def write_stamp(transport: Any, remote_dir: str, digest: str, host_clock: int) -> bool:
    """After a successful sync: the stamp, dated before the sync began. False when the host
    could not write it (the next sync then runs rsync, as without one)."""
    path = stamp_path(remote_dir)
    script = ('cd "$HOME" && mkdir -p "$(dirname "$1")" && printf "%s" "$2" > "$1.tmp" && '
              'touch -d "@$3" "$1.tmp" && mv -f "$1.tmp" "$1"')
    code, _, _ = quick_exec(transport, quote(["sh", "-c", script, "_", path, digest,
                                              str(host_clock - MARGIN_S)]))
    return code == 0
