"""upgrade: apply the pending revisions under swrun's advisory lock, one transaction each.

The guide: ALWAYS run migrations manually in production, with control and visibility.
Before applying, the schema and row counts are captured so verify can diff them. After
it (also after a revision failed: the ones before it stay applied), every applied
revision's file goes into the integrity ledger (``swrun.migration_ledger``) in that revision's own
transaction; a downgrade marks the undone revisions there the same way. After a failure the step
re-reads ``alembic_version`` (reconnecting if the server went away), so the record says what committed.

Lock waits are short and retried (swrun/lock_retry.py): each revision's ``attempts``, the seconds
it waited on locks and the blocker at each timeout are in the step's data and its table; the
summary says "applied after N attempts" for a revision that needed more than one.
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


def describe_blockers(blockers: list[dict]) -> str:
    from ..lock_retry import Blocker, describe

    return describe([Blocker(**b) for b in blockers]).removeprefix("blocked by ")


def reread_current(project, url, *, attempts: int = 6, wait_s: float = 2.0) -> tuple[str, ...] | None:
    """The database's revision after a failure, reconnecting for ~10 s if the server went away; None: unknown."""
    for attempt in range(attempts):
        try:
            return project.current(url)
        except DatabaseError:
            if attempt + 1 < attempts:
                time.sleep(wait_s)
    return None


def retry_policy(ctx: RunContext):
    """The run's lock-retry policy (``lock_retries``, ``lock_retry_budget``), as every migrating step uses it."""
    from ..lock_retry import RetryPolicy

    return RetryPolicy.of(getattr(ctx, "lock_retries", None), getattr(ctx, "lock_retry_budget", None))


def statement_timeout(ctx: RunContext) -> str | None:
    value = getattr(ctx, "statement_timeout", None)
    return None if value in (None, "", "0") else value


def attempts_summary(applied: list[dict]) -> str:
    """"; l0000002 applied after 3 attempts (0.6s waiting on locks)" for revisions that needed more than one."""
    retried = [a for a in applied if a.get("attempts", 1) > 1]
    return "".join(f"; {a['revision']} applied after {a['attempts']} attempts ({a.get('waited_s', 0):.1f}s waiting on locks)"
                   for a in retried)


def run(ctx: RunContext, target: str = "head", direction: str = "upgrade", *, accept: tuple[str, ...] = (),
        retire: tuple[str, ...] = (), on_attempt=None) -> StepResult:
    """``accept`` / ``retire``: revisions whose changed / deleted file an acknowledgement let through
    (the guards step's ``accept`` and ``retire``): the ledger records them as they are now.

    Each revision's ledger row is written inside that revision's own transaction, so the ledger
    credits exactly the revisions that committed, to the run that applied them, whatever happens next.
    ``on_attempt``: told each lock wait, timeout and retry (``Project.apply``), for progress."""
    project = ctx.project
    credited: dict[str, None] = {}  # a revision cancelled for a lock timeout and retried counts once

    def credit(mctx, step) -> None:
        rev = step.up_revision_id
        ledger.credit(mctx.connection, project, rev, ctx.run_id, upgrade=step.is_upgrade)
        credited[rev] = None

    with Timer() as t:
        with migration_lock(ctx.engine, wait_s=ctx.lock_wait_s):
            before = project.current(ctx.url)
            base = baseline(ctx)
            ledger.prepare(ctx.engine)
            try:
                applied = project.apply(ctx.url, target, direction=direction, lock_timeout=ctx.lock_timeout,
                                        on_revision=credit, retry=retry_policy(ctx),
                                        statement_timeout=statement_timeout(ctx), on_attempt=on_attempt)
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
        "lock_retry": {**retry_policy(ctx).as_dict(), "statement_timeout": statement_timeout(ctx)},
        "attempts": sum(a["attempts"] for a in rows),
        "lock_timeouts": [t for a in rows for t in a["lock_timeouts"]],
        "ledger": kept,
    })
    result.baseline = base  # not part of as_dict: verify reads it
    result.tables["applied"] = pd.DataFrame(rows, columns=["revision", "description", "direction", "seconds", "attempts"])
    if any(a["lock_timeouts"] for a in rows):
        result.tables["lock timeouts"] = pd.DataFrame(
            [{"revision": t["revision"], "attempt": t["attempt"], "waited_s": t["waited_s"], "pause_s": t["pause_s"],
              "blocker": describe_blockers(t["blockers"])} for a in rows for t in a["lock_timeouts"]],
            columns=["revision", "attempt", "waited_s", "pause_s", "blocker"])
    moved = f"{', '.join(before) or '<base>'} -> {', '.join(after) or '<base>'}"
    result.summary = (f"applied {len(rows)} revision(s) in {t.seconds:.2f}s: {moved}{attempts_summary(rows)}" if rows
                      else f"nothing to apply; at {', '.join(after) or '<base>'}")
    return result
