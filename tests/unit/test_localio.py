"""output.log's masking (a secret cut anywhere between two reads never reaches the file) and
a sink that fails (one warning, then silence): real files, no fakes."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from dltasks.localio import MaskedLog, Sink

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


def test_no_secrets_writes_at_once(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    log = MaskedLog(path, [])
    log.write(b"\xff\xfe binary \x00")
    assert path.read_bytes() == b"\xff\xfe binary \x00"   # nothing held back
    log.close()


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
