"""A port on the host's loopback, reachable on this machine's loopback over our SSH connection.

What ``ssh -L LOCAL:127.0.0.1:PORT host`` does, on the paramiko transport the target already
holds: a TCP listener on this machine's 127.0.0.1 (never all interfaces) and, for each
connection, one ``direct-tcpip`` channel to ``127.0.0.1:PORT`` on the host, where the run's
container has its port published (:class:`dltasks.engine.spec.PortBinding`). Bytes are pumped
by the same code as the engine's socket forward (:mod:`.forward`). Closing the forward closes
the listener and every channel; the run is never touched.
"""

from __future__ import annotations

import errno
import socket
import sys
from typing import Any

from dltasks.errors import DltError
from dltasks.hosts.remote.forward import ChannelRelays, _quietly_close

#: How long the host may take to open a channel (paramiko's default is an hour).
CHANNEL_TIMEOUT = 30.0


def _listen(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # as OpenSSH's -L does: a port this forward used a moment ago (its connections closed by
    # us first, in TIME_WAIT) can be taken again at once; a port someone listens on cannot
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        s.listen(64)
    except OSError:
        s.close()
        raise
    return s


class PortForward(ChannelRelays):
    """``127.0.0.1:local_port`` here -> ``127.0.0.1:host_port`` on the host of ``transport``.

    ``local_port`` 0: the host's port number when it is free here (the URL reads the same on
    both sides), else any free port. A ``local_port`` that is taken is a one-line error."""

    def __init__(self, transport: Any, host_port: int, local_port: int = 0, *,
                 host: str = "the host") -> None:
        self.transport = transport
        self.host_port = host_port
        self.where = host
        self.errors: list[str] = []
        self._check()
        try:
            listener = _listen(local_port or host_port)
        except OSError as e:
            if local_port or e.errno != errno.EADDRINUSE:
                raise DltError(f"port {local_port or host_port} on this machine is taken "
                               f"({e.strerror}): pick another (HOST:CONTAINER) or end what "
                               "listens there") from None
            listener = _listen(0)
        super().__init__(listener)
        self.local_port: int = listener.getsockname()[1]
        self.start_accepting("dlt-port")

    def _check(self) -> None:
        """Open one channel to the port before any URL is printed: an sshd that forbids TCP
        forwarding (``AllowTcpForwarding no``, common) is one line now, not a browser's reset
        later. A port that does not answer yet (the program still starting) is no error."""
        import paramiko

        try:
            chan = self.transport.open_channel("direct-tcpip", ("127.0.0.1", self.host_port),
                                               ("127.0.0.1", 0), timeout=30)
        except paramiko.ChannelException as e:
            if e.code == paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
                raise DltError(f"sshd on {self.where} refuses TCP forwarding "
                               f"(AllowTcpForwarding no in its sshd_config), so its port "
                               f"{self.host_port} cannot reach this machine: ask its "
                               f"administrator for `AllowTcpForwarding local`") from None
            return  # nothing listens there yet: the forward opens all the same
        except (paramiko.SSHException, EOFError, OSError) as e:
            raise DltError(f"cannot forward port {self.host_port} of {self.where}: the SSH "
                           f"connection failed ({e}); retry") from None
        _quietly_close(chan)

    def _warn(self, text: str) -> None:
        """A failure after the URL was printed: kept, and said once on stderr (the terminal,
        or the background forwarder's forward.log)."""
        if text not in self.errors:
            print(f"dlt: warning: {text}", file=sys.stderr, flush=True)
        self.errors.append(text)

    def channel_for(self, peer: Any) -> Any:
        return self.transport.open_channel("direct-tcpip", ("127.0.0.1", self.host_port),
                                           peer, timeout=CHANNEL_TIMEOUT)

    def channel_failed(self, err: Exception) -> None:
        self._warn(f"cannot reach 127.0.0.1:{self.host_port} on {self.where}: {err}")

    def pump_failed(self, err: Exception) -> None:
        self._warn(f"forwarding 127.0.0.1:{self.host_port} of {self.where} stopped: {err}")

    @property
    def lost(self) -> bool:
        """Whether the SSH connection carrying the forward has died."""
        return not self.transport.active

    def close(self) -> None:
        """Stop listening and drop every open channel."""
        self.close_relays()
