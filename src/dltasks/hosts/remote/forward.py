"""The remote engine's socket, carried over the SSH connection we already have, as a local socket.

docker-py's own ``ssh://`` transport starts an ``ssh`` process for every API call (1.8 s per
run measured here); this forward opens one SSH channel per HTTP connection on the existing
paramiko transport instead, so a run costs what it costs locally plus a round trip.

A :class:`SocketForward` listens on a unix socket in a fresh 0700 folder (a TCP port on
localhost would hand the remote engine, i.e. root there, to every local user). For each
accepted connection it opens, on the transport:

* ``direct-streamlocal@openssh.com`` to the engine's unix socket (what ``ssh -L
  local.sock:/var/run/docker.sock`` uses; OpenSSH allows it unless
  ``AllowStreamLocalForwarding no``), else
* an exec channel running ``docker system dial-stdio`` (what the docker CLI's ssh:// uses), when
  the server refuses stream-local forwarding, or
* ``direct-tcpip`` when the remote engine listens on TCP (``DLT_DOCKER_HOST=tcp://...`` in
  ``.env.<host>``).

Bytes are pumped by two threads per connection, one each way; closing the forward closes the
listener, every channel and the folder.
"""

from __future__ import annotations

import fcntl
import select
import shlex
import shutil
import socket
import sys
import termios
import threading
import time
from typing import Any
from urllib.parse import urlparse

from dltasks.errors import DltError
from dltasks.hosts.remote.localsock import private_listener

STREAMLOCAL = "direct-streamlocal@openssh.com"
DEFAULT_REMOTE_SOCKET = "/var/run/docker.sock"
_CHUNK = 256 * 1024


def open_streamlocal(transport: Any, path: str, timeout: float = 30.0) -> Any:
    """Open a ``direct-streamlocal@openssh.com`` channel to ``path`` on the server.

    paramiko's ``Transport.open_channel`` only knows the payloads of its own channel kinds, so
    this is its body with the stream-local payload (RFC 4254 channel open, plus OpenSSH's
    PROTOCOL: string socket path, string reserved, uint32 reserved).
    """
    from paramiko.channel import Channel
    from paramiko.common import cMSG_CHANNEL_OPEN
    from paramiko.message import Message
    from paramiko.ssh_exception import SSHException

    if not transport.active:
        raise SSHException("SSH session not active")
    with transport.lock:
        window = transport._sanitize_window_size(None)
        packet = transport._sanitize_packet_size(None)
        chanid = transport._next_channel()
        m = Message()
        m.add_byte(cMSG_CHANNEL_OPEN)
        m.add_string(STREAMLOCAL)
        m.add_int(chanid)
        m.add_int(window)
        m.add_int(packet)
        m.add_string(path)
        m.add_string("")
        m.add_int(0)
        chan = Channel(chanid)
        transport._channels.put(chanid, chan)
        transport.channel_events[chanid] = event = threading.Event()
        transport.channels_seen[chanid] = True
        chan._set_transport(transport)
        chan._set_window(window, packet)
    transport._send_user_message(m)
    deadline = time.monotonic() + timeout
    while not event.wait(0.05):
        if not transport.active:
            raise transport.get_exception() or SSHException("Unable to open channel.")
        if time.monotonic() > deadline:
            raise SSHException("Timeout opening channel.")
    opened = transport._channels.get(chanid)
    if opened is None:
        raise transport.get_exception() or SSHException("Unable to open channel.")
    return opened


#: OpenSSH's channel-open failure for a socket it could not connect to (RFC 4254
#: SSH_OPEN_CONNECT_FAILED): the engine is not there, which is not a reason to stop forwarding.
_CONNECT_FAILED = 2


def _dial_stdio(transport: Any, command: str) -> Any:
    """An exec channel bridged to the engine by the host's docker CLI (``command``)."""
    chan = transport.open_session()
    chan.exec_command(command)
    return chan


