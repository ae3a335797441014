"""Start fresh: the guide's "Need to Start Fresh (Development Only!)": ``alembic downgrade base``
then ``alembic upgrade head``.

"NEVER do this in production!" :func:`gate` lets it run only in an environment marked
development (named development, dev, test or local); every other environment, production
first, is refused with the guide's warning before anything is touched. :func:`run` does both
halves under one hold of swrun's advisory lock, so no other run slips in between, and keeps
the integrity ledger (undone, then applied again).
"""

from __future__ import annotations

import pandas as pd

from ..config import RunContext
from ..database import migration_lock
from ..errors import UsageError
from ..guards import ledger
from ..result import StepResult, Timer
from ..steps.upgrade import baseline
from . import scratch

DEVELOPMENT = ("development", "dev", "test", "local")
WARNING = "NEVER do this in production!"


def is_development(environment: str) -> bool:
    return (environment or "").strip().lower() in DEVELOPMENT


def gate(ctx: RunContext) -> StepResult:
    env = ctx.environment
    if is_development(env):
        return StepResult("fresh-gate", summary=f"environment {env!r} is marked development: start fresh may drop and rebuild the schema",
                          data={"environment": env, "allowed": True})
    why = (f"refused: start fresh drops every table (alembic downgrade base) and is for development only; "
           f"the environment is {env!r}, not one of {', '.join(DEVELOPMENT)}. The guide: {WARNING}")
    return StepResult("fresh-gate", outcome="blocked", summary=why, error=why, data={"environment": env, "allowed": False})


def rebuilds(ctx: RunContext) -> None:
    """Before anything is dropped: ``upgrade head`` from empty (the baseline first) works in a scratch
    database, and env.py connects where swrun means; otherwise BuildFailed / StateError, nothing touched."""
    project = ctx.project
    with scratch.database(ctx, "embedded", "fresh") as url:
        scratch.build(project, url, project.resolve("head"))


def run(ctx: RunContext) -> StepResult:
    """``downgrade base`` then ``upgrade head``, one lock held for both."""
    if not is_development(ctx.environment):  # the library refuses too, not only the runbook's gate
        raise UsageError(f"start fresh refused in environment {ctx.environment!r}: {WARNING}")
    project = ctx.project
    project.resolve("head")  # two heads: StateError before anything is dropped
    rebuilds(ctx)
    with Timer() as t:
        with migration_lock(ctx.engine, wait_s=ctx.lock_wait_s):
            before = project.current(ctx.url)
            project.check_current(before)
            base = baseline(ctx)
            down = project.apply(ctx.url, "base", direction="downgrade", lock_timeout=ctx.lock_timeout)
            undone = ledger.mark_downgraded(ctx.engine, [a.revision for a in down], ctx.run_id)
            up = project.apply(ctx.url, "head", lock_timeout=ctx.lock_timeout)
            after = project.current(ctx.url)
            kept = ledger.record(ctx.engine, project, applied=[a.revision for a in up], current=after, run_id=ctx.run_id)
    rows = [a.as_dict() for a in down + up]
    result = StepResult("start-fresh", seconds=t.seconds)
    result.data = {"before": list(before), "after": list(after), "downgraded": [a.revision for a in down],
                   "applied": [a.revision for a in up], "ledger": {**kept, "downgraded": undone}}
    result.baseline = base
    result.tables["revisions"] = pd.DataFrame(rows, columns=["revision", "description", "direction", "seconds"])
    result.summary = (f"downgrade base undid {len(down)} revision(s), upgrade head applied {len(up)} in {t.seconds:.2f}s: "
                      f"{', '.join(before) or '<base>'} -> <base> -> {', '.join(after) or '<base>'}")
    return result
