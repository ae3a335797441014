"""upgrade: apply the pending revisions under swrun's advisory lock, one transaction each.

The guide: ALWAYS run migrations manually in production, with control and visibility.
Before applying, the schema and row counts are captured so verify can diff them.
"""

from __future__ import annotations

import pandas as pd

from .. import schema
from ..config import RunContext
from ..database import connect, migration_lock
from ..errors import MigrationFailed
from .base import StepResult, Timer


def baseline(ctx: RunContext) -> dict:
    """Schema snapshot and row counts, for verify to compare against."""
    with connect(ctx.engine) as conn:
        return {"snapshot": schema.snapshot(conn), "row_counts": schema.row_counts(conn)}


def run(ctx: RunContext, target: str = "head", direction: str = "upgrade") -> StepResult:
    project = ctx.project
    with Timer() as t:
        with migration_lock(ctx.engine, wait_s=ctx.lock_wait_s):
            before = project.current(ctx.url)
            base = baseline(ctx)
            try:
                applied = project.apply(ctx.url, target, direction=direction, lock_timeout=ctx.lock_timeout)
            except MigrationFailed as exc:
                exc.current = project.current(ctx.url)
                where = ", ".join(exc.current) or "<base>"
                exc.args = (f"{exc.args[0]}; the database is now at {where}",)
                raise
            after = project.current(ctx.url)
    rows = [a.as_dict() for a in applied]
    result = StepResult(direction, seconds=t.seconds, data={
        "target": target,
        "before": list(before),
        "after": list(after),
        "applied": rows,
        "lock_timeout": ctx.lock_timeout,
    })
    result.baseline = base  # not part of as_dict: verify reads it
    result.tables["applied"] = pd.DataFrame(rows, columns=["revision", "description", "direction", "seconds"])
    moved = f"{', '.join(before) or '<base>'} -> {', '.join(after) or '<base>'}"
    result.summary = f"applied {len(rows)} revision(s) in {t.seconds:.2f}s: {moved}" if rows else f"nothing to apply; at {', '.join(after) or '<base>'}"
    return result