class ChannelRelays:
    """A listening socket whose every connection is pumped through an SSH channel of its own
    (:meth:`channel_for` opens it); closing ends the listener and every live pair. The engine's
    socket forward and a run's port forward (:mod:`.portforward`) are two of these."""

    def __init__(self, listener: socket.socket) -> None:
        self._listener = listener
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._live: set[Any] = set()

    def start_accepting(self, name: str) -> None:
        threading.Thread(target=self._accept, name=name, daemon=True).start()

    def channel_for(self, peer: Any) -> Any:
        """The channel for a new connection from ``peer``; an exception closes the connection."""
        raise NotImplementedError

    def channel_failed(self, err: Exception) -> None:
        """Say why a connection got no channel (it is closed)."""

    def pump_failed(self, err: Exception) -> None:
        """Say why a pair stopped with an error other than a plain close or a dead link."""

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, peer), daemon=True,
                             name="dlt-relay-conn").start()

    def _serve(self, conn: socket.socket, peer: Any) -> None:
        try:
            chan = self.channel_for(peer)
        except Exception as e:  # noqa: BLE001 - the client sees a closed connection
            self.channel_failed(e)
            conn.close()
            return
        with self._lock:
            self._live.update((conn, chan))
        try:
            _pump(conn, chan, self._closed)
        except (OSError, EOFError):
            pass  # closed, or the SSH connection dropped, mid-stream
        except Exception as e:  # noqa: BLE001 - paramiko's errors on a dead transport
            self.pump_failed(e)
        finally:
            with self._lock:
                self._live.discard(conn)
                self._live.discard(chan)
            _quietly_close(chan)
            conn.close()

    def close_relays(self) -> bool:
        """Stop listening and drop every live pair; False when already closed."""
        if self._closed.is_set():
            return False
        self._closed.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            live = list(self._live)
        for item in live:
            _quietly_close(item)
        return True


class SocketForward(ChannelRelays):
    """A local unix socket whose connections reach the remote engine through ``transport``."""

    def __init__(self, transport: Any, remote_url: str = "", *, mode: str = "",
                 pending: bool = False) -> None:
        self.transport = transport
        self.dir, self.path, listener = private_listener("dlt-engine-", "docker.sock", 64)
        super().__init__(listener)
        self._pointed = threading.Event()
        self.errors: list[str] = []
        #: Why the latest channel could not be opened ("" once one opens again).
        self.last_failure = ""
        self.dial_command = ""
        if not pending:
            self.point_at(remote_url, mode=mode)
        self.start_accepting("dlt-forward")

    def point_at(self, remote_url: str, *, mode: str = "", dial_command: str = "") -> None:
        """Where connections go on the host (a forward made ``pending`` waits for this: the
        engine is known once the host has been described). ``dial_command``: the host's
        command bridging stdio to its engine, for ``dial-stdio``."""
        self.remote = remote_url or "unix://" + DEFAULT_REMOTE_SOCKET
        url = urlparse(self.remote)
        if url.scheme not in ("unix", "tcp", "http") and mode != "dial-stdio":
            raise DltError(f"DLT_DOCKER_HOST={remote_url!r} cannot be forwarded from a remote "
                           "host: use unix:///path/to/docker.sock or tcp://host:port")
        self.remote_url = url
        self.mode = mode or ("tcp" if url.scheme in ("tcp", "http") else "streamlocal")
        self.dial_command = dial_command or f"docker -H {shlex.quote(self.remote)} system " \
                                            "dial-stdio"
        self._pointed.set()

    @property
    def url(self) -> str:
        return "unix://" + self.path

    def open_channel(self) -> Any:
        """A channel to the remote engine, by the best way this server allows."""
        from paramiko.ssh_exception import ChannelException, SSHException

        if not self._pointed.wait(60) or self._closed.is_set():
            raise SSHException("the forward was closed before the host was described")
        if self.mode == "tcp":
            addr = (self.remote_url.hostname or "127.0.0.1", self.remote_url.port or 2375)
            return self.transport.open_channel("direct-tcpip", addr, ("127.0.0.1", 0))
        if self.mode == "streamlocal":
            try:
                return open_streamlocal(self.transport, self.remote_url.path)
            except (ChannelException, SSHException) as e:
                if not self.transport.active or getattr(e, "code", None) == _CONNECT_FAILED:
                    raise
                self.errors.append(f"stream-local forwarding refused ({e}); using dial-stdio")
                self.mode = "dial-stdio"
        return _dial_stdio(self.transport, self.dial_command)

    @property
    def lost(self) -> bool:
        """Whether the last channel failed because the SSH connection carrying it died."""
        return bool(self.last_failure) and not self.transport.active

    def channel_for(self, peer: Any) -> Any:
        chan = self.open_channel()
        self.last_failure = ""
        return chan

    def channel_failed(self, err: Exception) -> None:
        self.last_failure = _channel_failure(self, err)
        self.errors.append(f"cannot open a channel to the remote engine: {err}")

    def pump_failed(self, err: Exception) -> None:
        self.errors.append(f"forwarding stopped: {err}")

    def close(self) -> None:
        """Stop listening, drop every open channel, remove the socket folder."""
        self._pointed.set()  # a connection waiting to learn where to go gives up
        if self.close_relays():
            shutil.rmtree(self.dir, ignore_errors=True)


