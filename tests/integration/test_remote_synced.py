"""`fab -H gpu1 sync` with nothing to do skips rsync, and only then (remote/synced.py).

After a sync that wrote to the host, the next one runs rsync once more (those writes are newer
than its stamp) and the one after that takes the shortcut, provided the stamp's margin
(synced.MARGIN_S) has passed: :func:`_settled_and_unchanged`. Each change below is made to a
copy just seen as unchanged, so each detection is proven on its own.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from dltasks.hosts.remote.synced import MARGIN_S
from tests.sshd_harness import Lab, fab

pytestmark = [pytest.mark.ssh]

UP_TO_DATE = "is up to date: nothing changed here or there"


def _sync(d: Path, ssh_lab: Lab) -> str:
    r = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env())
    assert r.returncode == 0, r.stderr
    return r.stderr


def _settled_and_unchanged(d: Path, ssh_lab: Lab) -> None:
    time.sleep(MARGIN_S + 1.05)  # the stamp is in whole seconds
    again = _sync(d, ssh_lab)
    assert " 0 of " in again and ", 0 deleted" in again  # rsync once more: nothing to do
    assert UP_TO_DATE in _sync(d, ssh_lab)


def test_nothing_to_do_is_known_and_every_change_still_syncs(
        ssh_lab: Lab, remote_project: tuple[Path, str]) -> None:
    d, name = remote_project
    (d / "pkg").mkdir()
    for i in range(30):
        (d / "pkg" / f"m{i}.py").write_text(f"x = {i}\n")
    (d / ".gitignore").write_text("*.log\n")
    (d / "run.log").write_text("ignored\n")
    there = ssh_lab.hosts["gpu1"].home / "dltasks" / name
    first = _sync(d, ssh_lab)
    assert "synced" in first and UP_TO_DATE not in first

    _settled_and_unchanged(d, ssh_lab)
    (there / "pkg" / "m1.py").write_text("x = 'edited on the host'\n")   # same path, new bytes
    assert "synced" in _sync(d, ssh_lab)      # rsync ran; a run's rewrite is never reverted
    assert (there / "pkg" / "m1.py").read_text() == "x = 'edited on the host'\n"

    _settled_and_unchanged(d, ssh_lab)
    (there / "pkg" / "m2.py").unlink()                                   # deleted there
    assert "synced" in _sync(d, ssh_lab)
    assert (there / "pkg" / "m2.py").read_text() == "x = 2\n"

    _settled_and_unchanged(d, ssh_lab)
    os.chmod(there / "pkg" / "m3.py", 0o600)                             # metadata only
    assert "synced" in _sync(d, ssh_lab)
    assert (there / "pkg" / "m3.py").stat().st_mode & 0o777 == 0o600    # the host's, kept

    _settled_and_unchanged(d, ssh_lab)
    (there / "pkg" / "stray.py").write_text("left behind\n")             # added there
    assert "synced" in _sync(d, ssh_lab)
    assert (there / "pkg" / "stray.py").read_text() == "left behind\n"  # not a sync's: kept

    _settled_and_unchanged(d, ssh_lab)
    (d / "pkg" / "m5.py").unlink()                                       # deleted here
    assert "synced" in _sync(d, ssh_lab)
    assert not (there / "pkg" / "m5.py").exists()

    _settled_and_unchanged(d, ssh_lab)
    (d / "pkg" / "m4.py").write_text("x = 'edited here'\n")               # changed here
    assert "synced" in _sync(d, ssh_lab)
    assert (there / "pkg" / "m4.py").read_text() == "x = 'edited here'\n"

    _settled_and_unchanged(d, ssh_lab)
    with (d / "run.log").open("a") as f:                                  # ignored here
        f.write("more\n")
    assert UP_TO_DATE in _sync(d, ssh_lab)
    (d / ".gitignore").write_text("")                                     # the rules changed
    assert "synced" in _sync(d, ssh_lab)
    assert (there / "run.log").read_text() == "ignored\nmore\n"

    _settled_and_unchanged(d, ssh_lab)
    stamps = ssh_lab.hosts["gpu1"].home / ".cache" / "dltasks" / "sync"
    for stamp in stamps.iterdir():                                        # no stamp: no shortcut
        stamp.unlink()
    assert "synced" in _sync(d, ssh_lab)
