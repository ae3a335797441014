"""preview: the SQL the pending range would run, per revision, written to a file.

The guide's "alembic upgrade head --sql > migration.sql", but for exactly the pending
range (current:target), not everything from base. squawk reviews that SQL, one file per
revision; its findings are shown here and weighed by the guards step.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import RunContext
from ..guards import count, frame, lint
from .base import StepResult, Timer


def run(ctx: RunContext, target: str = "head", current: tuple[str, ...] | None = None, out_dir: Path | None = None) -> StepResult:
    with Timer() as t:
        project = ctx.project
        if current is None:
            current = project.current(ctx.url)
        revisions = project.offline_sql(ctx.url, tuple(current), target)
        out_dir = Path(out_dir or ctx.backup_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{ctx.run_id}_preview.sql"
        start = current[0] if current else "base"
        header = f"-- swrun preview: {start} -> {target}\n-- database: {ctx.redacted_url}\n-- run: {ctx.run_id}\n"
        path.write_text(header + "".join(r.sql for r in revisions))
        rows = [{
            "revision": r.revision,
            "description": r.description,
            "statements": _count_statements(r.sql),
            "sql": r.sql.strip(),
        } for r in revisions]
        # the guide's "ALWAYS review": squawk on exactly this SQL (a missing or failing squawk stops the run)
        reviewed = lint.squawk(revisions, exclude=lint.squawk_exclusions(project), lock_timeout_set=bool(ctx.lock_timeout))
    result = StepResult("preview", data={"file": str(path), "revisions": [r["revision"] for r in rows],
                                         "statements": sum(r["statements"] for r in rows),
                                         "squawk": [f.as_dict() for f in reviewed]})
    result.tables["revisions"] = pd.DataFrame(rows, columns=["revision", "description", "statements"])
    if reviewed:
        result.tables["squawk"] = frame(reviewed).drop(columns=["source", "file", "status"])
    result.code = {f"{r['revision']} {r['description']}": r["sql"] for r in rows}
    result.summary = (f"{len(rows)} revision(s), {result.data['statements']} statement(s) -> {path}; squawk: "
                      + (f"{len(reviewed)} finding(s) ({count(reviewed)})" if reviewed else "no finding")) if rows \
        else "nothing pending; no SQL to run"
    result.seconds = t.seconds
    return result


def _count_statements(sql: str) -> int:
    return sum(1 for line in sql.splitlines() if line.rstrip().endswith(";") and not line.lstrip().startswith("--"))