def _channel_failure(fwd: SocketForward, err: Exception) -> str:
    """Why a channel to the engine could not be opened, for the user."""
    if not fwd.transport.active:
        return "the SSH connection was lost"
    if getattr(err, "code", None) == _CONNECT_FAILED:
        what = ("no socket" if fwd.mode == "streamlocal" else "nothing listening")
        return f"{what} at {fwd.remote} there"
    return f"cannot open an SSH channel to it ({err})"


def _quietly_close(item: Any) -> None:
    """Close a socket or channel; on a dead SSH connection paramiko raises EOFError here."""
    try:
        item.close()
    except Exception:  # noqa: BLE001 - closing must never fail a task that is ending
        pass


def _pump(conn: socket.socket, chan: Any, closed: threading.Event) -> None:
    """Copy both ways until both sides have finished sending (half-closes passed on).

    Each way has its own thread: a side slow to read must never stop the other way (an
    exec's big output while its stdin is still being sent: the process blocks writing
    output until we read it, and reads no more input meanwhile)."""
    up = threading.Thread(target=_copy_up, args=(conn, chan, closed), daemon=True,
                          name="dlt-forward-up")
    up.start()
    _copy_down(conn, chan, closed)
    while up.is_alive() and not closed.is_set() and not chan.closed:
        up.join(1.0)


def _copy_up(conn: socket.socket, chan: Any, closed: threading.Event) -> None:
    """The client's bytes to the channel; its EOF half-closes the channel."""
    try:
        while not closed.is_set():
            ready, _, _ = select.select([conn], [], [], 1.0)
            if not ready:
                continue
            data = conn.recv(_CHUNK)
            if not data:
                chan.shutdown_write()
                return
            chan.sendall(data)
    except Exception:  # noqa: BLE001 - closed under us, or the SSH connection dropped: the
        return         # other way sees it too and ends the connection


def _copy_down(conn: socket.socket, chan: Any, closed: threading.Event) -> None:
    """The channel's bytes to the client until the channel's EOF (passed on) or close."""
    held = b""  # the start of a "101 Switching Protocols" head, until it is complete
    while not closed.is_set():
        ready, _, _ = select.select([chan], [], [], 1.0)
        if ready:
            data = chan.recv(_CHUNK)
            if data:
                held = _send_response(conn, held + data)
                continue
            if held:
                conn.sendall(held)
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return
        if chan.closed and not chan.recv_ready():
            return


def _send_response(conn: socket.socket, data: bytes) -> bytes:
    """Pass ``data`` on; returns bytes to hold back until more arrive.

    The engine answers attach/exec with ``HTTP/1.1 101 UPGRADED`` and then the raw stream. Over
    SSH both often arrive in one piece; the client reads the head through a buffered reader,
    which would swallow the first output frames (lost, or a hang until the next output). So
    the head goes alone, and the stream only once the client has read the head.
    """
    if not data.startswith(b"HTTP/1.1 101") and not (len(data) < 12 and
                                                    b"HTTP/1.1 101".startswith(data)):
        conn.sendall(data)
        return b""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data  # the head is not complete yet
    head, rest = data[:end + 4], data[end + 4:]
    conn.sendall(head)
    if rest:
        _wait_read(conn)
        conn.sendall(rest)
    return b""


def _wait_read(conn: socket.socket, timeout: float = 2.0) -> None:
    """Wait until the peer has read everything sent on ``conn`` (TIOCOUTQ reaches 0)."""
    deadline = time.monotonic() + timeout
    buf = bytearray(4)
    while time.monotonic() < deadline:
        try:
            fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, buf)
        except OSError:
            return
        if int.from_bytes(buf, sys.byteorder) == 0:
            return
        time.sleep(0.0005)
