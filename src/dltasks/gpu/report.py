"""`inv gpus`: a host's GPUs, who holds each, and what else runs on them (pure rendering).

One :func:`report` per host, from the driver's account and the claims
(:mod:`dltasks.gpu.claims`); :func:`table` prints it for people, the dict itself is the JSON
for scripts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dltasks.gpu.claims import Claim, GpuStatus, holders


def report(host: str, status: GpuStatus, claims: Sequence[Claim], *, free_mib: int,
           indices: Sequence[int] = (), problem: str = "") -> dict[str, Any]:
    """The host's GPUs as plain data: index, name, memory, utilisation, temperature, state
    (free, held, busy, lost, mig), the dltasks runs holding it, and its other processes."""
    h = holders(status, claims, free_mib=free_mib, indices=indices)
    held_cids = {c.container_id for cs in h.claims.values() for c in cs}
    gpus = []
    known = {g.index: g for g in status.gpus}
    for i in sorted(set(known) | set(indices)):
        g = known.get(i)
        apps = [a for a in status.apps if g is not None and g.uuid and a.gpu_uuid == g.uuid]
        runs = h.claims.get(i, [])
        if i in h.unusable:
            state = "lost" if h.unusable[i].startswith("lost") else "mig"
        elif runs:
            state = "held"
        elif i in h.busy:
            state = "busy"
        else:
            state = "free"
        gpus.append({
            "index": i, "uuid": g.uuid if g else "", "name": g.name if g else "",
            "bus_id": g.bus_id if g else "",
            "memory_used_mib": g.memory_used if g else None,
            "memory_total_mib": g.memory_total if g else None,
            "utilization_pct": g.utilization if g else None,
            "temperature_c": g.temperature if g else None,
            "state": state, "why": h.why_not(i),
            "held_by": [{"run_id": c.run_id, "user": c.user, "project": c.project,
                         "started": c.started} for c in runs],
            "processes": [{"pid": a.pid, "name": a.name, "memory_mib": a.memory,
                           "dltasks": bool(a.container) and any(
                               cid.startswith(a.container) or a.container.startswith(cid)
                               for cid in held_cids if cid)}
                          for a in apps],
        })
    problems = [p for p in (status.problem, problem) if p]
    return {"host": host, "gpus": gpus, "free": [g["index"] for g in gpus
                                                 if g["state"] == "free"],
            "problems": problems}


def _num(v: Any, unit: str = "") -> str:
    return "-" if v is None else f"{v}{unit}"


def table(rep: dict[str, Any]) -> str:
    """The report as a table, one line per GPU, with a title line."""
    gpus = rep["gpus"]
    free = rep["free"]
    title = f"{rep['host']}: {len(gpus)} GPU(s), {len(free)} free"
    title += f" ({','.join(map(str, free))})" if free else ""
    lines = [title]
    lines += [f"  note: {p}" for p in rep["problems"]]
    if not gpus:
        return "\n".join(lines)
    rows = [("GPU", "NAME", "MEMORY (MiB)", "UTIL", "TEMP", "STATE", "HELD BY",
             "OTHER PROCESSES")]
    for g in gpus:
        mem = "-" if g["memory_used_mib"] is None else \
            f"{g['memory_used_mib']} / {_num(g['memory_total_mib'])}"
        held = "; ".join(f"{c['run_id']} ({c['user'] or '?'}, {c['project'] or '?'}, "
                         f"{_since(c['started'])})" for c in g["held_by"]) or "-"
        others = ", ".join(f"{p['name'].rsplit('/', 1)[-1]} pid {p['pid']}"
                           + (f" {p['memory_mib']} MiB" if p["memory_mib"] is not None else "")
                           for p in g["processes"] if not p["dltasks"]) or "-"
        state = g["state"] if g["state"] not in ("lost", "mig") else g["why"]
        rows.append((str(g["index"]), g["name"] or "?", mem, _num(g["utilization_pct"], "%"),
                     _num(g["temperature_c"], "C"), state, held, others))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip())
    return "\n".join(lines)


def _since(iso: str) -> str:
    date, _, rest = iso.partition("T")
    return f"since {date} {rest[:5]}" if rest else (f"since {iso}" if iso else "since ?")
