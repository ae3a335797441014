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

import re

import pandas as pd

from ..config import RunContext
from ..database import connect
from ..errors import StateError, SwrunError, UsageError
from ..guards import lint
from ..migrations import Project
from ..steps import upgrade, verify as verify_step
from ..result import StepResult, Timer


_RELATIVE = re.compile(r"^(?:[^@\s]+@)?-\d+$")


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
    if to and _RELATIVE.match(to):  # "-1", "expand@-1": Alembic plans these from the current heads, per branch
        try:
            project.plan(current, to, "downgrade")
        except StateError as exc:
            raise UsageError(f"cannot roll back to {to!r}: {exc.args[0]}") from None
        return to
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


def downgrade_sql(project: Project, url, current: tuple[str, ...], target: str) -> tuple[dict[str, str], list[str]]:
    """The SQL each revision's downgrade() would run, rendered offline (``alembic downgrade --sql current:target``),
    and a note per revision that cannot render offline (it still runs online)."""
    code, notes = {}, []
    for a in project.offline_sql(url, current, target, direction="downgrade"):
        if getattr(a, "offline_error", None):
            notes.append(f"{a.revision}'s downgrade has no offline SQL ({a.where}): {a.offline_error}")
        else:
            code[f"{a.revision} downgrade ({project.description(a.revision)})"] = a.sql.strip()
    return code, notes


_REMOVES = {"drop-table": "drops the table", "drop-column": "drops the column (rows now: its non-null values)",
            "delete": "deletes rows (rows now: the whole table)", "truncate": "empties the table (rows now: the whole table)"}


def data_at_risk(conn, sql_texts: list[str]) -> list[dict]:
    """Tables dropped, columns dropped and tables deleted from (or truncated) by the downgrade SQL, with what
    they hold now; the SQL read by PostgreSQL's own parser (swrun.sql), names quoted before they reach a query."""
    from .. import sql

    rows: list[dict] = []
    seen: set[tuple[str, str]] = set()

    def count(query: str) -> int | None:
        try:
            with conn.begin_nested():
                return int(conn.exec_driver_sql(query).scalar())
        except Exception:  # the object is not there (yet): nothing of it to lose
            return None

    for action in (a for text in sql_texts for st in sql.statements(text) for a in st.actions if a.op in _REMOVES):
        table = action.table
        shown = str(table) if table.schema else f"public.{table.name}"
        if action.op == "drop-column":
            if not action.name:
                continue
            key, query = f"{shown}.{action.name}", f"select count({sql.quote_ident(action.name)}) from {table.sql}"
        else:
            key, query = shown, f"select count(*) from {table.sql}"
        if (action.op, key) in seen:
            continue
        seen.add((action.op, key))
        rows.append({"object": key, "what the downgrade does": _REMOVES[action.op], "rows now": count(query)})
    return [r for r in rows if r["rows now"] is not None]


def _heads_after(project: Project, current: tuple[str, ...], target: str) -> list[str]:
    """The database's heads once Alembic's downgrade plan to ``target`` has run."""
    heads = list(current)
    for step in project.plan(current, target, "downgrade"):
        heads = [h for h in heads if h not in step.from_revisions] + [r for r in step.to_revisions if r not in heads]
    return heads


def plan(ctx: RunContext, *, to: str = "", steps: int = 0) -> StepResult:
    project = ctx.project
    with Timer() as t:
        current = project.current(ctx.url)
        project.check_current(current)  # a revision no file defines: StateError (swrun doctor explains it)
        target = resolve_target(project, current, to=to, steps=steps)
        undo = project.to_downgrade(current, target)  # Alembic's plan: a branch's rollback undoes only that branch
        after = _heads_after(project, current, target)
        notes: list[str] = []
        try:
            code, notes = downgrade_sql(project, ctx.url, current, target) if undo else ({}, [])
        except StateError:
            raise  # env.py connected elsewhere: nothing may run
        except SwrunError as exc:  # a downgrade that cannot render offline still runs online
            code = {}
            notes.append(f"the downgrade SQL could not be rendered offline: {exc.line()[:300]}")
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
    result.data = {"current": list(current), "target": target, "after": after, "undo": undo, "data_at_risk": risk,
                   "notes": notes}
    result.tables["to undo (newest first)"] = pd.DataFrame(rows, columns=["revision", "description", "file", "downgrade"])
    result.tables["data the downgrade removes"] = pd.DataFrame(risk, columns=["object", "what the downgrade does", "rows now"])
    result.code = code
    where = ", ".join(current)
    if not undo:
        result.summary = f"nothing to roll back: the database is at {where}"
    else:
        result.summary = f"roll back {len(undo)} revision(s): {where} -> {', '.join(after) or '<base>'}"
        if losing:
            result.summary += "; data removed: " + ", ".join(f"{r['object']} ({r['rows now']})" for r in losing)
    if notes:
        result.summary += "; " + "; ".join(notes)
    return result


def run(ctx: RunContext, target: str, expected_current: list[str] | None = None) -> StepResult:
    """The downgrade to ``target`` under swrun's lock; the ledger marks the undone revisions. Its lock
    waits are short and retried as the deploy's are (``lock_retries``, ``lock_retry_budget``: swrun/lock_retry.py)."""
    if expected_current is not None:
        now = list(ctx.project.current(ctx.url))
        if set(now) != set(expected_current):
            raise StateError(f"the database moved since the plan: it was at {', '.join(expected_current) or '<base>'}, "
                             f"it is at {', '.join(now) or '<base>'} now", hint="run the rollback again")
    result = upgrade.run(ctx, target=target, direction="downgrade")
    result.step = "rollback"
    if result.data["applied"]:
        moved = f"{', '.join(result.data['before']) or '<base>'} -> {', '.join(result.data['after']) or '<base>'}"
        result.summary = (f"rolled back {len(result.data['applied'])} revision(s) in {result.seconds:.2f}s: {moved}"
                          + upgrade.attempts_summary(result.data["applied"]).replace(" applied after ", " undone after "))
    result.tables["undone"] = result.tables.pop("applied")
    return result


def verify(ctx: RunContext, target: str, done: StepResult | None, expected: list[str] | None = None) -> StepResult:
    """``expected``: the plan's heads after the rollback (a branch's rollback keeps the other branch's head)."""
    wanted = tuple(expected) if expected is not None else target
    result = verify_step.run(ctx, target=wanted, baseline=getattr(done, "baseline", None))
    result.step = "rollback-verify"
    return result
