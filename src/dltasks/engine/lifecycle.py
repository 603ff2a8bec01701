"""The engine layer for runs: create, start, stream, wait, and ALWAYS clean up.

We create and start containers ourselves (docker-py's ``containers.run`` leaves a ``created``
container behind when start fails). Attached runs are removed when they end, however they end:
normal exit, failure to start, Ctrl-C (stop with a grace period, then kill) or an error.
Detached runs stay until ``stop``; ``ps``/``logs``/``stop`` find them by label, so we keep no
state store of our own.
"""

from __future__ import annotations

import contextlib
import re
import signal
import struct
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dltasks.engine.api import Engine, EngineError, NotFound, Stream
from dltasks.engine.spec import LABEL_KIND, LABEL_RUN, RunSpec, create_config
from dltasks.errors import DltError
from dltasks.hosts.target import Target
from dltasks.runs.output import Outputs, close_log, open_log, warn
from dltasks.signals import handling

INTERRUPTED = 130


class _Terminated(Exception):
    """SIGTERM/SIGHUP while attached: handled like Ctrl-C."""


#: What ends an attached run from this side: Ctrl-C, SIGTERM, SIGHUP.
INTERRUPTS: tuple[type[BaseException], ...] = (KeyboardInterrupt, _Terminated)


class StartRefused(DltError):
    """The engine would not create or start the container; ``engine_text`` is its reason."""

    def __init__(self, message: str, engine_text: str) -> None:
        super().__init__(message)
        self.engine_text = engine_text


class Interrupted(DltError):
    """Ctrl-C, SIGTERM or SIGHUP before the container had started: nothing was left behind."""

    def __init__(self) -> None:
        super().__init__("interrupted before the run started; its container was removed",
                         code=INTERRUPTED)


def explain_start_error(target: Target, err: Exception, spec: RunSpec) -> StartRefused:
    """The engine's reason a container could not be created/started, as one line with the fix."""
    text = getattr(err, "explanation", None) or str(err)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return StartRefused(_start_message(target.name, text, spec), text)


def _start_message(host: str, text: str, spec: RunSpec) -> str:
    where = f"the engine on {host}"
    if "could not select device driver" in text:
        other = ", or run with --gpu none" if spec.labels.get(LABEL_KIND) != "test-gpu" else ""
        return (f"{where} has no NVIDIA runtime, so it cannot give GPUs "
                f"({spec.gpus.describe()}) to containers: run `inv install-nvidia-docker` "
                f"(or `inv setup`){other}")
    if "Failed to initialize NVML" in text or "nvml error" in text.lower():
        return (f"{where} could not talk to the NVIDIA driver ({text.strip()[:120]}): restart "
                "the engine (`sudo systemctl restart docker`) or run `inv doctor`")
    if "bind source path does not exist" in text:
        path = text.rsplit(":", 1)[-1].strip()
        return (f"mount source {path} does not exist on {host}: create it, or fix "
                "DLT_DATA_DIR / DLT_OUTPUT_DIR / DLT_MOUNTS")
    if "No such image" in text or "not found" in text and "image" in text.lower():
        return (f"image {spec.image} is not on {host}: run `inv extend-image` (or set "
                "DLT_IMAGE to an image the engine has)")
    if "port is already allocated" in text or "address already in use" in text:
        m = re.search(r"(\d{1,3}(?:\.\d{1,3}){3}):(\d+)", text)
        which = f"port {m.group(2)} on {host}'s {m.group(1)}" if m else f"a port on {host}"
        return (f"{which} is taken (--port HOST:CONTAINER): omit HOST (a free one is picked) "
                "or pick another")
    if "authorization" in text.lower():
        return (f"{where} refused the container: {text.strip()[:200]} (an authorization plugin "
                "said no: ask the engine's administrator)")
    return f"{where} could not start the container: {text.strip().splitlines()[0]}"


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """Deliver SIGTERM and SIGHUP as an exception in the main thread while a run is attached.
    One that is ignored (``nohup``: SIGHUP) stays ignored: the run goes on."""

    def raise_(signum: int, frame: Any) -> None:
        raise _Terminated(signum)

    with handling((signal.SIGTERM, signal.SIGHUP), raise_):
        yield


def create(target: Target, spec: RunSpec) -> str:
    """Create the container (not started); a failure leaves nothing behind."""
    try:
        return target.engine.create_container(create_config(spec), name=spec.name)
    except EngineError as e:
        raise explain_start_error(target, e, spec) from None


