"""Hosts: WHERE the work happens. A :class:`~dltasks.hosts.target.Target` is this machine or a
remote host over SSH; the only place that knows which.

- :mod:`~dltasks.hosts.target`: the Target and this machine's kind of it.
- :mod:`~dltasks.hosts.shell`: seam 1, a shell on the target host.
- :mod:`~dltasks.hosts.remote`: the remote kind: strict host keys, the engine socket forwarded,
  the project synced, results fetched, the GPU lock held over SSH.
- :mod:`~dltasks.hosts.background`: work started now and collected later.
"""
