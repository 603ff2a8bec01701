"""The setup checklist: one result per step, a summary table, an exit code (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum


class StepStatus(str, Enum):
    OK = "ok"  # already as wanted, nothing done
    CHANGED = "changed"  # we changed something and it is now as wanted
    SKIPPED = "skipped"  # not applicable (e.g. GPU steps with --no-gpu)
    FAILED = "failed"  # not as wanted; ``hint`` says how to fix it
    PLANNED = "would change"  # --dry-run: this is what a real run would do


@dataclass(frozen=True)
class StepResult:
    name: str
    status: StepStatus
    detail: str = ""
    hint: str = ""
    required: bool = True
    #: Commands a dry run would run (or a real run ran), for the plan listing.
    commands: tuple[str, ...] = ()


def ok(name: str, detail: str = "") -> StepResult:
    return StepResult(name, StepStatus.OK, detail)


def changed(name: str, detail: str, commands: Sequence[str] = ()) -> StepResult:
    return StepResult(name, StepStatus.CHANGED, detail, commands=tuple(commands))


def skipped(name: str, detail: str) -> StepResult:
    return StepResult(name, StepStatus.SKIPPED, detail, required=False)


def failed(name: str, detail: str, hint: str = "", *, required: bool = True) -> StepResult:
    return StepResult(name, StepStatus.FAILED, detail, hint, required=required)


def planned(name: str, detail: str, commands: Sequence[str] = ()) -> StepResult:
    return StepResult(name, StepStatus.PLANNED, detail, commands=tuple(commands))


def exit_code(results: Sequence[StepResult]) -> int:
    """1 when a required step failed, else 0 (optional failures only warn)."""
    return 1 if any(r.status is StepStatus.FAILED and r.required for r in results) else 0


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def render(results: Sequence[StepResult], *, width: int = 100) -> str:
    """A table: STEP, STATUS, DETAIL; then each failure's fix, then a one-line verdict."""
    rows = [("STEP", "STATUS", "DETAIL")] + [(r.name, r.status.value, r.detail) for r in results]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    room = max(20, width - w0 - w1 - 4)
    lines = [f"{a:<{w0}}  {b:<{w1}}  {_clip(c, room)}".rstrip() for a, b, c in rows]
    fixes = [r for r in results if r.status is StepStatus.FAILED and r.hint]
    if fixes:
        lines.append("")
        lines += [f"fix {r.name}: {r.hint}" for r in fixes]
    lines.append("")
    lines.append(verdict(results))
    return "\n".join(lines)


def verdict(results: Sequence[StepResult]) -> str:
    counts = {s: sum(1 for r in results if r.status is s) for s in StepStatus}
    parts = [f"{n} {s.value}" for s, n in counts.items() if n]
    if exit_code(results):
        head = "setup incomplete"
    elif counts[StepStatus.PLANNED]:
        head = "dry run, nothing changed"
    elif counts[StepStatus.CHANGED]:
        head = "setup done"
    else:
        head = "everything ok, nothing changed"
    return f"{head}: {', '.join(parts)}"