def start(target: Target, cid: str, spec: RunSpec) -> None:
    """Start a created container; when the engine refuses, remove it and explain."""
    try:
        target.engine.start(cid)
    except EngineError as e:
        remove(target, cid)
        raise explain_start_error(target, e, spec) from None


def remove(target: Target, cid: str) -> None:
    """Remove the container; gone already, or being removed by someone else, is fine."""
    try:
        target.engine.remove_container(cid, force=True)
    except NotFound:
        pass
    except EngineError as e:
        if not (e.status == 409 and "already in progress" in e.explanation):
            raise


def stop(target: Target, cid: str, timeout: int) -> None:
    """Stop with a grace period (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
    with contextlib.suppress(EngineError):
        target.engine.stop(cid, timeout=timeout)


#: One read of the engine's stream; many short frames (a line each) arrive together.
_READ_SIZE = 1 << 18
#: After a short read, wait this long before the next: a burst of short lines then costs one
#: read and one write instead of one per line (which, CPU-bound, is slower than the docker CLI),
#: and the first line of a burst is still shown at once.
_SHORT_READ, _SETTLE_S = 16 << 10, 0.002
_HEADER = struct.Struct(">BxxxL")  # stream id (1 stdout, 2 stderr), 3 pad bytes, payload length


def _copy(frames: Iterator[tuple[int, bytes]], outputs: Outputs) -> None:
    """Write each (stream id, bytes) to our stdout or stderr as it comes, and tee it to the
    log. A sink that fails is dropped (localio); the frames are read to the end all the
    same, so the container never blocks on output nobody reads."""
    for stream_id, data in frames:
        outputs.write(stream_id, data)


def _frames(read: Callable[[int], bytes]) -> Iterator[tuple[int, bytes]]:
    """Demultiplex the attach endpoint's framed stream (8-byte header, then the payload).

    ``read(n)`` returns what is available (up to n bytes, b"" at the end). Consecutive frames
    of one stream that arrive in one read are joined: a program printing short lines sends a
    frame per line, and a write per frame would make us slower than the docker CLI. Order
    between stdout and stderr is kept.
    """
    buf = bytearray()
    need = _HEADER.size  # bytes buf must hold before the next complete frame can be cut
    while True:
        try:
            chunk = read(_READ_SIZE)
        except ConnectionError:  # the engine (or the SSH link to it) went away: stream over
            return
        if not chunk:
            return
        buf += chunk
        if len(buf) < need:
            continue
        pos, end, cur = 0, len(buf), 0
        parts: list[bytearray] = []
        while end - pos >= _HEADER.size:
            stream_id, length = _HEADER.unpack_from(buf, pos)
            stop = pos + _HEADER.size + length
            if stop > end:
                break
            if stream_id != cur and parts:
                yield cur, b"".join(parts)
                parts = []
            cur = stream_id
            if length:
                parts.append(buf[pos + _HEADER.size:stop])
            pos = stop
        if parts:
            yield cur, b"".join(parts)
        del buf[:pos]
        need = (_HEADER.size + _HEADER.unpack_from(buf)[1] if len(buf) >= _HEADER.size
                else _HEADER.size)


class _Settling:
    """Reads of a stream that let a burst of short lines gather into one read."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream  # held here: the stream owns the socket
        self._short = False

    def read(self, n: int) -> bytes:
        if self._short:  # output trickles in as short lines: let some gather, then take them
            time.sleep(_SETTLE_S)  # in one read (and one write), not one per line
        data = self.stream.read1(n)
        self._short = 0 < len(data) < _SHORT_READ
        return data


def stream(target: Target, cid: str, *, follow: bool = True) -> None:
    """Copy a container's output from its start (then live, with ``follow``) to ours.

    A closed stdout (`dlt logs ID | head`) raises BrokenPipeError: the run is detached, so
    nothing but this copy ends (the task exits 141)."""
    sys.stdout.flush()
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for stream_id, data in _log_frames(target.engine.logs(cid, follow=follow)):
        dest = err if stream_id == 2 else out
        dest.write(data)
        dest.flush()


def log_bytes(engine: Engine, cid: str) -> bytes:
    """A container's whole output so far, stdout and stderr in the order written."""
    return b"".join(data for _, data in _log_frames(engine.logs(cid, follow=False)))


def _log_frames(body: Stream) -> Iterator[tuple[int, bytes]]:
    """Demultiplex the logs endpoint's framed stream (8-byte header: stream id, length)."""
    try:
        while True:
            header = body.read(8)
            if len(header) < 8:
                return
            stream_id, length = _HEADER.unpack(header)
            if not length:
                continue
            data = body.read(length)
            if not data:
                return
            yield stream_id, data
    finally:
        body.close()


