"""Signal handlers for the length of a block: the one way dltasks takes a signal and gives it
back (attached runs, `exec`, commands attached to our stdio, terminal resizes)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any


@contextlib.contextmanager
def handling(signals: Sequence[int], handler: Callable[[int, Any], Any], *,
             keep_ignored: bool = True) -> Iterator[list[int]]:
    """``handler`` for each of ``signals`` in the block, their own handlers back after it;
    yields the signals taken. One that is ignored stays ignored (``nohup``), unless not
    ``keep_ignored``; outside the main thread nothing is taken (Python allows it only there)."""
    old: dict[int, Any] = {}
    for sig in signals:
        if keep_ignored and signal.getsignal(sig) == signal.SIG_IGN:
            continue
        with contextlib.suppress(ValueError):  # not the main thread
            old[sig] = signal.signal(sig, handler)
    try:
        yield list(old)
    finally:
        for sig, was in old.items():
            signal.signal(sig, was)
