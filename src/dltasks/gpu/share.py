"""GPUs on a shared host: a run takes its GPUs under the host's GPU lock, or waits for them.

:func:`claimed` is what ``launch`` wraps the container's creation in: it takes the lock
(:mod:`dltasks.gpu.lock`), reads the claims of every running dltasks container and the
driver's account, turns the selection into the GPUs the run gets (:mod:`dltasks.gpu.claims`),
and keeps the lock until the container has started (``Claimed.release``), so the next run
sees it. With ``wait`` it waits, the lock let go, until the GPUs are free, with a live status
line: the lock is taken only for each look, so other runs take free GPUs meanwhile. Each
taking of the lock is bounded by DLT_LOCK_TIMEOUT (:mod:`dltasks.gpu.lock`); with ``--wait``
also by the time left, and a lock still held is one more reason to keep waiting: only when
``--wait`` runs out does the start end, in one line naming what it waited for (the GPUs'
holders, or the lock's). A run without GPUs takes no lock.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from dltasks.engine.spec import CLAIM_LABELS, LABEL_RUN
from dltasks.errors import DltError
from dltasks.gpu import modes as gpumode
from dltasks.gpu.claims import (
    Choice,
    Claim,
    GpusTaken,
    GpuStatus,
    choose_gpus,
    claims_from,
    parse_status,
)
from dltasks.gpu.lock import LockBusy, gpu_lock
from dltasks.gpu.modes import GpuAccess, GpuFacts
from dltasks.gpu.selection import ALL, FREE, NONE, GpuSelection
from dltasks.hosts.target import Target

#: Seconds between looks while waiting for GPUs.
POLL_S = 1.0


@dataclass
class Claimed:
    """The GPUs a run got; :meth:`release` lets go of the host's GPU lock (once started)."""

    access: GpuAccess
    choice: Choice
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def release(self) -> None:
        self._stack.close()


def claims_on(target: Target, *, tolerant: bool = False) -> list[Claim]:
    """The GPU claims of the dltasks containers running on ``target``'s engine."""
    try:
        rows = target.engine.containers(all=True, filters={"label": [LABEL_RUN]})
    except DltError:
        if tolerant:
            return []
        raise
    return claims_from(rows, labels=CLAIM_LABELS)


def status_on(target: Target) -> GpuStatus:
    """The driver's account of ``target``'s GPUs, asked now (one round trip)."""
    from dltasks.gpu.claims import status_script
    from dltasks.hosts.shell import quote

    script = status_script(target.settings.nvidia_smi)
    return parse_status(target.shell.run(quote(["sh", "-c", script])).stdout)


def _choose(target: Target, facts: GpuFacts, sel: GpuSelection, *, share: bool,
            tolerant: bool = False) -> tuple[GpuAccess, Choice]:
    s = target.settings
    first = gpumode.decide_with(facts, s.gpu_mode, GpuSelection(ALL) if sel.mode == FREE
                                else sel, target.name)
    nothing = first.mode == gpumode.RUNTIME and not facts.has_runtime and not (
        facts.host and facts.host.status.gpus)
    if sel.mode == FREE and nothing:
        raise DltError(f"--gpu {sel.describe()}: {target.name} has no GPUs to give ({first.why}"
                       "): run `inv setup` there, or use --gpu none")
    if first.mode == NONE:
        if sel.mode == FREE:
            raise DltError(f"--gpu {sel.describe()}: {target.name} has no GPUs to give "
                           f"({first.why})")
        return first, Choice(first.selection)
    host = facts.host
    status = host.status if host else GpuStatus()
    indices = tuple(host.driver.gpus) if host else ()
    choice = choose_gpus(sel if sel.mode == FREE else first.selection, status,
                    claims_on(target, tolerant=tolerant), free_mib=s.gpu_free_mib,
                    where=target.name, share=share, indices=indices, asked=sel.describe())
    if choice.selection == first.selection:
        return first, choice
    return gpumode.decide_with(facts, s.gpu_mode, choice.selection, target.name), choice


def preview(target: Target, facts: GpuFacts, sel: GpuSelection, *, share: bool) -> GpuAccess:
    """What the run would get now, without the lock (--dry-run); an engine that does not
    answer counts as one with no runs."""
    return _choose(target, facts, sel, share=share, tolerant=True)[0]


