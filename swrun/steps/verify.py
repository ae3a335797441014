"""verify: the database is where it should be, and nothing was lost on the way.

The guide: verify the application works. Checks: current equals the target's heads
(branches by design have several); each enum's values equal the models'; schema and row counts against the
baseline taken before the upgrade (a drop in rows is flagged); no invalid index; and
the project's own check command, when one is configured (``[swrun] check = ...``).
"""

from __future__ import annotations

import os
import shlex
import subprocess

import pandas as pd

from .. import schema
from ..config import RunContext
from ..database import connect
from ..result import StepResult, Timer


def run(ctx: RunContext, target: str = "head", baseline: dict | None = None, check_command: str | None = None) -> StepResult:
    project = ctx.project
    checks: list[dict] = []

    def check(name: str, passed: bool, detail: str, severity: str = "failed") -> None:
        checks.append({"check": name, "result": "pass" if passed else severity, "detail": detail})

    with Timer() as t:
        current = project.current(ctx.url)
        wanted = project.resolve(target)
        # the target's heads, not "one head": branches by design are deployed with heads / <label>@head
        check("revision", set(current) == set(wanted), f"database at {', '.join(current) or '<base>'}, "
                                                       f"heads of {target}: {', '.join(wanted) or '<base>'}")
        with connect(ctx.engine) as conn:
            db_enums = {name: labels for _, name, labels in schema.enum_types(conn)}
            after = {"snapshot": schema.snapshot(conn), "row_counts": schema.row_counts(conn)}
            invalid = schema.invalid_indexes(conn)
        declared = schema.model_enums(project.metadata()) if project.option("metadata") else {}
        at_head = set(current) == set(project.heads)
        for name, values in sorted(declared.items()):
            if not at_head:
                break  # models describe head; an older target legitimately differs
            found = db_enums.get(name)
            check(f"enum {name}", found == values, f"database {found} vs models {values}")
        check("invalid indexes", not invalid, ", ".join(invalid) or "none")
        diff_rows: list[dict] = []
        count_rows: list[dict] = []
        if baseline:
            diff_rows = schema.diff(baseline["snapshot"], after["snapshot"])
            for table in sorted(baseline["row_counts"].keys() | after["row_counts"].keys()):
                old = baseline["row_counts"].get(table)
                new = after["row_counts"].get(table)
                flag = "dropped" if (old or 0) > (new or 0) else ""
                count_rows.append({"table": table, "before": old, "after": new, "flag": flag})
            dropped = [f"{r['table']} ({r['before']} -> {r['after'] if r['after'] is not None else 'dropped'})"
                       for r in count_rows if r["flag"]]
            check("row counts", not dropped, f"fewer rows in {', '.join(dropped)}" if dropped else "no table lost rows", severity="warning")
        command = check_command or project.option("check")
        if command:
            proc = subprocess.run(shlex.split(command), cwd=project.ini_path.parent, capture_output=True, text=True,
                                  env={**os.environ, "SWRUN_DATABASE_URL": ctx.url.render_as_string(hide_password=False)})
            tail = ctx.scrub((proc.stdout + proc.stderr).strip().splitlines()[-1] if (proc.stdout + proc.stderr).strip() else "")
            check("app check", proc.returncode == 0, f"`{command}` exit {proc.returncode}: {tail}")
    failed = [c for c in checks if c["result"] == "failed"]
    warned = [c for c in checks if c["result"] == "warning"]
    outcome = "failed" if failed else ("warning" if warned else "ok")
    result = StepResult("verify", outcome=outcome, seconds=t.seconds)
    result.data = {"checks": checks, "schema_changes": diff_rows, "row_counts": count_rows, "current": list(current)}
    result.tables["checks"] = pd.DataFrame(checks, columns=["check", "result", "detail"])
    result.tables["schema_changes"] = pd.DataFrame(diff_rows, columns=["kind", "object", "change", "before", "after"])
    result.tables["row_counts"] = pd.DataFrame(count_rows, columns=["table", "before", "after", "flag"])
    result.summary = (f"{len(checks) - len(failed) - len(warned)}/{len(checks)} checks passed"
                      + (f"; failed: {', '.join(c['check'] for c in failed)}" if failed else "")
                      + (f"; warnings: {'; '.join(c['check'] + ': ' + c['detail'] for c in warned)}" if warned else ""))
    if failed:
        result.error = "; ".join(f"{c['check']}: {c['detail']}" for c in failed)
    return result
