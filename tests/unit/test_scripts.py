"""The shell programs in ``dltasks/scripts/*.sh`` (issue 22): each parses as POSIX sh, loses only
its comment header on the way to the host, ends in a command (callers append ``; more``), and is
used by the code. ``dev/test`` runs shellcheck over the same files."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from dltasks.scripts import script

SRC = Path(__file__).resolve().parents[2] / "src" / "dltasks"
FILES = sorted((SRC / "scripts").glob("*.sh"))


def test_there_are_scripts() -> None:
    assert len(FILES) >= 5


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_a_script_is_sh_without_its_header(path: Path) -> None:
    text = script(path.stem)
    assert path.read_text().startswith("# shellcheck shell=sh\n")
    assert text and not text.startswith("#") and text in path.read_text()
    last = text.splitlines()[-1].strip()
    assert not last.startswith("#") and not text.endswith("\n")
    assert subprocess.run(["sh", "-n", "-c", text + "; true"], capture_output=True).returncode == 0


def test_every_script_is_used_and_every_use_has_a_file() -> None:
    used = set()
    for p in SRC.rglob("*.py"):
        used |= set(re.findall(r'\bscript\("([a-z0-9_]+)"\)', p.read_text()))
    assert used == {p.stem for p in FILES}


def test_the_lock_script_marks_its_holder_as_dltasks_gpu_lock_names_it() -> None:
    from dltasks.gpu.lock import HELD_MARK, LOCK_DIRS, LOCK_NAME
    from dltasks.hosts.remote.gpulock import DEAD_AFTER_S, remote_argv

    text = script("gpulock")
    # split in the text (a waiting shell's command line), whole in the holder's argv
    assert HELD_MARK not in text and f'"{HELD_MARK[:8]}""{HELD_MARK[8:]}:' in text
    assert f'"{HELD_MARK[:-1]}[{HELD_MARK[-1]}]:$i:"' in text
    assert remote_argv(7.9)[3:] == ["dltasks-gpulock", "7", str(DEAD_AFTER_S), LOCK_NAME,
                                    *LOCK_DIRS]


def test_the_describe_script_reads_what_its_readers_name() -> None:
    from dltasks.engine.endpoint import _ENV_NAMES, DEFAULT_SOCKET
    from dltasks.hosts.remote.synced import LOCAL_FS

    text = script("host_describe")
    assert f"for v in {' '.join(_ENV_NAMES[:5])} \\\n      {' '.join(_ENV_NAMES[5:])}; do" in text
    assert f" {DEFAULT_SOCKET} " in text
    assert "    " + "|".join(f"'{t}'" for t in LOCAL_FS) + ")\n" in text


def test_the_run_files_script_takes_each_root_with_its_count(tmp_path: Path) -> None:
    from dltasks.hosts.remote.fetch import _list_argv

    (tmp_path / "a" / "skip").mkdir(parents=True)
    for rel in ("a/f", "a/skip/g", "b"):
        (tmp_path / rel).write_text("x")
    argv = _list_argv([(str(tmp_path / "a"), ["skip"]), (str(tmp_path / "none"), ["x", "y"]),
                       (str(tmp_path), ["a"])], 0, None)
    out = subprocess.run(argv, capture_output=True, check=True).stdout
    assert out.split(b"\0") == [b"@@0", b"./f", b"@@1", b"@@2", b"./b", b""]
