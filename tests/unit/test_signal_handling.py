"""`dltasks.signals.handling`: a handler for a block, the old one back after it, an ignored
signal left ignored unless asked (real signals sent to this process)."""

from __future__ import annotations

import os
import signal

from dltasks.signals import handling


def test_a_handler_for_the_block_and_the_old_one_back_after() -> None:
    got: list[int] = []
    before = signal.getsignal(signal.SIGUSR1)
    with handling((signal.SIGUSR1,), lambda s, _: got.append(s)) as taken:
        assert taken == [signal.SIGUSR1]
        os.kill(os.getpid(), signal.SIGUSR1)
    assert got == [signal.SIGUSR1]
    assert signal.getsignal(signal.SIGUSR1) == before


def test_an_ignored_signal_stays_ignored_unless_asked() -> None:
    old = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        with handling((signal.SIGUSR2,), lambda *_: None) as taken:
            assert taken == [] and signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN
        got: list[int] = []
        with handling((signal.SIGUSR2,), lambda s, _: got.append(s),
                      keep_ignored=False) as taken:
            assert taken == [signal.SIGUSR2]
            os.kill(os.getpid(), signal.SIGUSR2)
        assert got == [signal.SIGUSR2]
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR2, old)
