"""Build output: live "step N/M" with the running step's last lines on a terminal, plain lines
otherwise, and ONE error line naming the failing step when a build fails.

:class:`BuildView` eats the decoded JSON chunks of the engine's build stream (docker-py's
``APIClient.build(decode=True)``) and knows nothing about docker-py, so it is tested with plain
lists of dicts. :class:`Steps` prints the long steps of ``base-image`` with their durations.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

from dltasks.errors import DltError

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_BUILT = re.compile(r"^Successfully built ([0-9a-f]{12,64})$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_BOOKKEEPING = (" ---> ", "Removing intermediate container", "Successfully built ",
                "Successfully tagged ")


def _clip(text: str, width: int) -> str:
    text = _ANSI.sub("", text).replace("\t", "    ").rstrip()
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


class BuildView:
    """Renders one build's stream; :meth:`close` returns the image ID or raises DltError."""

    def __init__(self, out: TextIO | None = None, *, live: bool | None = None, tail: int = 6,
                 title: str = "build", min_redraw: float = 0.1) -> None:
        self.out = out if out is not None else sys.stdout
        self.live = self.out.isatty() if live is None else live
        self.title = title
        self.step = 0
        self.steps = 0
        self.instruction = ""
        self.lines: deque[str] = deque(maxlen=max(tail, 1))
        self.image_id = ""
        self.error = ""
        self._partial = ""
        self._drawn = 0
        self._last_draw = 0.0
        self._min_redraw = min_redraw
        self._status = ""

    # -- input -----------------------------------------------------------------------------

    def feed(self, chunk: Mapping[str, Any]) -> None:
        """One decoded chunk of the build stream."""
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            self.error = str(chunk.get("error") or detail.get("message") or "build failed")
            return
        aux = chunk.get("aux")
        if isinstance(aux, Mapping) and aux.get("ID"):
            self.image_id = str(aux["ID"])
        if "stream" in chunk:
            self._text(str(chunk["stream"]))
        elif "status" in chunk:  # pulling the FROM image: show the status, not the bars
            status = " ".join(str(chunk.get(k, "")) for k in ("id", "status")).strip()
            if status != self._status:
                self._status = status
                self._line(status)

    def feed_all(self, chunks: Iterable[Mapping[str, Any]]) -> str:
        """Feed a whole stream, then :meth:`close`."""
        for chunk in chunks:
            self.feed(chunk)
        return self.close()

    def _text(self, text: str) -> None:
        text = self._partial + text.replace("\r\n", "\n").replace("\r", "\n")
        *complete, self._partial = text.split("\n")
        for line in complete:
            self._line(line)

    def _line(self, line: str) -> None:
        line = _ANSI.sub("", line)  # the legacy builder colours a step's stderr red
        m = _STEP.match(line)
        if m:
            self.step, self.steps, self.instruction = int(m[1]), int(m[2]), m[3].strip()
            self.lines.clear()
            self._print_header()
            return
        built = _BUILT.match(line.strip())
        if built and not self.image_id:
            self.image_id = built[1]
        if not line.strip() or line.startswith(_BOOKKEEPING):
            # The legacy builder's bookkeeping: layer IDs and cleanup, not the step's output.
            if not self.live and line.strip():
                self._write(line + "\n")
            return
        self.lines.append(line)
        if self.live:
            self._redraw()
        else:
            self._write(line + "\n")

    # -- output ----------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def _width(self) -> int:
        return max(shutil.get_terminal_size((100, 20)).columns - 1, 20)

    def _clear(self) -> None:
        if self._drawn:
            self._write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _print_header(self) -> None:
        header = f"{self.title}: step {self.step}/{self.steps}  {self.instruction}"
        if self.live:
            self._clear()
            self._write(_clip(header, self._width()) + "\n")
        else:
            self._write(header + "\n")

    def _redraw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < self._min_redraw:
            return
        self._last_draw = now
        self._clear()
        width = self._width()
        block = ["  │ " + _clip(line, width - 4) for line in self.lines]
        if block:
            self._write("\x1b[2m" + "\n".join(block) + "\x1b[0m\n")
        self._drawn = len(block)

    def close(self) -> str:
        """End the view: the built image's ID, or one DltError naming the failing step."""
        if self._partial:
            self._line(self._partial)
            self._partial = ""
        if self.live:
            self._clear()
        if self.error:
            raise DltError(self.failure())
        if not self.image_id:
            raise DltError(f"{self.title}: the engine ended the build without an image; "
                           "rerun it, or look at the engine's log (journalctl -u docker)")
        return self.image_id

    def failure(self) -> str:
        """The one-line message for a failed build: step, instruction, error, last lines."""
        error = " ".join(self.error.split())
        where = (f"step {self.step}/{self.steps} `{_clip(self.instruction, 120)}`"
                 if self.step else "before the first step")
        tail = [_clip(line, 160).strip() for line in self.lines if line.strip()]
        tail = [t for t in tail if t and t not in error][-4:]
        last = f"; last output: {' | '.join(tail)}" if tail else ""
        return f"{self.title} failed at {where}: {error}{last}"


class Steps:
    """Numbered long-running steps with their durations, e.g. ``[2/4] debootstrap … done 41s``.

    On a terminal the running step's line ticks its elapsed seconds; otherwise each step is
    two plain lines (start, done).
    """

    def __init__(self, total: int, out: TextIO | None = None, *, title: str = "",
                 live: bool | None = None) -> None:
        self.total = total
        self.n = 0
        self.out = out if out is not None else sys.stdout
        self.live = self.out.isatty() if live is None else live
        self.title = title

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        import threading

        self.n += 1
        head = f"{self.title}: " if self.title else ""
        head += f"[{self.n}/{self.total}] {what}"
        start = time.monotonic()
        stop = threading.Event()
        ticker = None
        if self.live:
            def tick() -> None:
                while not stop.wait(1.0):
                    self.out.write(f"\r\x1b[K{head} ... {time.monotonic() - start:.0f}s")
                    self.out.flush()

            self.out.write(f"{head} ...")
            ticker = threading.Thread(target=tick, daemon=True)
            ticker.start()
        else:
            self.out.write(f"{head} ...\n")
        self.out.flush()
        ended = "failed after"
        try:
            yield
            ended = "done in"
        finally:
            stop.set()
            if ticker is not None:
                ticker.join()
                self.out.write("\r\x1b[K")
            took = f"{ended} {time.monotonic() - start:.0f}s"
            self.out.write(f"{head} {took}\n" if self.live else
                           f"{head.split('] ')[0]}] {took}\n")
            self.out.flush()
