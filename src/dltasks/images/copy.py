"""An image copied from one host's engine to another's, through this machine, no registry.

``docker save | docker load`` over the SSH connections the job already holds: the source
engine's ``GET /images/{name}/get`` tar stream is fed, chunk by chunk, to the destination's
``POST /images/load``, with a progress line. The copy keeps the image ID, which is how a job
proves every node runs the same image.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from dltasks.errors import DltError
from dltasks.hosts.target import Target
from dltasks.runs.output import warn

_SAY_EVERY_S = 1.0


def copy_image(src: Target, dst: Target, image: str) -> None:
    """Copy ``image`` from ``src``'s engine to ``dst``'s (raises a one-line DltError)."""
    import docker.errors

    t0 = time.monotonic()
    sent = [0, t0]
    tty = sys.stderr.isatty()

    def chunks() -> Iterator[bytes]:
        for chunk in src.docker.api.get_image(image, chunk_size=1 << 20):
            sent[0] += len(chunk)
            now = time.monotonic()
            if now - sent[1] >= _SAY_EVERY_S:
                sent[1] = now
                text = (f"dlt: copying {image} {src.name} -> {dst.name}: "
                        f"{sent[0] / 2**20:.0f} MiB")
                with contextlib.suppress(OSError):  # a progress line is no reason to stop
                    sys.stderr.write(f"\r\x1b[K{text}" if tty else text + "\n")
                    sys.stderr.flush()
            yield chunk

    warn(f"dlt: {image} is not on {dst.name}: copying it from {src.name} (docker save | "
         "docker load over SSH)")
    try:
        for _ in dst.docker.api.load_image(chunks(), quiet=True):
            pass
    except docker.errors.APIError as e:
        raise DltError(f"copying {image} from {src.name} to {dst.name} failed: "
                       f"{e.explanation or e}") from None
    took = time.monotonic() - t0
    warn(("\n" if tty else "") +
         f"dlt: copied {image} to {dst.name}: {sent[0] / 2**20:.0f} MiB in {took:.1f} s")
