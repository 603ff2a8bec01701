"""Fabric tasks (`fab -H host TASK`): the same collection as tasks.py."""

from dltasks.tasks import ns  # noqa: F401
