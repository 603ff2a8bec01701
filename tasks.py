"""Invoke tasks for this project: all of dltasks, nothing else."""

from dltasks.tasks import ns  # noqa: F401
