"""`config`: every resolved setting, its value (secrets masked) and where it came from."""

from __future__ import annotations

from typing import Any

from dltasks.tasks._common import dlt_task, settings_for, target_for


@dlt_task
def config(c: Any) -> None:
    """Print every resolved setting, its value (secrets masked) and its source."""
    s = settings_for(c)
    rows = [("KEY", "VALUE", "SOURCE"), *s.rows()]
    w0 = max(len(r[0]) for r in rows)
    w1 = min(max(len(r[1]) for r in rows), 60)
    for key, value, source in rows:
        print(f"{key:<{w0}}  {value:<{w1}}  {source}")
    if s.container_env:
        from dltasks.settings.masking import mask_env

        print(f"\ncontainer environment (from .env and DLT_ENV), project {s.project_dir}:")
        for k, v in mask_env(s.container_env).items():
            print(f"  {k}={v}")
    print(f"\nengine: {_engine_line(c)}")


def _engine_line(c: Any) -> str:
    """Which engine runs would use, and why (the docker CLI's rules, dltasks.engine.endpoint)."""
    from dltasks.errors import DltError

    try:
        with target_for(c, engine_soon=False) as target:
            return f"{target.endpoint.describe()}{target.on_host}"
    except DltError as e:
        return f"none ({e.message})"
