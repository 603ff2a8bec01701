"""Hosts: WHERE the work happens. A :class:`~dltasks.hosts.target.Target` is this machine
(``LocalTarget``) or a remote host over SSH (``RemoteTarget``); the only place that knows which.
Callers ask the target (sync, liveness, GPU lock, programs, who runs there), never its kind.

- :mod:`~dltasks.hosts.target`: the Target interface, ``LocalTarget``, and ``open_target``,
  which decides the kind from an invoke Context or a fabric Connection.
- :mod:`~dltasks.hosts.shell`: seam 1, a shell on the target host.
- :mod:`~dltasks.hosts.remote`: the remote kind: strict host keys, the engine socket forwarded,
  the project synced, results fetched, the GPU lock held over SSH.
- :mod:`~dltasks.hosts.background`: work started now and collected later.
"""
