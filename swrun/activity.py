"""What the target database is doing: sessions, transaction rate, and its error signals.

Read from ``pg_stat_database`` (cumulative counters: commits, rollbacks, deadlocks,
conflicts, and from PostgreSQL 14 the sessions that ended abnormally) and
``pg_stat_activity`` (gauges: sessions, active, idle in transaction, waiting on a lock).

Every read runs on an AUTOCOMMIT connection, so each query sees fresh statistics and the
sampler itself adds no rollback to what it measures. PostgreSQL flushes a backend's
counters when it goes idle (at most once a second) and when it exits, so a short window
counts what other sessions finished in it, give or take that second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the runner reads BASELINE_ENV before its kernel starts: SQLAlchemy stays off that path
    from sqlalchemy.engine import Connection, Engine


def _connect(engine: "Engine"):  # database.connect, imported when first used
    from .database import connect

    return connect(engine)


# pg_stat_database columns that count errors, oldest first; the sessions_* ones are PostgreSQL 14+
ERROR_COUNTERS = ("xact_rollback", "deadlocks", "conflicts", "sessions_abandoned", "sessions_fatal", "sessions_killed")
COUNTERS = ("xact_commit", *ERROR_COUNTERS)


def _autocommit(conn: Connection) -> Connection:
    return conn.execution_options(isolation_level="AUTOCOMMIT")


def counters(conn: Connection) -> dict[str, int]:
    """The database's cumulative counters that this server has (sessions_* from PostgreSQL 14)."""
    row = conn.exec_driver_sql("select * from pg_stat_database where datname = current_database()").mappings().first()
    if row is None:
        return {}
    return {name: int(row[name] or 0) for name in COUNTERS if name in row}


def gauges(conn: Connection) -> dict[str, int]:
    """Sessions on this database now (the sampler's own excluded)."""
    row = conn.exec_driver_sql(
        "select count(*) as sessions, "
        "count(*) filter (where state = 'active') as active, "
        "count(*) filter (where state like 'idle in transaction%%') as idle_in_transaction, "
        "count(*) filter (where wait_event_type = 'Lock') as lock_waits "
        "from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() "
        "and backend_type = 'client backend'").mappings().one()
    return {k: int(v) for k, v in row.items()}


# where the runner leaves the counters it read while the kernel booted (a JSON file)
BASELINE_ENV = "SWRUN_ACTIVITY_BASELINE"


def baseline(engine: Engine) -> dict:
    """The counters now, and when (the system-wide monotonic clock, comparable across processes)."""
    with _connect(engine) as raw:
        return {"counters": counters(_autocommit(raw)), "at": time.monotonic()}


def _given_baseline() -> dict | None:
    import json
    import os

    path = os.environ.get(BASELINE_ENV)
    try:
        given = json.loads(open(path, encoding="utf-8").read()) if path else None
    except (OSError, ValueError):
        return None
    return given if isinstance(given, dict) and given.get("counters") and isinstance(given.get("at"), (int, float)) else None


def current(engine: Engine, seconds: float = 1.0, start: dict | None = None) -> dict:
    """Sessions now and transactions per second (commits and rollbacks) over at least ``seconds``.

    The window starts at ``start`` (a :func:`baseline`), by default the one the runner took
    while the kernel booted: a window nothing of swrun's runs in, which has already lasted a
    second or two by the preflight, so the sample costs no waiting. Without one (a runbook
    opened by hand), or if the statistics were reset since, it samples for ``seconds`` now.
    """
    start = start if start is not None else _given_baseline()
    with _connect(engine) as raw:
        conn = _autocommit(raw)
        if start is None:
            start = {"counters": counters(conn), "at": time.monotonic()}
        time.sleep(max(0.0, seconds - (time.monotonic() - start["at"])))
        last, elapsed = counters(conn), time.monotonic() - start["at"]
        first = start["counters"]
        if any(last.get(k, 0) < v for k, v in first.items()):  # pg_stat_reset() in between
            first, t0 = last, time.monotonic()
            time.sleep(max(0.0, seconds))
            last, elapsed = counters(conn), time.monotonic() - t0
        now = gauges(conn)
    done = (last.get("xact_commit", 0) - first.get("xact_commit", 0)) + (last.get("xact_rollback", 0) - first.get("xact_rollback", 0))
    return {**now, "sample_seconds": round(elapsed, 3), "transactions": done,
            "tps": round(done / elapsed, 1) if elapsed > 0 else 0.0}


def describe(act: dict) -> str:
    return (f"{act['sessions']} session(s) ({act['active']} active, {act['idle_in_transaction']} idle in transaction); "
            f"{act['tps']:g} transactions/s over {act['sample_seconds']:.1f}s")


@dataclass
class Window:
    """The error signals of one window: counter deltas and the lock waits seen while sampling."""

    seconds: float
    deltas: dict[str, int] = field(default_factory=dict)
    lock_waits_max: int = 0  # most sessions waiting on a lock at one sample
    lock_wait_samples: int = 0  # samples at which at least one session waited on a lock
    samples: int = 0
    started: float = 0.0  # time.time()

    def signals(self) -> dict[str, int]:
        found = {name: self.deltas[name] for name in ERROR_COUNTERS if name in self.deltas}
        found["lock_waits"] = self.lock_waits_max
        return found

    def as_dict(self) -> dict:
        return {"seconds": round(self.seconds, 3), "deltas": self.deltas, "lock_waits_max": self.lock_waits_max,
                "lock_wait_samples": self.lock_wait_samples, "samples": self.samples, "started": self.started}


def window(engine: Engine, seconds: float, interval: float = 0.25) -> Window:
    """Sample the database for ``seconds``: counters at both ends, lock waits every ``interval``."""
    with _connect(engine) as raw:
        conn = _autocommit(raw)
        started = time.time()
        first, t0 = counters(conn), time.perf_counter()
        result = Window(seconds=0.0, started=started)
        deadline = t0 + max(0.0, seconds)
        while True:
            waiting = gauges(conn)["lock_waits"]
            result.samples += 1
            result.lock_waits_max = max(result.lock_waits_max, waiting)
            result.lock_wait_samples += 1 if waiting else 0
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            time.sleep(min(interval, left))
        last = counters(conn)
        result.seconds = time.perf_counter() - t0
    result.deltas = {name: last[name] - first.get(name, 0) for name in last}
    return result
