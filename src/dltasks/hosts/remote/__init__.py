"""Remote GPU hosts over SSH: strict host keys, the engine socket forwarded, code synced.

``remote_target`` is what :func:`dltasks.hosts.target.open_target` calls for a fabric
Connection (and ``tasks._common.job_targets`` for each host of a job).
"""

from __future__ import annotations

from dltasks.hosts.remote.target import remote_target

__all__ = ["remote_target"]
