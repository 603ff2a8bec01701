"""Work started now and collected later: a daemon thread per call, its result in a Future.

For waits that would otherwise sit in a row (a git call, an engine's first answer through
SSH) while the main thread goes on with its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


def in_background(fn: Callable[..., T], *args: object) -> Future[T]:
    """Start ``fn(*args)`` in a daemon thread; ``.result()`` gives its value or raises its
    exception."""
    future: Future[T] = Future()

    def work() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as e:  # noqa: BLE001 - handed to whoever asks for the result
            future.set_exception(e)

    threading.Thread(target=work, daemon=True, name=f"dlt-{getattr(fn, '__name__', 'bg')}").start()
    return future
