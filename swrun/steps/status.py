"""status: where the database is, where the files are, and what is pending.

The guide's "alembic current" and "alembic history --verbose" in one step.
"""

from __future__ import annotations

import pandas as pd

from ..config import RunContext
from ..database import connect
from ..errors import StateError
from ..result import StepResult, Timer


def run(ctx: RunContext, target: str = "head") -> StepResult:
    with Timer() as t:
        project = ctx.project
        current = project.current(ctx.url)
        heads = project.heads
        by_label = project.heads_by_label()
        result = StepResult("status")
        result.data = {
            "database": ctx.redacted_url,
            "current": list(current),
            "heads": list(heads),
            "heads_by_label": by_label,
            "target": target,
            "fingerprint": project.fingerprint(),
        }
        project.check_current(current)
        where = ", ".join(current) or _base_state(ctx, result)
        if not project.revisions:
            result.data["pending"] = []
            result.summary = f"no revisions: the project's versions directory is empty; database at {where}"
            result.seconds = t.seconds
            return result
        if project.is_behind(current, target):
            raise StateError(
                f"the target {target!r} is below the database's revision ({', '.join(current)}): that is a rollback",
                hint=f"swrun rollback --to {target}")
        pending = project.pending(current, target)  # 'head' with several heads: StateError naming the choices
        result.data["pending"] = pending
        result.tables["pending"] = pd.DataFrame(
            [{"revision": r, "description": project.description(r), "file": project.file_of(r).name} for r in pending],
            columns=["revision", "description", "file"],
        )
        result.tables["history"] = project.history(current)
        if len(heads) > 1:
            result.tables["heads"] = pd.DataFrame(
                [{"branch": label, "heads": ", ".join(revs)} for label, revs in by_label.items()]
                or [{"branch": "", "heads": ", ".join(heads)}], columns=["branch", "heads"])
        result.summary = (f"database at {where}; {len(pending)} pending to {target}" if pending
                          else f"database at {where}; up to date with {target}")
    result.seconds = t.seconds
    return result


def _base_state(ctx: RunContext, result: StepResult) -> str:
    """A database with no revision: empty, or holding tables the application created itself
    (a chain that starts on them needs them; a scratch build needs ``[swrun] baseline``)."""
    with connect(ctx.engine) as conn:
        tables = conn.exec_driver_sql(
            "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema', 'swrun') "
            "and left(n.nspname, 3) <> 'pg_'").scalar()
    result.data["tables_without_revision"] = int(tables)
    return f"<base> (no alembic_version, but {tables} table(s) exist)" if tables else "<base> (empty)"
