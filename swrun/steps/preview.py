"""preview: the SQL the pending range would run, per revision, written to a file.

The guide's "alembic upgrade head --sql > migration.sql", but for exactly the pending
range (current:target), not everything from base, and best-effort per revision: a revision
that cannot render offline (a data migration that reads query results or binds an ORM
Session to Alembic's connection, a literal with no renderer) is shown as "no offline SQL"
with the reason and its file:line, the others still render, and the deploy goes on: the
rehearsal records what that revision really executes on the copy. squawk reviews the SQL
that did render, one file per revision; its findings are shown here and weighed by the
guards step, and ``data["no_offline_sql"]`` tells the gates which revisions it could not see.

With ``sql_file``, also the same SQL as a script for a DBA to apply by hand with
``psql -v ON_ERROR_STOP=1 -f``: ``lock_timeout`` and ``statement_timeout`` set first, a
check that the database is at the revision the script starts from, then one transaction
per revision, except the statements Alembic runs in an autocommit block (an enum's
``ADD VALUE``), which PostgreSQL must run outside a transaction block: they stand between
the revision's transactions. Its sha256 goes into the step's data, so the record keeps it.
With ``lock_retries`` (the run's, 10 by default) each revision's transaction holds one ``DO``
block that runs its statements and, when PostgreSQL cancels one for ``lock_timeout``, rolls the
block back (its locks go with it), pauses as swrun's own retry does and tries again: the retry
loop of swrun/lock_retry.py for a DBA's psql (docs/lock-retries.md).
A range with a revision that has no offline SQL has no complete script: the file is still
written for review, but it says so at the top and stops there with an error (psql exits 3)
before anything runs; apply that range with ``swrun upgrade`` (or plain ``alembic upgrade``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from .. import records, sql as sqltext
from ..config import RunContext
from ..guards import count, frame, lint
from ..result import StepResult, Timer


def _where(project, where: str | None) -> str:
    """A migration's file:line relative to the project's directory (as its own authors name it)."""
    if not where:
        return ""
    root = Path(project.ini_path).parent
    try:
        return str(Path(where).relative_to(root))
    except ValueError:
        return where


def run(ctx: RunContext, target: str = "head", current: tuple[str, ...] | None = None, out_dir: Path | None = None,
        sql_file: Path | None = None, statement_timeout: str = "0") -> StepResult:
    with Timer() as t:
        project = ctx.project
        if current is None:
            current = project.current(ctx.url)
        revisions = project.offline_sql(ctx.url, tuple(current), target)
        rendered = [r for r in revisions if not getattr(r, "offline_error", None)]
        missing = [{"revision": r.revision, "reason": r.offline_error, "where": _where(project, r.where)}
                   for r in revisions if getattr(r, "offline_error", None)]
        out_dir = Path(out_dir or ctx.backup_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{ctx.run_id}_preview.sql"
        start = current[0] if current else "base"
        header = f"-- swrun preview: {start} -> {target}\n-- database: {ctx.redacted_url}\n-- run: {ctx.run_id}\n"
        secrets = records.secret_forms(ctx.url)  # env.py or a migration may have written the URL into the SQL
        text = header + "".join(r.sql if not r.offline_error else _no_sql_comment(project, r) for r in revisions)
        records.write_atomic(path, records.redact(text, secrets)[0])  # never a truncated file under its name
        rows = [{
            "revision": r.revision,
            "description": r.description,
            "statements": sqltext.count(r.sql) if not r.offline_error else None,
            "offline SQL": "yes" if not r.offline_error else f"no: {r.offline_error} ({_where(project, r.where)})",
            "sql": r.sql.strip(),
        } for r in revisions]
        # the guide's "ALWAYS review": squawk on exactly this SQL (a missing or failing squawk stops the run)
        reviewed = lint.squawk(rendered, exclude=lint.squawk_exclusions(project), lock_timeout_set=bool(ctx.lock_timeout))
        written = None
        if sql_file is not None:
            script = psql_script(revisions, tuple(current), target, lock_timeout=ctx.lock_timeout or "0",
                                 statement_timeout=statement_timeout, header=header, missing=missing,
                                 lock_retries=int(getattr(ctx, "lock_retries", 0) or 0) if ctx.lock_timeout else 0)
            written = write_sql_file(Path(sql_file), records.redact(script, secrets)[0])
            written["complete"] = not missing
    result = StepResult("preview", data={"file": str(path), "revisions": [r["revision"] for r in rows],
                                         "statements": sum(r["statements"] or 0 for r in rows),
                                         "squawk": [f.as_dict() for f in reviewed],
                                         "no_offline_sql": missing})
    if written is not None:
        result.data["sql_file"] = written
    columns = ["revision", "description", "statements"] + (["offline SQL"] if missing else [])
    result.tables["revisions"] = pd.DataFrame(rows, columns=columns)
    if reviewed:
        result.tables["squawk"] = frame(reviewed).drop(columns=["source", "file", "status"])
    result.code = {f"{r['revision']} {r['description']}": r["sql"] for r in rows if r["sql"]}
    result.summary = (f"{len(rows)} revision(s), {result.data['statements']} statement(s) -> {path}; squawk: "
                      + (f"{len(reviewed)} finding(s) ({count(reviewed)})" if reviewed else "no finding")) if rows \
        else "nothing pending; no SQL to run"
    if missing:
        result.outcome = "warning"
        result.summary += ("; no offline SQL for " + ", ".join(f"{m['revision']} ({m['where']}: {m['reason']})" for m in missing)
                           + ": the rehearsal records what it executes")
    if written is not None:
        result.summary += (f"; for psql: {written['file']} (sha256 {written['sha256'][:12]}...)"
                           + ("" if not missing else ", incomplete: it stops before running anything"))
    result.seconds = t.seconds
    return result


def _no_sql_comment(project, rev) -> str:
    return (f"-- ==== {rev.revision}: no offline SQL ({_where(project, rev.where)}): {_one_line(rev.offline_error)}\n"
            "-- (the rehearsal records the statements it executes on the copy)\n\n")


def _one_line(text: str | None) -> str:
    return " ".join(str(text or "").split())


# -- the script for psql ------------------------------------------------------------------------


def blocks(sql: str) -> list[tuple[bool, str]]:
    """One revision's offline SQL as (in a transaction?, text) parts, split at its BEGIN / COMMIT.

    Alembic renders an autocommit block offline as ``COMMIT;`` ... ``BEGIN;``: what stands
    between them must run outside a transaction block. Read by PostgreSQL's own parser.
    """
    return sqltext.transaction_blocks(sql)


def _literal(text) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def retry_block(revision: str, sql: str, *, retries: int, backoff_s: float, backoff_max_s: float, budget_s: float) -> str:
    """One revision's transaction part as a DO block that retries it on a lock timeout.

    The statements run by EXECUTE inside a block with an EXCEPTION clause, which PostgreSQL runs as
    a subtransaction: a lock timeout rolls back everything the block did and releases its locks,
    the pause (equal jitter, as swrun.lock_retry) lets the application's queue drain, and the loop
    tries again. Any other error, or the retries or the budget used up, re-raises: psql stops."""
    texts = [st.text for st in sqltext.statements(sql)]
    tag, n = "swrun_sql", 0
    while any(f"${tag}$" in t for t in texts):
        n += 1
        tag = f"swrun_sql{n}"
    body = "\n".join(f"      EXECUTE ${tag}$\n{t}\n${tag}$;" for t in texts)
    return "\n".join([
        f"-- retried on a lock timeout: up to {retries} more attempt(s), a pause of {backoff_s:g}s doubling up to {backoff_max_s:g}s "
        f"(jittered) between them, {budget_s:g}s at most",
        "DO $swrun$",
        "DECLARE",
        "  attempt int := 1;",
        "  pause float8;",
        "  started timestamptz := clock_timestamp();",
        "BEGIN",
        "  LOOP",
        "    BEGIN",
        body,
        "      EXIT;",
        "    EXCEPTION WHEN lock_not_available THEN",
        f"      IF attempt > {int(retries)} THEN RAISE; END IF;",
        f"      pause := least({backoff_max_s:g}, {backoff_s:g} * 2 ^ (attempt - 1));",
        "      pause := pause / 2 + random() * pause / 2;",
        f"      IF extract(epoch FROM clock_timestamp() - started) + pause > {budget_s:g} THEN RAISE; END IF;",
        f"      RAISE NOTICE 'swrun: % cancelled for a lock timeout on attempt %, next in % s', {_literal(revision)}, attempt, "
        "round(pause::numeric, 2);",
        "      PERFORM pg_sleep(pause);",
        "      attempt := attempt + 1;",
        "    END;",
        "  END LOOP;",
        "END",
        "$swrun$;"])


def psql_script(revisions, current: tuple[str, ...], target: str, *, lock_timeout: str, statement_timeout: str,
                header: str = "", missing: list[dict] | None = None, lock_retries: int = 0,
                backoff_s: float | None = None, backoff_max_s: float | None = None, budget_s: float | None = None) -> str:
    """The pending range as a psql script: settings, a start check, one transaction per revision.

    ``missing``: revisions with no offline SQL; the script then refuses to run (see the module).
    ``lock_retries``: each revision's transaction retries a lock timeout this often (:func:`retry_block`)."""
    from .. import lock_retry

    backoff_s = lock_retry.DEFAULT_BACKOFF_S if backoff_s is None else backoff_s
    backoff_max_s = lock_retry.DEFAULT_BACKOFF_MAX_S if backoff_max_s is None else backoff_max_s
    budget_s = lock_retry.seconds(lock_retry.DEFAULT_BUDGET) if budget_s is None else budget_s
    start = current[0] if current else ""
    found = sqltext.version_table([r.sql for r in revisions if r.sql])
    version_table = found.sql if found else "alembic_version"
    read_versions = f"SELECT string_agg(version_num, ',' ORDER BY version_num) FROM {version_table}"
    out = [header.rstrip("\n"),
           "-- for psql: psql -v ON_ERROR_STOP=1 -f THIS_FILE (it stops at the first error)",
           f"-- {len(revisions)} revision(s) from {start or '<base>'} to {target}; each revision is one transaction, except",
           "-- statements PostgreSQL cannot run in a transaction block (ALTER TYPE ... ADD VALUE), which stand between them",
           "",
           "\\set ON_ERROR_STOP on"]
    if missing:
        names = ", ".join(m["revision"] for m in missing)
        out += ["",
                f"-- INCOMPLETE: {len(missing)} revision(s) have no offline SQL, so this file cannot bring the database to {target}:"]
        out += [f"--   {m['revision']} ({m['where']}): {_one_line(m['reason'])}" for m in missing]
        out += ["-- They run only online (data migrations): apply this range with swrun upgrade or alembic upgrade.",
                "-- The SQL below is for review; the next statement stops psql (exit 3) before anything runs.",
                f"\\echo 'swrun: this script is incomplete: no offline SQL for {names}; nothing was run'",
                "DO $swrun$ BEGIN RAISE EXCEPTION " + _literal(f"swrun: incomplete script: no offline SQL for {names}") + "; END $swrun$;",
                ""]
    out += [f"SET lock_timeout = {_literal(lock_timeout)};",
            f"SET statement_timeout = {_literal(statement_timeout)};",
            "",
            "-- stop unless the database is at the revision this file starts from",
            "DO $swrun$",
            "DECLARE at text;",
            "BEGIN",
            f"  IF to_regclass({_literal(version_table)}) IS NOT NULL THEN",
            f"    EXECUTE {_literal(read_versions)} INTO at;",
            "  END IF;",
            f"  IF coalesce(at, '') <> {_literal(start)} THEN",
            f"    RAISE EXCEPTION 'swrun: this file upgrades a database at %, this one is at %', {_literal(start or '<base>')}, coalesce(at, '<base>');",
            "  END IF;",
            "END",
            "$swrun$;",
            ""]
    for rev in revisions:
        parent = ", ".join(rev.down_revision) or "<base>"
        out.append(f"-- ==== {rev.revision}: {rev.description} ({parent} -> {rev.revision})")
        if getattr(rev, "offline_error", None):
            out += [f"-- NO OFFLINE SQL: {_one_line(rev.offline_error)} ({rev.where})", ""]
            continue
        for in_tx, text in blocks(rev.sql):
            if in_tx and lock_retries > 0:
                out += ["BEGIN;", "", retry_block(rev.revision, text, retries=lock_retries, backoff_s=backoff_s,
                                                  backoff_max_s=backoff_max_s, budget_s=budget_s), "", "COMMIT;", ""]
            elif in_tx:
                out += ["BEGIN;", "", text, "", "COMMIT;", ""]
            else:
                out += ["-- outside a transaction block: PostgreSQL does not run this inside one", "", text, ""]
    if not revisions:
        out.append("-- nothing pending")
    return "\n".join(out) + "\n"


def write_sql_file(path: Path, text: str) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    records.write_atomic(path, text)  # temporary file, fsync, rename
    return {"file": str(path), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
