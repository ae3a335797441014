"""preview: the SQL the pending range would run, per revision, written to a file.

The guide's "alembic upgrade head --sql > migration.sql", but for exactly the pending
range (current:target), not everything from base. squawk reviews that SQL, one file per
revision; its findings are shown here and weighed by the guards step.

With ``sql_file``, also the same SQL as a script for a DBA to apply by hand with
``psql -v ON_ERROR_STOP=1 -f``: ``lock_timeout`` and ``statement_timeout`` set first, a
check that the database is at the revision the script starts from, then one transaction
per revision, except the statements Alembic runs in an autocommit block (an enum's
``ADD VALUE``), which PostgreSQL must run outside a transaction block: they stand between
the revision's transactions. Its sha256 goes into the step's data, so the record keeps it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd

from .. import records
from ..config import RunContext
from ..guards import count, frame, lint
from ..result import StepResult, Timer


def run(ctx: RunContext, target: str = "head", current: tuple[str, ...] | None = None, out_dir: Path | None = None,
        sql_file: Path | None = None, statement_timeout: str = "0") -> StepResult:
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
        secrets = records.secret_forms(ctx.url)  # env.py or a migration may have written the URL into the SQL
        path.write_text(records.redact(header + "".join(r.sql for r in revisions), secrets)[0])
        rows = [{
            "revision": r.revision,
            "description": r.description,
            "statements": _count_statements(r.sql),
            "sql": r.sql.strip(),
        } for r in revisions]
        # the guide's "ALWAYS review": squawk on exactly this SQL (a missing or failing squawk stops the run)
        reviewed = lint.squawk(revisions, exclude=lint.squawk_exclusions(project), lock_timeout_set=bool(ctx.lock_timeout))
        written = None
        if sql_file is not None:
            script = psql_script(revisions, tuple(current), target, lock_timeout=ctx.lock_timeout or "0",
                                 statement_timeout=statement_timeout, header=header)
            written = write_sql_file(Path(sql_file), records.redact(script, secrets)[0])
    result = StepResult("preview", data={"file": str(path), "revisions": [r["revision"] for r in rows],
                                         "statements": sum(r["statements"] for r in rows),
                                         "squawk": [f.as_dict() for f in reviewed]})
    if written is not None:
        result.data["sql_file"] = written
    result.tables["revisions"] = pd.DataFrame(rows, columns=["revision", "description", "statements"])
    if reviewed:
        result.tables["squawk"] = frame(reviewed).drop(columns=["source", "file", "status"])
    result.code = {f"{r['revision']} {r['description']}": r["sql"] for r in rows}
    result.summary = (f"{len(rows)} revision(s), {result.data['statements']} statement(s) -> {path}; squawk: "
                      + (f"{len(reviewed)} finding(s) ({count(reviewed)})" if reviewed else "no finding")) if rows \
        else "nothing pending; no SQL to run"
    if written is not None:
        result.summary += f"; for psql: {written['file']} (sha256 {written['sha256'][:12]}...)"
    result.seconds = t.seconds
    return result


# -- the script for psql ------------------------------------------------------------------------

_VERSION_TABLE = re.compile(r"(?:INSERT INTO\s+([\w.\"]+)\s*\(version_num\)|UPDATE\s+([\w.\"]+)\s+SET version_num)", re.I)


def _has_sql(text: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in text.splitlines())


def blocks(sql: str) -> list[tuple[bool, str]]:
    """One revision's offline SQL as (in a transaction?, text) parts, split at its BEGIN; / COMMIT; lines.

    Alembic renders an autocommit block offline as ``COMMIT;`` ... ``BEGIN;``: what stands
    between them must run outside a transaction block. Comment-only parts join the next part.
    """
    parts: list[tuple[bool, list[str]]] = []
    inside, lines = False, []
    for line in sql.splitlines():
        word = line.strip().upper()
        if word in ("BEGIN;", "COMMIT;"):
            parts.append((inside, lines))
            inside, lines = word == "BEGIN;", []
        else:
            lines.append(line)
    parts.append((inside, lines))
    out: list[tuple[bool, str]] = []
    carried: list[str] = []
    for in_tx, part in parts:
        text = "\n".join(carried + part).strip("\n")
        if _has_sql(text):
            out.append((in_tx, text))
            carried = []
        elif text.strip():
            carried = [text]
    if carried and out:
        out[-1] = (out[-1][0], out[-1][1] + "\n" + "\n".join(carried))
    return out


def psql_script(revisions, current: tuple[str, ...], target: str, *, lock_timeout: str, statement_timeout: str,
                header: str = "") -> str:
    """The pending range as a psql script: settings, a start check, one transaction per revision."""
    start = current[0] if current else ""
    found = next((m.group(1) or m.group(2) for r in revisions for m in [_VERSION_TABLE.search(r.sql)] if m), "alembic_version")
    version_table = found.replace("'", "''")
    quote = lambda text: str(text).replace("'", "''")  # noqa: E731
    out = [header.rstrip("\n"),
           "-- for psql: psql -v ON_ERROR_STOP=1 -f THIS_FILE (it stops at the first error)",
           f"-- {len(revisions)} revision(s) from {start or '<base>'} to {target}; each revision is one transaction, except",
           "-- statements PostgreSQL cannot run in a transaction block (ALTER TYPE ... ADD VALUE), which stand between them",
           "",
           "\\set ON_ERROR_STOP on",
           f"SET lock_timeout = '{quote(lock_timeout)}';",
           f"SET statement_timeout = '{quote(statement_timeout)}';",
           "",
           "-- stop unless the database is at the revision this file starts from",
           "DO $swrun$",
           "DECLARE at text;",
           "BEGIN",
           f"  IF to_regclass('{version_table}') IS NOT NULL THEN",
           f"    EXECUTE 'SELECT string_agg(version_num, '','' ORDER BY version_num) FROM {version_table}' INTO at;",
           "  END IF;",
           f"  IF coalesce(at, '') <> '{quote(start)}' THEN",
           f"    RAISE EXCEPTION 'swrun: this file upgrades a database at %, this one is at %', '{quote(start or '<base>')}', coalesce(at, '<base>');",
           "  END IF;",
           "END",
           "$swrun$;",
           ""]
    for rev in revisions:
        parent = ", ".join(rev.down_revision) or "<base>"
        out.append(f"-- ==== {rev.revision}: {rev.description} ({parent} -> {rev.revision})")
        for in_tx, text in blocks(rev.sql):
            if in_tx:
                out += ["BEGIN;", "", text, "", "COMMIT;", ""]
            else:
                out += ["-- outside a transaction block: PostgreSQL does not run this inside one", "", text, ""]
    if not revisions:
        out.append("-- nothing pending")
    return "\n".join(out) + "\n"


def write_sql_file(path: Path, text: str) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    path.write_bytes(data)
    return {"file": str(path), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _count_statements(sql: str) -> int:
    return sum(1 for line in sql.splitlines() if line.rstrip().endswith(";") and not line.lstrip().startswith("--"))
