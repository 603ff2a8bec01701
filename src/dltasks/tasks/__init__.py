"""The task collection shared by ``inv`` (tasks.py), ``fab`` (fabfile.py) and ``dlt``.

Task modules import nothing heavy at module level (no docker, fabric or paramiko): listing
and parsing tasks must stay as fast as invoke itself.
"""

from __future__ import annotations

from types import ModuleType

from invoke.collection import Collection
from invoke.tasks import Task

from dltasks.tasks import (
    config,
    context,
    execute,
    gpu,
    images,
    lab,
    ports,
    remote,
    run,
    runs,
    setup,
)

_MODULES: list[ModuleType] = [config, images, run, runs, lab, gpu, setup, remote, context, ports,
                              execute]


def _collection() -> Collection:
    ns = Collection()
    for mod in _MODULES:
        for obj in vars(mod).values():
            if isinstance(obj, Task) and obj.__module__ == mod.__name__:
                ns.add_task(obj)
    ns.configure({"run": {"echo": False}})
    return ns


ns = _collection()
