"""status: where the database is, where the files are, and what is pending.

The guide's "alembic current" and "alembic history --verbose" in one step.
"""

from __future__ import annotations

import pandas as pd

from ..config import RunContext
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
        where = ", ".join(current) or "<base> (empty)"
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
