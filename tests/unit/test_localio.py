"""output.log's masking (a secret cut anywhere between two reads never reaches the file) and
a sink that fails (one warning, then silence): real files, no fakes."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from dltasks.runs.output import MaskedLog, Sink

SECRET = "hf_Zq8sEcReTvAlUe41"
TEXT = f"a {SECRET} b\n{SECRET}{SECRET}\nlast é {SECRET}".encode()


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(SECRET) - 1, len(SECRET), 64])
def test_a_secret_cut_between_writes_is_masked(tmp_path: Path, size: int) -> None:
    path = tmp_path / "output.log"
    log = MaskedLog(path, [SECRET, "short-one"])
    for i in range(0, len(TEXT), size):
        log.write(TEXT[i:i + size])
    log.close()
    assert path.read_bytes() == "a **** b\n********\nlast é ****".encode()


def test_no_secrets_writes_whole_lines_at_once(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    log = MaskedLog(path, [])
    log.write(b"\xff\xfe binary \x00\nhalf")
    assert path.read_bytes() == b"\xff\xfe binary \x00\n"   # the unfinished line waits
    log.write(b" a line\n")
    assert path.read_bytes() == b"\xff\xfe binary \x00\nhalf a line\n"
    log.write(b"x" * 5000)                                  # too long to wait for its end
    assert path.stat().st_size == 24 + 5000
    log.write(b"tail")
    log.close()
    assert path.read_bytes().endswith(b"x" * 5000 + b"tail")


def test_a_failing_sink_warns_once_and_is_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[bytes] = []

    def full(data: bytes) -> None:
        calls.append(data)
        raise OSError(errno.ENOSPC, "No space left on device")

    other = Sink("stdout", calls.append)
    sink = Sink("runs/x/output.log", full)
    sink.others, sink.run_id = [other], "x"
    sink.write(b"one")
    sink.write(b"two")
    assert calls == [b"one"] and not sink.alive
    assert capsys.readouterr().err == ("dlt: warning: cannot write runs/x/output.log: No space "
                                       "left on device; the run goes on, its output still goes "
                                       "to stdout\n")


def test_output_log_masks_url_passwords_split_across_reads(tmp_path: Path) -> None:
    from dltasks.runs.output import MaskedLog

    log = MaskedLog(tmp_path / "output.log", [])
    line = b"connecting to postgres://user:hunter2-pw@db:5432/x\nnext line\n"
    for cut in range(1, len(line)):
        log.write(line[:cut])
        log.write(line[cut:])
    log.close()
    text = (tmp_path / "output.log").read_text()
    assert "hunter2-pw" not in text
    assert text.count("postgres://user:****@db:5432/x\n") == len(line) - 1
