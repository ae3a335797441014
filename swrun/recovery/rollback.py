"""Rollback: the guide's ``alembic downgrade -1``, planned before it runs.

1. :func:`plan` (read-only): where the database is, the target (``--to REV`` or ``--steps N``,
   one by default, as the guide's ``-1``), every revision that will be undone, the SQL of
   their ``downgrade()`` (rendered offline, as ``alembic downgrade --sql current:target``),
   the data that SQL drops or deletes, and downgrades that do nothing. A target that does
   not exist, is not below the database's revision, or lies past base is refused here.
2. backup (the deploy's step).
3. :func:`run`: the downgrade under swrun's advisory lock, one transaction per revision,
   the undone revisions marked in the integrity ledger (``swrun.steps.upgrade``).
4. :func:`verify`: the database is at the target; schema changes and row counts against
   the state before.
"""

from __future__ import annotations

import io
import re

import pandas as pd

from ..config import RunContext
from ..database import connect
from ..errors import StateError, SwrunError, UsageError
from ..guards import lint
from ..migrations import Project
from ..steps import upgrade, verify as verify_step
from ..result import StepResult, Timer


def _down_revisions(project: Project, rev: str) -> tuple[str, ...]:
    down = project.revisions[rev].down_revision or ()
    return (down,) if isinstance(down, str) else tuple(down)


def resolve_target(project: Project, current: tuple[str, ...], *, to: str = "", steps: int = 0) -> str:
    """The revision a rollback goes to ("base" for an empty schema); UsageError for a bad target."""
    where = ", ".join(current) or "<base>"
    if to and steps:
        raise UsageError("give either a target revision (--to) or a number of revisions (--steps), not both")
    if steps < 0:
        raise UsageError(f"--steps must be a positive number of revisions, got {steps}")
    if not current:
        raise UsageError("the database is at <base> (no revision applied): there is nothing to roll back")
    below = project.ancestors(current)
    if to:
        wanted = project.resolve(to)  # UsageError for a revision no file defines
        if len(wanted) > 1:
            raise UsageError(f"{to!r} names {len(wanted)} revisions ({', '.join(wanted)}): roll back to one revision")
        if wanted and wanted[0] not in below:
            raise UsageError(
                f"revision {wanted[0]} is not below the database's revision {where}: a rollback only goes down",
                hint=f"to go up: swrun deploy --to {wanted[0]}")
        return wanted[0] if wanted else "base"
    count = steps or 1
    if len(current) > 1:
        raise UsageError(f"the database is at {len(current)} heads ({where}): name the target with --to")
    position: str | None = current[0]
    for done in range(count):
        if position is None:
            raise UsageError(
                f"cannot roll back {count} revision(s): the database is {done} revision(s) above base (at {where})",
                hint="to undo everything: --to base")
        parents = _down_revisions(project, position)
        if len(parents) > 1:
            raise UsageError(f"revision {position} merges {', '.join(parents)}: '{count} back' is ambiguous; name the target with --to")
        position = parents[0] if parents else None
    return position or "base"


def downgrade_sql(project: Project, url, current: tuple[str, ...], target: str) -> dict[str, str]:
    """The SQL each revision's downgrade() would run, rendered offline (``alembic downgrade --sql current:target``)."""
    if len(current) != 1:
        return {}
    buffer = io.StringIO()

    def plan(rev, context):
        return project.script._downgrade_revs(target, rev)

    project._timings = []
    project._run_env(url, project._timed(plan, [], "downgrade", buffer), as_sql=True, buffer=buffer,
                     starting_rev=current[0], destination_rev=target)
    return {f"{a.revision} downgrade ({project.description(a.revision)})": a.sql.strip() for a in project._timings}


_DROP_TABLE = re.compile(r"\bDROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?P<t>[\w.\"]+)", re.I)
_DROP_COLUMN = re.compile(r"\bALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<t>[\w.\"]+)\s+DROP\s+(?:COLUMN\s+)?(?:IF\s+EXISTS\s+)?(?P<c>[\w\"]+)", re.I)
_DELETE = re.compile(r"\bDELETE\s+FROM\s+(?:ONLY\s+)?(?P<t>[\w.\"]+)", re.I)


