"""preflight: can this deployment start? Server, connection, other sessions, disk.

Checked before anything changes: the server answers and its version; what the target's
role can do there (the database is not read-only, the ``search_path`` schemas exist, the role
can create in the schemas the migrations write to: the first one of the ``search_path``,
where unqualified tables go, and any named in ``[swrun] schemas``); sessions holding
locks; transactions open longer than a threshold (they would block DDL); free disk in
the backup directory against the database's size. And the traffic now (sessions, and
transactions per second over a short sample), for the checklist's "schedule during a
low-traffic period": the rehearsal sets each revision's lock hold next to it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

import sqlalchemy as sa

from .. import activity, sql as sqltext
from ..config import RunContext
from ..database import connect, server_facts
from ..result import StepResult, Timer


RECORD_ROOM = 4 << 20  # kept for a deploy's record: a few hundred KB (6 MB for 500 revisions)


def _existing(directory: Path) -> Path:
    return directory if directory.exists() else next((p for p in directory.resolve().parents if p.exists()), Path("/"))


def _disk_checks(backup_dir: Path, reports_dir: Path | None, database_bytes: int) -> list[dict]:
    """Room for the backup (the database's size) and for the record (RECORD_ROOM); when both are
    on one filesystem, one check for the sum."""
    backup_at = _existing(backup_dir)
    reports_at = _existing(reports_dir) if reports_dir is not None else None
    shared = reports_at is not None and reports_at.stat().st_dev == backup_at.stat().st_dev
    free = shutil.disk_usage(backup_at).free
    need = database_bytes + (RECORD_ROOM if shared else 0)
    checks = [{"check": "disk for backup", "result": "pass" if free > need else "failed",
               "detail": f"{free / 2**30:.1f} GiB free in {backup_at}, database is {database_bytes / 2**20:.1f} MiB"}]
    if reports_at is not None and not shared:
        free = shutil.disk_usage(reports_at).free
        checks.append({"check": "disk for record", "result": "pass" if free > RECORD_ROOM else "failed",
                       "detail": f"{free / 2**20:.1f} MiB free in {reports_at}, a record needs up to {RECORD_ROOM / 2**20:.0f} MiB"})
    return checks


_ROLE = ("select current_user as role, r.rolsuper as superuser, current_schema() as creation_schema, "
         "current_setting('search_path') as search_path, current_schemas(false) as existing, "
         "current_setting('default_transaction_read_only') as default_read_only, "
         "current_setting('transaction_read_only') as read_only, "
         "current_setting('statement_timeout') as statement_timeout, current_setting('lock_timeout') as lock_timeout "
         "from pg_roles r where r.rolname = current_user")


def _search_path(setting: str) -> list[str]:
    """The schema names of a search_path setting as PostgreSQL reads them: quoted kept as written,
    bare folded to lower case; ``$user`` stays ``$user``."""
    names, word, quoted, was_quoted = [], "", False, False
    for ch in setting + ",":
        if ch == '"':
            quoted, was_quoted = not quoted, True
        elif ch == "," and not quoted:
            names.append(word.strip() if was_quoted else word.strip().lower())
            word, was_quoted = "", False
        else:
            word += ch
    return [n for n in names if n]


def role_facts(conn) -> dict:
    """What the connected role is and may do: read by the preflight, and applied on the rehearsal's copy."""
    facts = dict(conn.exec_driver_sql(_ROLE).mappings().one())
    facts["existing"] = list(facts["existing"] or [])
    return facts


def _rights_checks(conn, role: dict, schemas: list[str]) -> list[dict]:
    """The database takes writes, the search_path names schemas that exist, the role can create where the migrations write."""
    checks = []
    read_only = "on" in (role["default_read_only"], role["read_only"])
    checks.append({"check": "writable", "result": "failed" if read_only else "pass",
                   "detail": (f"the database is read-only for {role['role']} (default_transaction_read_only = on): no migration can "
                              f"commit; fix: ALTER ROLE {role['role']} SET default_transaction_read_only = off (or deploy to the primary)"
                              if read_only else "default_transaction_read_only is off")})
    named = [n for n in _search_path(role["search_path"]) if n not in ("$user", "pg_catalog", "pg_temp")]
    missing = [n for n in named if n not in role["existing"]]
    checks.append({"check": "search_path", "result": "failed" if missing or not role["creation_schema"] else "pass",
                   "detail": (f"search_path {role['search_path']!r} names schema(s) that do not exist: {', '.join(missing)}; "
                              "unqualified tables would go elsewhere. Fix: CREATE SCHEMA them or correct the role's search_path"
                              if missing else
                              f"search_path {role['search_path']!r} names no schema that exists: unqualified tables have nowhere to go"
                              if not role["creation_schema"] else
                              f"{role['search_path']!r}: unqualified tables go to {role['creation_schema']}")})
    wanted = [s for s in dict.fromkeys([role["creation_schema"], *schemas]) if s]
    if not wanted:
        return checks
    rows = conn.execute(sa.text(
        "select s.name, n.oid is not null as present, "
        "n.oid is not null and has_schema_privilege(n.oid, 'CREATE') as can_create, "
        "n.oid is not null and has_schema_privilege(n.oid, 'USAGE') as can_use "
        "from unnest(cast(:names as text[])) as s(name) left join pg_namespace n on n.nspname = s.name"),
        {"names": wanted}).mappings().all()
    refused = [r for r in rows if not (r["present"] and r["can_create"] and r["can_use"])]
    checks.append({"check": "rights", "result": "failed" if refused else "pass",
                   "detail": "; ".join(
                       (f"role {role['role']} cannot create in schema {r['name']}" if r["present"] else f"schema {r['name']} does not exist")
                       for r in refused)
                   + (f": the migrations' CREATE statements would fail there. Fix: GRANT USAGE, CREATE ON SCHEMA "
                      f"{', '.join(sqltext.quote_ident(r['name']) for r in refused if r['present']) or '...'} TO "
                      f"{sqltext.quote_ident(role['role'])} (as the schema's owner), or deploy as the role that owns them"
                      if refused else "")
                   if refused else f"{role['role']}{' (superuser)' if role['superuser'] else ''} can create in "
                                   f"{', '.join(wanted)}"})
    return checks


def run(ctx: RunContext, backup_dir: Path | None = None, activity_seconds: float = 1.0,
        reports_dir: Path | str | None = None) -> StepResult:
    checks: list[dict] = []
    with Timer() as t:
        with connect(ctx.engine) as conn:
            facts = server_facts(conn)
            long_tx = conn.exec_driver_sql(
                "select pid, usename, state, now() - xact_start as age, left(query, 80) as query "
                "from pg_stat_activity where xact_start is not null and pid <> pg_backend_pid() "
                f"and now() - xact_start > interval '{float(ctx.long_transaction_s)} seconds' order by age desc"
            ).mappings().all()
            lock_holders = conn.exec_driver_sql(
                "select count(distinct l.pid) from pg_locks l join pg_stat_activity a using (pid) "
                "where l.granted and l.locktype = 'relation' and a.datname = current_database() and l.pid <> pg_backend_pid()"
            ).scalar()
            sessions = conn.exec_driver_sql(
                "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()"
            ).scalar()
            role = role_facts(conn)
            named = _schemas_named(ctx)
            rights = _rights_checks(conn, role, named)
        checks.append({"check": "connection", "result": "pass", "detail": f"{ctx.redacted_url} as {facts['user']}"})
        checks.append({"check": "server", "result": "pass" if not facts["in_recovery"] else "failed",
                       "detail": f"PostgreSQL {facts['version']}" + (" (read-only standby)" if facts["in_recovery"] else "")})
        checks += rights
        checks.append({"check": "other sessions", "result": "pass", "detail": f"{sessions} session(s), {lock_holders} holding table locks"})
        traffic = activity.current(ctx.engine, activity_seconds)
        checks.append({"check": "activity", "result": "pass", "detail": activity.describe(traffic)})
        checks.append({"check": "long transactions", "result": "pass" if not long_tx else "warning",
                       "detail": "none" if not long_tx else "; ".join(f"pid {r['pid']} ({r['usename']}) open {r['age']}" for r in long_tx)})
        checks += _disk_checks(Path(backup_dir or ctx.backup_dir), Path(reports_dir) if reports_dir else None,
                               int(facts["size_bytes"]))
    failed = [c for c in checks if c["result"] == "failed"]
    warned = [c for c in checks if c["result"] == "warning"]
    result = StepResult("preflight", outcome="failed" if failed else ("warning" if warned else "ok"), seconds=t.seconds)
    result.data = {"server": {k: facts[k] for k in ("version", "version_num", "database", "user", "size_bytes")},
                   "identity": ctx.identity.as_dict(), "checks": checks, "activity": traffic,
                   "role": role}
    result.tables["checks"] = pd.DataFrame(checks, columns=["check", "result", "detail"])
    result.summary = f"PostgreSQL {facts['version']} at {ctx.identity}; " + (
        f"blocked: {', '.join(c['check'] for c in failed)}" if failed else f"{len(checks)} checks, {len(warned)} warning(s)")
    if failed:
        result.error = "; ".join(f"{c['check']}: {c['detail']}" for c in failed)
    return result


def _schemas_named(ctx: RunContext) -> list[str]:
    """``[swrun] schemas`` from the ini alone: a chain that does not load (a deleted file) is the status
    and guards steps' to report, under the guide's rule, not a reason for preflight to fail."""
    from ..errors import ProjectError
    from ..migrations import Project

    try:
        text = Project.locate(ctx.project_path).option("schemas") or ""
    except ProjectError:
        return []
    return [s.strip() for s in text.replace(",", " ").split() if s.strip()]
