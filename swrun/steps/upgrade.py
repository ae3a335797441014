"""upgrade: apply the pending revisions under swrun's advisory lock, one transaction each.

The guide: ALWAYS run migrations manually in production, with control and visibility.
Before applying, the schema and row counts are captured so verify can diff them. After
it (also after a revision failed: the ones before it stay applied), every applied
revision's file goes into the integrity ledger (``swrun.migration_ledger``); a downgrade
marks the undone revisions there.
"""

from __future__ import annotations

import contextlib

import pandas as pd

from .. import schema
from ..config import RunContext
from ..database import connect, migration_lock
from ..errors import MigrationFailed
from ..guards import ledger
from ..result import StepResult, Timer


def baseline(ctx: RunContext) -> dict:
    """Schema snapshot and row counts, for verify to compare against."""
    with connect(ctx.engine) as conn:
        return {"snapshot": schema.snapshot(conn), "row_counts": schema.row_counts(conn)}


def _keep_ledger(ctx: RunContext, direction: str, revisions: list[str], current, accept, retire) -> dict:
    if direction == "downgrade":
        return {"downgraded": ledger.mark_downgraded(ctx.engine, revisions, ctx.run_id)}
    return ledger.record(ctx.engine, ctx.project, applied=revisions, current=current, run_id=ctx.run_id,
                         accepted=accept, retired=retire)


def run(ctx: RunContext, target: str = "head", direction: str = "upgrade", *, accept: tuple[str, ...] = (),
        retire: tuple[str, ...] = ()) -> StepResult:
    """``accept`` / ``retire``: revisions whose changed / deleted file an acknowledgement let through
    (the guards step's ``accept`` and ``retire``): the ledger records them as they are now."""
    project = ctx.project
    with Timer() as t:
        with migration_lock(ctx.engine, wait_s=ctx.lock_wait_s):
            before = project.current(ctx.url)
            base = baseline(ctx)
            try:
                applied = project.apply(ctx.url, target, direction=direction, lock_timeout=ctx.lock_timeout)
            except MigrationFailed as exc:
                exc.current = project.current(ctx.url)
                done = [a.revision for a in project._timings]  # committed before the failing one
                with contextlib.suppress(Exception):  # never hide the revision's own error behind the ledger's
                    _keep_ledger(ctx, direction, done, exc.current, (), ())
                where = ", ".join(exc.current) or "<base>"
                exc.args = (f"{exc.args[0]}; the database is now at {where}",)
                raise
            after = project.current(ctx.url)
            kept = _keep_ledger(ctx, direction, [a.revision for a in applied], after, accept, retire)
    rows = [a.as_dict() for a in applied]
    result = StepResult(direction, seconds=t.seconds, data={
        "target": target,
        "before": list(before),
        "after": list(after),
        "applied": rows,
        "lock_timeout": ctx.lock_timeout,
        "ledger": kept,
    })
    result.baseline = base  # not part of as_dict: verify reads it
    result.tables["applied"] = pd.DataFrame(rows, columns=["revision", "description", "direction", "seconds"])
    moved = f"{', '.join(before) or '<base>'} -> {', '.join(after) or '<base>'}"
    result.summary = f"applied {len(rows)} revision(s) in {t.seconds:.2f}s: {moved}" if rows else f"nothing to apply; at {', '.join(after) or '<base>'}"
    return result
