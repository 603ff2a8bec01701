"""Where a multi-host job's nodes meet: node 0's address and port, each node's interface.

- Node 0's address is the one the other nodes reach it by: the source address node 0 uses for
  its route to node 1 (``ip route get``), unless ``DLT_MASTER_ADDR`` says; never this laptop's
  view of node 0.
- The port: ``DLT_MASTER_PORT``, else the first of 29500 (torch's default) upward that nothing
  listens on at node 0 (``/proc/net/tcp``, ``/proc/net/tcp6``).
- ``NCCL_SOCKET_IFNAME`` and ``GLOO_SOCKET_IFNAME``: on each node, the interface of its route to
  node 0, unless the run's environment sets them.

The scripts run on the hosts (one round trip each); the parsers are pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from dltasks.errors import DltError
from dltasks.scripts import script

#: ``$1``: an address; prints the first line of ``ip route get``, or "noip" without iproute2.
ROUTE_SCRIPT = script("route")
#: The kernel's TCP socket tables (listening sockets have state 0A).
PORTS_SCRIPT = "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null"
FIRST_PORT = 29500
_SRC = re.compile(r"\bsrc\s+(\S+)")
_DEV = re.compile(r"\bdev\s+(\S+)")


def route_src(line: str) -> str:
    """The source address of an ``ip route get`` line ("" when it names none)."""
    m = _SRC.search(line)
    return m.group(1) if m else ""


def route_dev(line: str) -> str:
    m = _DEV.search(line)
    return m.group(1) if m else ""


def listening_ports(text: str) -> set[int]:
    """TCP ports with a listening socket, from /proc/net/tcp(6)."""
    ports = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[3] == "0A" and ":" in parts[1]:
            try:
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
            except ValueError:
                continue
    return ports


def pick_port(taken: Iterable[int], wanted: int = 0, *, where: str) -> int:
    """``wanted`` (refused when taken), else the first free port from :data:`FIRST_PORT`."""
    busy = set(taken)
    if wanted:
        if wanted in busy:
            raise DltError(f"DLT_MASTER_PORT={wanted} is taken on {where} (something listens "
                           "there): pick another port, or unset it to let dltasks choose")
        return wanted
    for port in range(FIRST_PORT, FIRST_PORT + 1000):
        if port not in busy:
            return port
    raise DltError(f"no free port from {FIRST_PORT} to {FIRST_PORT + 999} on {where}: set "
                   "DLT_MASTER_PORT")