@contextlib.contextmanager
def claimed(target: Target, facts: GpuFacts, sel: GpuSelection, *, share: bool = False,
            wait: float | None = None) -> Iterator[Claimed]:
    """The GPUs for ``sel`` on ``target``, under its GPU lock until ``release()`` (or the end).

    ``wait``: seconds to wait for taken GPUs (``inf`` for ever, None: refuse at once)."""
    if sel.mode == NONE:
        access = gpumode.decide_with(facts, target.settings.gpu_mode, sel, target.name)
        yield Claimed(access, Choice(sel))
        return
    line = _StatusLine(target.name, sel)
    started = time.monotonic()
    while True:
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(_lock(target, line, started, wait))
            access, choice = _choose(target, facts, sel, share=share)
        except (GpusTaken, LockBusy) as e:
            stack.close()
            waited = time.monotonic() - started
            if wait is None:
                raise
            if waited >= wait:
                line.done()
                raise _gave_up(e, waited) from None
            line.show(waited, e.short if isinstance(e, GpusTaken) else
                      f"the GPU lock there is held by {e.who}")
            time.sleep(min(POLL_S, wait - waited))
            if facts.host is not None:  # the driver's account, as it is now
                facts = _with_status(facts, status_on(target))
            continue
        except BaseException:
            stack.close()
            raise
        line.done(got=choice.selection.describe() if time.monotonic() - started > POLL_S
                  else "")
        for note in choice.shared:
            print(f"dlt: --share: {note}", file=sys.stderr)
        got = Claimed(access, choice, stack)
        try:
            yield got
        finally:
            got.release()
        return


def _lock(target: Target, line: _StatusLine, started: float,
          wait: float | None) -> contextlib.AbstractContextManager[str]:
    """The GPU lock, for one look: bounded by DLT_LOCK_TIMEOUT and, with ``wait``, by the
    time it leaves, a holder then shown on the status line (not a line of its own)."""
    if wait is None:
        return gpu_lock(target)
    left = max(0.0, wait - (time.monotonic() - started))
    return gpu_lock(target, min(float(max(0, target.settings.lock_timeout)), left),
                    waiting=lambda: line.show(time.monotonic() - started,
                                              "the GPU lock there is held by another start"))


def _gave_up(e: DltError, waited: float) -> DltError:
    """The one line when ``--wait`` ran out, naming what it waited for last."""
    if isinstance(e, LockBusy):
        return DltError(f"gave up after waiting {waited:.0f}s: the GPU lock {e.path} on "
                        f"{e.where} is held by {e.who}: another GPU run is starting there (or "
                        "its holder is stuck); retry later, ask its owner, or wait longer "
                        "(--wait)", code=e.code)
    return DltError(f"gave up after waiting {waited:.0f}s: {e.message}", code=e.code)


def _with_status(facts: GpuFacts, status: GpuStatus) -> GpuFacts:
    from dataclasses import replace

    if facts.host is None:
        return facts
    return replace(facts, host=replace(facts.host, status=status))


class _StatusLine:
    """One line saying what we wait for; rewritten in place on a terminal, else printed when
    it changes."""

    def __init__(self, where: str, sel: GpuSelection) -> None:
        self.where, self.sel = where, sel
        self.tty = sys.stderr.isatty()
        self.last = ""
        self.shown = False

    def show(self, waited: float, why: str) -> None:
        text = f"dlt: waiting for --gpu {self.sel.describe()} on {self.where}: {why}"
        if self.tty:
            sys.stderr.write(f"\r\x1b[K{text} ({waited:.0f}s)")
            sys.stderr.flush()
        elif text != self.last:
            print(text, file=sys.stderr)
        self.last, self.shown = text, True

    def done(self, got: str = "") -> None:
        if self.shown and self.tty:
            sys.stderr.write("\n")
        if self.shown and got:
            print(f"dlt: got GPU {got} on {self.where}", file=sys.stderr)


def parse_wait(value: object) -> float | None:
    """``--wait`` (for ever), ``--wait 300``, ``--wait 5m``/``2h``; None when not given."""
    if value in (None, False, ""):
        return None
    if value is True:
        return float("inf")
    text = str(value).strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(text[-1:], 0)
    number = text[:-1] if scale else text
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        raise DltError(f"--wait {value}: give seconds (300) or a duration (5m, 2h), or "
                       "--wait alone to wait as long as it takes") from None
    if seconds < 0:
        raise DltError(f"--wait {value}: a duration cannot be negative")
    return seconds
