"""Remote GPU hosts over SSH: strict host keys, the engine socket forwarded, code synced.

``remote_target`` is what ``tasks._common.target_for`` calls for a fabric Connection.
"""

from __future__ import annotations

from dltasks.hosts.remote.target import remote_target

__all__ = ["remote_target"]