def frames_of(stream: Stream) -> Iterator[tuple[int, bytes]]:
    """(stream id, bytes) of an attached container's output, until it ends."""
    return _frames(_Settling(stream).read)


def wait_exit_code(target: Target, cid: str) -> int:
    return target.engine.wait(cid)


@dataclass
class Running:
    """A container started by :func:`container`: its id, its attached stdio, its exit code."""

    cid: str
    stream: Stream
    code: int | None = None


@contextlib.contextmanager
def container(target: Target, spec: RunSpec, *, stop_timeout: int, stdin: bool = False,
              say: bool = True, started: Callable[[], None] | None = None) -> Iterator[Running]:
    """THE container lifecycle, for runs, shells, GPU tests and setup's probes.

    Create, attach (before start: nothing is missed), start, hand the running container to the
    body (which streams and sets ``code``), and remove it however the body ends. Ctrl-C,
    SIGTERM and SIGHUP (a closed terminal) while it runs stop it with the grace period
    ``stop_timeout``, then kill it; ``code`` is then 130. One exception to removal: a remote
    host whose SSH connection was lost keeps the container running (reattach with `logs`).
    Interrupted before the start: :class:`Interrupted`, with nothing left behind.
    ``started`` is called once the container has started (or failed to): a run's GPU lock is
    let go there.
    """
    cid = create(target, spec)
    try:
        with _signals_as_interrupt():
            try:
                run = Running(cid, target.engine.attach(cid, stdin=stdin))
                start(target, cid, spec)
            except (KeyboardInterrupt, _Terminated):
                raise Interrupted() from None
            finally:
                if started:
                    started()
            try:
                yield run
            except (KeyboardInterrupt, _Terminated):
                if say:  # a stderr that cannot be written must not skip the stop below
                    warn(f"\ndlt: interrupted, stopping the run (up to {stop_timeout}s)...")
                with block_interrupts():
                    stop(target, cid, stop_timeout)
                run.code = INTERRUPTED
    finally:
        if not _lost(target):  # a dropped SSH connection: the run goes on, reattach later
            with block_interrupts():
                remove(target, cid)


def run_attached(target: Target, spec: RunSpec, *, stop_timeout: int,
                 log_path: Path | None = None, started: Callable[[], None] | None = None,
                 secrets: Sequence[str] = ()) -> int:
    """Run to completion with output streamed live; returns the exit code (130 on Ctrl-C).

    The container is removed however the run ends. ``log_path`` (output.log) gets the
    output with every value of ``secrets`` scrubbed. A local write that fails (a full disk,
    a closed stdout) never ends the run: one warning, and the run goes on (localio).
    """
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    run_id = spec.labels.get(LABEL_RUN, "")
    with container(target, spec, stop_timeout=stop_timeout, started=started) as run:
        frames = _frames(_Settling(run.stream).read)
        sink, log = open_log(log_path, secrets) if log_path else (None, None)
        try:
            _copy(frames, Outputs(sink, run_id))
        finally:
            close_log(sink, log)
        check_connection(target, run_id)
        run.code = wait_exit_code(target, run.cid)
    return INTERRUPTED if run.code is None else run.code


def run_captured(target: Target, spec: RunSpec, *, timeout: float) -> tuple[int | None, str]:
    """Run to completion with the output collected (setup's and doctor's probes): (exit code,
    output); the code is None when it did not end within ``timeout`` seconds (it is stopped)."""
    with container(target, spec, stop_timeout=2, say=False) as run:
        run.stream.sock.settimeout(timeout)
        chunks: list[bytes] = []
        try:
            for _, data in _frames(run.stream.read1):
                chunks.append(data)
            run.code = wait_exit_code(target, run.cid)
        except TimeoutError:
            stop(target, run.cid, 2)
            return None, f"no end within {timeout:.0f}s: " + b"".join(chunks).decode(
                errors="replace")
    return run.code, b"".join(chunks).decode(errors="replace")


@contextlib.contextmanager
def block_interrupts() -> Iterator[None]:
    """Let cleanup finish even if the user presses Ctrl-C again."""
    try:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _lost(target: Target) -> bool:
    return not target.is_alive()


def check_connection(target: Target, run_id: str) -> None:
    """After a stream ends: a remote stream that ended because SSH dropped is not a finished
    run; say so (and how to reattach) instead of reporting an exit code."""
    target.check_alive(run_id)


def start_detached(target: Target, spec: RunSpec) -> str:
    """Create and start; the container outlives us (and our SSH connection). Returns its id."""
    cid = create(target, spec)
    start(target, cid, spec)
    return cid