def data_at_risk(conn, sql_texts: list[str]) -> list[dict]:
    """Tables dropped, columns dropped and tables deleted from by the downgrade SQL, with what they hold now."""
    rows: list[dict] = []
    seen: set[tuple[str, str]] = set()

    def count(sql: str) -> int | None:
        try:
            with conn.begin_nested():
                return int(conn.exec_driver_sql(sql).scalar())
        except Exception:
            return None

    def qualified(name: str) -> str:
        return name if "." in name else f"public.{name}"

    for text in sql_texts:
        for m in _DROP_TABLE.finditer(text):
            t = m.group("t").replace('"', "")
            if ("table", t) not in seen:
                seen.add(("table", t))
                rows.append({"object": qualified(t), "what the downgrade does": "drops the table",
                             "rows now": count(f"select count(*) from {m.group('t')}")})
        for m in _DROP_COLUMN.finditer(text):
            t, c = m.group("t").replace('"', ""), m.group("c").replace('"', "")
            if c.upper() in ("CONSTRAINT", "DEFAULT", "NOT") or ("column", f"{t}.{c}") in seen:
                continue
            seen.add(("column", f"{t}.{c}"))
            rows.append({"object": f"{qualified(t)}.{c}", "what the downgrade does": "drops the column (rows now: its non-null values)",
                         "rows now": count(f"select count({m.group('c')}) from {m.group('t')}")})
        for m in _DELETE.finditer(text):
            t = m.group("t").replace('"', "")
            if ("delete", t) not in seen:
                seen.add(("delete", t))
                rows.append({"object": qualified(t), "what the downgrade does": "deletes rows (rows now: the whole table)",
                             "rows now": count(f"select count(*) from {m.group('t')}")})
    return [r for r in rows if r["rows now"] is not None]


def plan(ctx: RunContext, *, to: str = "", steps: int = 0) -> StepResult:
    project = ctx.project
    with Timer() as t:
        current = project.current(ctx.url)
        project.check_current(current)  # a revision no file defines: StateError (swrun doctor explains it)
        target = resolve_target(project, current, to=to, steps=steps)
        undo = project.to_downgrade(current, target)
        notes: list[str] = []
        try:
            code = downgrade_sql(project, ctx.url, current, target) if undo else {}
        except SwrunError:
            raise
        except Exception as exc:  # a downgrade that cannot render offline still runs online
            code = {}
            notes.append(f"the downgrade SQL could not be rendered offline: {type(exc).__name__}: {ctx.scrub(str(exc))[:200]}")
        with connect(ctx.engine) as conn:
            risk = data_at_risk(conn, list(code.values()))
        rows = []
        for rev in undo:
            flags = [f.rule for f in lint.lint_file(project.file_of(rev), rev) if f.rule.startswith("downgrade-")]
            rows.append({"revision": rev, "description": project.description(rev), "file": project.file_of(rev).name,
                         "downgrade": {"downgrade-missing": "MISSING", "downgrade-empty": "does nothing"}.get(flags[0], "") if flags else "ok"})
    empty = [r["revision"] for r in rows if r["downgrade"] != "ok"]
    if empty:
        notes.append(f"downgrade() of {', '.join(empty)} does nothing: the version moves back, its changes stay")
    losing = [r for r in risk if r["rows now"]]
    result = StepResult("rollback-plan", seconds=t.seconds, outcome="warning" if (losing or empty) else "ok")
    result.data = {"current": list(current), "target": target, "undo": undo, "data_at_risk": risk, "notes": notes}
    result.tables["to undo (newest first)"] = pd.DataFrame(rows, columns=["revision", "description", "file", "downgrade"])
    result.tables["data the downgrade removes"] = pd.DataFrame(risk, columns=["object", "what the downgrade does", "rows now"])
    result.code = code
    where = ", ".join(current)
    if not undo:
        result.summary = f"nothing to roll back: the database is at {where}"
    else:
        result.summary = f"roll back {len(undo)} revision(s): {where} -> {target}"
        if losing:
            result.summary += "; data removed: " + ", ".join(f"{r['object']} ({r['rows now']})" for r in losing)
    if notes:
        result.summary += "; " + "; ".join(notes)
    return result


def run(ctx: RunContext, target: str, expected_current: list[str] | None = None) -> StepResult:
    """The downgrade to ``target`` under swrun's lock; the ledger marks the undone revisions."""
    if expected_current is not None:
        now = list(ctx.project.current(ctx.url))
        if set(now) != set(expected_current):
            raise StateError(f"the database moved since the plan: it was at {', '.join(expected_current) or '<base>'}, "
                             f"it is at {', '.join(now) or '<base>'} now", hint="run the rollback again")
    result = upgrade.run(ctx, target=target, direction="downgrade")
    result.step = "rollback"
    if result.data["applied"]:
        moved = f"{', '.join(result.data['before']) or '<base>'} -> {', '.join(result.data['after']) or '<base>'}"
        result.summary = f"rolled back {len(result.data['applied'])} revision(s) in {result.seconds:.2f}s: {moved}"
    result.tables["undone"] = result.tables.pop("applied")
    return result


def verify(ctx: RunContext, target: str, done: StepResult | None) -> StepResult:
    result = verify_step.run(ctx, target=target, baseline=getattr(done, "baseline", None))
    result.step = "rollback-verify"
    return result
