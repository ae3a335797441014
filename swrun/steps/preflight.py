"""preflight: can this deployment start? Server, connection, other sessions, disk.

Checked before anything changes: the server answers and its version; sessions holding
locks; transactions open longer than a threshold (they would block DDL); free disk in
the backup directory against the database's size. And the traffic now (sessions, and
transactions per second over a short sample), for the checklist's "schedule during a
low-traffic period": the rehearsal sets each revision's lock hold next to it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from .. import activity
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
        checks.append({"check": "connection", "result": "pass", "detail": f"{ctx.redacted_url} as {facts['user']}"})
        checks.append({"check": "server", "result": "pass" if not facts["in_recovery"] else "failed",
                       "detail": f"PostgreSQL {facts['version']}" + (" (read-only standby)" if facts["in_recovery"] else "")})
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
                   "identity": ctx.identity.as_dict(), "checks": checks, "activity": traffic}
    result.tables["checks"] = pd.DataFrame(checks, columns=["check", "result", "detail"])
    result.summary = f"PostgreSQL {facts['version']} at {ctx.identity}; " + (
        f"blocked: {', '.join(c['check'] for c in failed)}" if failed else f"{len(checks)} checks, {len(warned)} warning(s)")
    if failed:
        result.error = "; ".join(f"{c['check']}: {c['detail']}" for c in failed)
    return result
