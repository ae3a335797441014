"""Stamp: the guide's ``alembic stamp``, done only when the schema is known to match.

The guide: "WARNING: Only use this if you're CERTAIN the schema matches the migration."
:func:`check` makes certain: it builds a scratch database at the revision from the
project's migrations, snapshots it and compares it with the live schema (the version
table left out); the differences are a table. :func:`run` stamps (under swrun's lock, after
comparing once more) only if there were none, or if the operator overrode the check, which
the record then says.

Refused before anything is built: a revision no file defines, and a revision of another
branch (one that is not between base and the head(s) of the branch the database is on).
"""

from __future__ import annotations

import sqlalchemy as sa

from ..config import RunContext
from ..database import connect, migration_lock
from ..errors import ProjectError, StateError, SwrunError, UsageError
from ..guards import ledger
from ..migrations import Project, _alembic_errors
from ..result import StepResult, Timer
from . import scratch


def branch_of(project: Project, current: tuple[str, ...]) -> tuple[list[str], set[str]]:
    """The heads of the database's branch, and every revision between base and them.

    The database's branch: the heads that have one of its (known) revisions below them;
    every head when it is at base or at no revision a file defines.
    """
    known = {r for r in current if r in project.revisions}
    heads = [h for h in project.heads if project.ancestors([h]) & known] if known else list(project.heads)
    return heads, project.ancestors(heads)


def _current(ctx: RunContext, project: Project) -> tuple[str, ...]:
    """The database's revision(s) through env.py, as Alembic reads them (a custom version table too;
    a revision no file defines is read all the same); straight from alembic_version only when env.py
    itself fails (stamping is for databases Alembic has trouble with). swrun's check of where env.py
    connects is never bypassed: its StateError passes through."""
    try:
        return project.current(ctx.url)
    except ProjectError:
        with connect(ctx.engine) as conn:
            return ledger.database_revisions(conn)


def _stamp(ctx: RunContext, project: Project, before: tuple[str, ...], target: list[str]) -> None:
    """``alembic stamp --purge``, through swrun's env.py runner (where env.py connects is checked,
    url_env routed). The rows of revisions no file defines are deleted first, on swrun's own
    connection, from the version table env.py configured (Alembic cannot step from them)."""
    from .. import runtime, sql

    unknown = [r for r in before if r not in project.revisions]
    if unknown:
        name, schema = project.version_table
        table = ".".join(sql.quote_ident(part) for part in (schema, name) if part)
        with connect(ctx.engine) as conn:
            conn.execute(sa.text(f"delete from {table} where version_num = any(:gone)"), {"gone": unknown})
            conn.commit()
    known = tuple(r for r in before if r in project.revisions)

    def do_stamp(rev, context):
        return project.script._stamp_revs(tuple(target), known)

    try:
        runtime.run_env(project, ctx.url, do_stamp, destination_rev=tuple(target) or None)
    except SwrunError:
        raise
    except _alembic_errors() as exc:
        raise StateError(f"cannot stamp {', '.join(target) or 'base'}: {exc}") from None
    except Exception as exc:
        raise runtime.env_error(project, exc, ctx.url, "stamping") from None


def check(ctx: RunContext, revision: str, *, where: str = "embedded", override: bool = False) -> StepResult:
    if not (revision or "").strip():
        raise UsageError("which revision to stamp? (swrun stamp REV)")
    project = ctx.project
    with Timer() as t:
        wanted = project.resolve(revision)  # UsageError for a revision no file defines
        current = _current(ctx, project)
        heads, allowed = branch_of(project, current)
        outside = [w for w in wanted if w not in allowed]
        if outside:
            raise UsageError(
                f"revision {outside[0]} is on another branch: it is not between base and the database's head(s) "
                f"{', '.join(heads)} (the database is at {', '.join(current) or '<base>'})",
                hint="stamp a revision of the database's own branch")
        at = ", ".join(wanted) or "<base>"
        with scratch.database(ctx, where, "stamp") as url:
            built = scratch.build(project, url, wanted)
            expected = scratch.snapshot(url, built.version_table)
        live = scratch.live_snapshot(ctx, built.version_table)
        differences = scratch.compare(expected, live, at=at)
    matched = not differences
    outcome = "ok" if matched else ("warning" if override else "failed")
    result = StepResult("stamp-check", outcome=outcome, seconds=t.seconds)
    result.data = {"revision": revision, "target": list(wanted), "current": list(current), "branch_heads": heads,
                   "scratch": where, "version_table": built.version_table, "matched": matched, "differences": differences, "override": bool(override)}
    result.expected = expected  # not part of as_dict: the stamp step compares against it again
    result.tables[f"schema differences: migrations at {at} vs the live database"] = scratch.frame(differences)
    if matched:
        result.summary = f"the live schema matches revision {at} (built from the migrations in a scratch database on the {where} server)"
    else:
        first = differences[0]
        line = f"the live schema differs from revision {at}'s in {len(differences)} object(s) (first: {first['kind']} {first['object']}: {first['difference']})"
        if override:
            result.summary = f"{line}; override: stamping regardless"
        else:
            result.summary = f"{line}: not stamped"
            result.error = (f"{line}: not stamped (make the schema match, or stamp the revision it does match: swrun doctor finds it; "
                            "to stamp regardless: --override, which the record keeps)")
    return result


def run(ctx: RunContext, checked: StepResult, *, override: bool = False) -> StepResult:
    """Stamp the revision the check approved; compared again under the lock, so nothing changed in between."""
    project = ctx.project
    target = list(checked.data["target"])
    with Timer() as t:
        with migration_lock(ctx.engine, wait_s=ctx.lock_wait_s):
            table = checked.data.get("version_table") or scratch.VERSION_TABLE
            now = scratch.compare(checked.expected, scratch.live_snapshot(ctx, table), at=", ".join(target) or "<base>")
            if now and not override:
                raise StateError(f"the schema changed since the check: {len(now)} difference(s) now (first: {now[0]['object']})",
                                 hint="run the stamp again")
            before = _current(ctx, project)
            if set(before) != set(target) or len(before) != len(target):
                _stamp(ctx, project, before, target)
            after = _current(ctx, project)
        kept = ledger.record(ctx.engine, project, applied=[], current=after, run_id=ctx.run_id)
        was = {r for r in before if r in project.revisions}
        undone = project.ancestors(was) - project.ancestors(after) if was else set()
        kept["downgraded"] = ledger.mark_downgraded(ctx.engine, undone, ctx.run_id)
    result = StepResult("stamp", seconds=t.seconds, outcome="warning" if now else "ok")
    result.data = {"before": list(before), "after": list(after), "override_used": bool(now) and override,
                   "differences": len(now), "ledger": kept}
    moved = f"{', '.join(before) or '<base>'} -> {', '.join(after) or '<base>'}"
    if set(before) == set(after):
        result.summary = f"already at {', '.join(after) or '<base>'}: nothing to stamp"
    elif now:
        result.summary = f"stamped {moved} despite {len(now)} schema difference(s): override used (the record keeps it)"
    else:
        result.summary = f"stamped {moved}; the schema matched"
    return result
