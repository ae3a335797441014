"""upgrade: apply the pending revisions under swrun's advisory lock, one transaction each.

The guide: ALWAYS run migrations manually in production, with control and visibility.
Before applying, the schema and row counts are captured so verify can diff them. After
it (also after a revision failed: the ones before it stay applied), every applied
revision's file goes into the integrity ledger (``swrun.migration_ledger``) in that revision's own
transaction; a downgrade marks the undone revisions there the same way. After a failure the step
re-reads ``alembic_version`` (reconnecting if the server went away), so the record says what committed.
"""

from __future__ import annotations

import contextlib
import time

import pandas as pd

from .. import schema
from ..config import RunContext
from ..database import connect, migration_lock
from ..errors import DatabaseError, MigrationFailed
from ..guards import ledger
from ..result import StepResult, Timer


def baseline(ctx: RunContext) -> dict:
    """Schema snapshot and row counts, for verify to compare against."""
    with connect(ctx.engine) as conn:
        return {"snapshot": schema.snapshot(conn), "row_counts": schema.row_counts(conn)}


def _keep_ledger(ctx: RunContext, direction: str, current, accept, retire) -> dict:
    """After the revisions (each credited in its own transaction): adopt what the ledger lacks, acknowledgements."""
    if direction == "downgrade":
        return {"downgraded": 0}
    return ledger.record(ctx.engine, ctx.project, applied=(), current=current, run_id=ctx.run_id,
                         accepted=accept, retired=retire)


def reread_current(project, url, *, attempts: int = 6, wait_s: float = 2.0) -> tuple[str, ...] | None:
    """The database's revision after a failure, reconnecting for ~10 s if the server went away; None: unknown."""
    for attempt in range(attempts):
        try:
            return project.current(url)
        except DatabaseError:
            if attempt + 1 < attempts:
                time.sleep(wait_s)
    return None


def run(ctx: RunContext, target: str = "head", direction: str = "upgrade", *, accept: tuple[str, ...] = (),
        retire: tuple[str, ...] = ()) -> StepResult:
    """``accept`` / ``retire``: revisions whose changed / deleted file an acknowledgement let through
    (the guards step's ``accept`` and ``retire``): the ledger records them as they are now.

    Each revision's ledger row is written inside that revision's own transaction, so the ledger
    credits exactly the revisions that committed, to the run that applied them, whatever happens next."""
    project = ctx.project
    credited: list[str] = []

    def credit(mctx, step) -> None:
        rev = step.up_revision_id
        ledger.credit(mctx.connection, project, rev, ctx.run_id, upgrade=step.is_upgrade)
        credited.append(rev)

    with Timer() as t:
        with migration_lock(ctx.engine, wait_s=ctx.lock_wait_s):
            before = project.current(ctx.url)
            base = baseline(ctx)
            ledger.prepare(ctx.engine)
            try:
                applied = project.apply(ctx.url, target, direction=direction, lock_timeout=ctx.lock_timeout,
                                        on_revision=credit)
            except MigrationFailed as exc:
                now = reread_current(project, ctx.url)
                exc.current = now or ()
                if now is None:
                    state = ("could not re-read the database's revision after reconnecting for 10s: check "
                             "alembic_version before running again")
                else:
                    state = f"the database is now at {', '.join(now) or '<base>'}"
                    with contextlib.suppress(Exception):  # never hide the revision's own error behind the ledger's
                        _keep_ledger(ctx, direction, now, (), ())
                exc.args = (f"{exc.args[0]}; {state}",)
                raise
            after = project.current(ctx.url)
            kept = _keep_ledger(ctx, direction, after, accept, retire)
    kept["recorded" if direction == "upgrade" else "downgraded"] = len(credited)
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
