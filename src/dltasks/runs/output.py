"""Local I/O that never stops a run: our stdout/stderr, ``output.log`` and the run's record.

A run lives on an engine (maybe on another host); what we write here is a copy. So a local
write that fails (a full disk under ``runs/``, ``dlt train | head`` closing our stdout, a
terminal gone) must not end the run: the sink that failed is dropped with one warning line,
streaming goes on (the container is never left blocked on a full pipe), and the record still
gets its end. Ctrl-C and signals are not I/O: they keep their graceful stop (runner.container).

Secrets: ``output.log`` is a file dltasks writes, so every secret value is scrubbed from it
(:class:`MaskedLog`); our terminal is not (see :class:`Outputs`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from dltasks.runs.record import RunRecord, record_file
from dltasks.settings.masking import scrub

#: Room kept beside a run's record from its start, so that its end still fits on a disk that
#: output.log has filled: the record's size plus this much (a few blocks of any file system).
_RESERVE_EXTRA = 16 << 10
RESERVE = ".manifest.reserve"


def shown(path: Path) -> str:
    """``path`` as the user knows it: relative to the current folder when under it."""
    with contextlib.suppress(ValueError, OSError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def warn(text: str) -> None:
    """One line on our stderr; if stderr itself cannot be written, nothing (never raises)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except OSError:
        _to_devnull(sys.stderr)
    except ValueError:  # stderr closed
        pass


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def _to_devnull(stream: IO[Any]) -> None:
    """Point ``stream``'s descriptor at /dev/null: what is still buffered there, later prints
    and the interpreter's flush at exit then go nowhere instead of raising (a closed pipe
    would otherwise end the process with "Exception ignored" and exit code 120)."""
    with contextlib.suppress(OSError, ValueError):
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)


class Sink:
    """One place a run's output is copied to. The first write that fails drops it (one
    warning line saying where the output still goes); later writes are skipped."""

    def __init__(self, name: str, write: Callable[[bytes], Any],
                 lost: Callable[[], None] | None = None) -> None:
        self.name, self._write, self._lost = name, write, lost
        self.alive = True
        self.others: Sequence[Sink] = ()  # where the output still goes when this one is lost
        self.run_id = ""

    def write(self, data: bytes) -> None:
        if not self.alive:
            return
        try:
            self._write(data)
        except OSError as e:
            self.alive = False
            if self._lost:
                self._lost()
            still = [s.name for s in self.others if s.alive and s is not self]
            rest = (f"its output still goes to {' and '.join(still)}" if still else
                    "its output is kept nowhere here" + (
                        f" (`dlt logs {self.run_id}` shows it while it runs)"
                        if self.run_id else ""))
            warn(f"dlt: warning: cannot write {self.name}: {_reason(e)}; the run goes on, "
                 f"{rest}")


def std_sink(which: str) -> Sink:
    """Our stdout or stderr (``which``) as a sink; losing it points it at /dev/null."""
    stream = sys.stdout if which == "stdout" else sys.stderr

    def write(data: bytes) -> None:
        stream.buffer.write(data)
        stream.buffer.flush()

    return Sink(which, write, lambda: _to_devnull(stream))


#: How much of an unfinished line output.log holds back for masking (a progress bar's ``\r``
#: updates, longer than this, are written as they come).
LINE_HOLD = 4096


