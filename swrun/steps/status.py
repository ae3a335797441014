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
        result = StepResult("status")
        result.data = {
            "database": ctx.redacted_url,
            "current": list(current),
            "heads": list(heads),
            "target": target,
            "fingerprint": project.fingerprint(),
        }
        if len(heads) > 1:
            raise StateError(
                f"the migrations have {len(heads)} heads ({', '.join(heads)})",
                hint=f"merge them: alembic merge -m 'merge heads' {' '.join(heads)}",
            )
        project.check_current(current)
        pending = project.pending(current, target)
        result.data["pending"] = pending
        result.tables["pending"] = pd.DataFrame(
            [{"revision": r, "description": project.description(r), "file": project.file_of(r).name} for r in pending],
            columns=["revision", "description", "file"],
        )
        result.tables["history"] = project.history(current)
        where = ", ".join(current) or "<base> (empty)"
        result.summary = (f"database at {where}; {len(pending)} pending to {target}" if pending
                          else f"database at {where}; up to date with {target}")
    result.seconds = t.seconds
    return result
