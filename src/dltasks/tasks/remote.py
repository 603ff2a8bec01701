"""`sync` (the project to a remote host) and `fetch` (a run's results back), for `fab -H`."""

from __future__ import annotations

from typing import Any

from dltasks.tasks._common import dlt_task, settings_for, target_for


def _need_remote(c: Any, task: str) -> None:
    from dltasks.errors import DltError
    from dltasks.hosts.target import ssh_host_of

    if ssh_host_of(c) is None:
        raise DltError(f"`{task}` copies between this machine and a remote host: run it as "
                       f"`fab -H HOST {task}` (hosts come from ~/.ssh/config)")


@dlt_task(help={"full": "Run rsync even when nothing changed on either side since the last "
                       "sync (which is otherwise known without it).",
                "adopt": "Take a host folder that holds files but was not made by dltasks "
                         "(e.g. an older copy of this project) as this project's: nothing "
                         "in it is overwritten or deleted."})
def sync(c: Any, full: bool = False, adopt: bool = False) -> None:
    """Send the project to DLT_REMOTE_DIR on the host (rsync; ignores honoured; deletes there
    only what an earlier sync sent and is gone here)."""
    from dltasks.hosts.background import in_background
    from dltasks.hosts.remote.sync import local_listing, sync_project

    _need_remote(c, "sync")
    listing = in_background(local_listing, settings_for(c))  # while we connect
    with target_for(c, engine_soon=False, check_sync=True) as target:
        sync_project(target, target.settings, listing=listing, shortcut=not full,
                     adopt=adopt)


@dlt_task(help={"run": "Run id (from `inv runs`)."})
def fetch(c: Any, run: str) -> None:
    """Copy that run's outputs and the files it made on the host back here (a differing local
    file is kept, the host's copy saved beside it); save its log."""
    from dltasks.hosts.remote.fetch import fetch_run

    _need_remote(c, "fetch RUN")
    with target_for(c) as target:
        fetch_run(target, target.settings, run)