class MaskedLog:
    """``output.log``, written unbuffered with every secret value and every URL's password
    scrubbed. A value split between two reads is caught: the last (longest secret - 1) bytes,
    and an unfinished line of up to :data:`LINE_HOLD` bytes (a URL is masked whole), wait
    for the next read (or the close) before they are written."""

    def __init__(self, path: Path, secrets: Sequence[str]) -> None:
        self.path = path
        self.secrets = [s for s in secrets if s]
        self._hold = max((len(s.encode()) for s in self.secrets), default=1) - 1
        self._pending = b""
        self._file: IO[bytes] | None = open(path, "ab", buffering=0)  # noqa: SIM115

    def write(self, data: bytes) -> None:
        data = self._scrubbed(self._pending + data)
        cut = max(0, len(data) - self._hold)
        line_start = data.rfind(b"\n") + 1
        if len(data) - line_start <= LINE_HOLD:
            cut = min(cut, line_start)
        self._pending = data[cut:]
        self._raw(data[:cut])

    def _scrubbed(self, data: bytes) -> bytes:
        # surrogateescape: any bytes (a UTF-8 sequence cut in two, binary output) round-trip
        return scrub(data.decode("utf-8", "surrogateescape"), self.secrets).encode(
            "utf-8", "surrogateescape")

    def _raw(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self._file is not None:
            n = self._file.write(view)  # a full disk may take part, then raise
            view = view[n or 0:]

    def close(self, *, flush: bool = True) -> None:
        """Write what was held back (unless ``flush`` is off: the file failed already), and
        close; a failure here is the caller's to report."""
        if self._file is None:
            return
        try:
            if flush:
                self._raw(self._pending)
        finally:
            self._pending = b""
            f, self._file = self._file, None
            f.close()


def open_log(path: Path, secrets: Sequence[str]) -> tuple[Sink | None, MaskedLog | None]:
    """``output.log`` as a sink (and its file, to close), or (None, None) with a warning when
    it cannot even be opened."""
    try:
        log = MaskedLog(path, secrets)
    except OSError as e:
        warn(f"dlt: warning: cannot write {shown(path)}: {_reason(e)}; the run goes on without "
             "it")
        return None, None
    return Sink(shown(path), log.write), log


def close_log(sink: Sink | None, log: MaskedLog | None) -> None:
    """Close the log; what it held back is written unless the sink was lost already."""
    if log is None or sink is None:
        return
    try:
        log.close(flush=sink.alive)
    except OSError as e:
        if sink.alive:
            sink.alive = False
            warn(f"dlt: warning: cannot write {sink.name}: {_reason(e)}; its last output is "
                 "missing there")


class Outputs:
    """Where an attached run's output goes: stream 1 to our stdout, stream 2 to our stderr,
    both to ``output.log`` (masked). Our terminal gets the run's own output unmasked: it is
    the user's terminal showing what the user's code printed, as `docker run` would; only
    the file, which outlives the moment and may be read by others, is scrubbed."""

    def __init__(self, log: Sink | None = None, run_id: str = "") -> None:
        self.out, self.err, self.log = std_sink("stdout"), std_sink("stderr"), log
        # what a lost sink's warning names as still holding the output
        self.out.others = self.err.others = [log] if log is not None else []
        if log is not None:
            log.others = [self.out]
        for s in (self.out, self.err, log):
            if s is not None:
                s.run_id = run_id

    def write(self, stream_id: int, data: bytes) -> None:
        (self.err if stream_id == 2 else self.out).write(data)
        if self.log is not None:
            self.log.write(data)


def reserve(folder: Path) -> Path | None:
    """Keep room beside the record of run folder ``folder`` for its last write, in case
    output.log fills the disk while the run goes on. Written, not a hole: a sparse file keeps
    no room."""
    path = folder / RESERVE
    try:
        size = record_file(folder).stat().st_size + _RESERVE_EXTRA
        with open(path, "wb") as f:
            f.write(bytes(size))
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink()
        return None  # no room even now: the end is tried all the same
    return path


def save_record(folder: Path, record: RunRecord, secrets: Sequence[str], *,
                room: Path | None = None, what: str = "this update") -> bool:
    """Rewrite the record of run folder ``folder``; once the run has started a failure is
    one warning, never the run's end. ``room`` (:func:`reserve`) is let go first, so the
    write has its space."""
    if room is not None:
        with contextlib.suppress(OSError):
            room.unlink()
    path = record_file(folder)
    try:
        record.save(folder, list(secrets))
        return True
    except OSError as e:
        with contextlib.suppress(OSError):
            path.with_suffix(".tmp").unlink()
        warn(f"dlt: warning: cannot write {shown(path)}: {_reason(e)}; the record misses "
             f"{what}")
        return False
