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


def run(ctx: RunContext, backup_dir: Path | None = None, activity_seconds: float = 1.0) -> StepResult:
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
        directory = Path(backup_dir or ctx.backup_dir)
        probe = directory if directory.exists() else next((p for p in directory.resolve().parents if p.exists()), Path("/"))
        free = shutil.disk_usage(probe).free
        need = int(facts["size_bytes"])
        checks.append({"check": "disk for backup", "result": "pass" if free > need else "failed",
                       "detail": f"{free / 2**30:.1f} GiB free in {probe}, database is {need / 2**20:.1f} MiB"})
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
