"""Short lock waits, retried: what ``Project.apply`` does when PostgreSQL cancels a revision for a lock timeout.

A DDL statement that waits for its lock makes every query that arrives after it wait too (the
lock queue is first come, first served). So each attempt waits at most ``lock_timeout`` (2 s
by default); when PostgreSQL cancels it (SQLSTATE 55P03, ``lock_not_available``) the revision's
transaction is rolled back whole, the application's queries run again, and after a growing,
jittered pause the revision is tried again, from the database's current revision (earlier
revisions stay committed: one transaction per revision). ``lock_retries`` retries per revision
and ``lock_retry_budget`` (time lost to timed-out waits and pauses, the whole run) bound it; then
the run fails with the revision and the session that blocked it named.

Pieces, each small:

* :class:`RetryPolicy` - the numbers, and the pause before attempt *n*;
* :func:`is_lock_timeout` - a lock timeout, through any driver's exception (psycopg2, psycopg, asyncpg);
* :class:`BlockerWatcher` - a thread on swrun's own connection that reads ``pg_blocking_pids`` while
  the migrating backend waits: after the cancel the wait is over and the blocker can no longer be asked for;
* :func:`autocommit_leftovers` - what an attempt committed outside its transaction (an autocommit
  block), and whether running the revision again is safe; :func:`drop_invalid_index` removes the
  ``INVALID`` index a cancelled ``CREATE INDEX CONCURRENTLY`` leaves.
"""

from __future__ import annotations

import contextlib
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

LOCK_NOT_AVAILABLE = "55P03"
# the anchors: GitLab's with_lock_retries, pgroll (500 ms + backoff), strong_migrations; see docs/lock-retries.md
DEFAULT_LOCK_TIMEOUT = "2s"
DEFAULT_RETRIES = 10
DEFAULT_BUDGET = "5min"
DEFAULT_BACKOFF_S = 0.5
DEFAULT_BACKOFF_MAX_S = 30.0

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*")
_UNIT_S = {"us": 1e-6, "ms": 1e-3, None: 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def seconds(duration: str | int | float | None) -> float:
    """A PostgreSQL duration (``2s``, ``500ms``, ``5min``; a bare number is milliseconds, as
    PostgreSQL reads it) in seconds; None or ``0``: 0."""
    if duration is None:
        return 0.0
    if isinstance(duration, (int, float)) and not isinstance(duration, bool):
        return float(duration) / 1000.0
    match = _DURATION.fullmatch(str(duration))
    if not match:
        from .errors import UsageError

        raise UsageError(f"invalid duration {str(duration)[:40]!r}: a PostgreSQL duration such as 2s, 500ms or 5min")
    return float(match[1]) * _UNIT_S[match[2]]


@dataclass(frozen=True)
class RetryPolicy:
    """How a revision's lock timeouts are retried.

    ``retries``: attempts after the first, per revision (0: none); ``budget_s``: the whole run's
    time lost to timed-out waits and the pauses between attempts (an attempt whose wait could
    not end inside it is not started); the pause before retry *n* is drawn from
    ``[d/2, d]`` with ``d = min(backoff_max_s, backoff_s * 2**(n-1))``: "equal jitter", so two
    runs do not retry in step, and the application's queue behind the cancelled wait always has
    at least ``d/2`` to drain (full jitter may retry at once and stall it again)."""

    retries: int = DEFAULT_RETRIES
    budget_s: float = seconds(DEFAULT_BUDGET)
    backoff_s: float = DEFAULT_BACKOFF_S
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S

    @classmethod
    def of(cls, retries: int | None = None, budget: str | None = None, **kw) -> "RetryPolicy":
        """From the parameters: ``lock_retries`` and ``lock_retry_budget`` (a PostgreSQL duration
        such as ``5min``), the defaults for None."""
        from .errors import UsageError

        retries = DEFAULT_RETRIES if retries is None else retries
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 1000:
            raise UsageError(f"lock_retries must be a whole number from 0 to 1000, got {str(retries)[:40]!r}")
        if budget is not None and not isinstance(budget, str):
            raise UsageError(f"lock_retry_budget must be a duration such as 5min or 90s, got {str(budget)[:40]!r}")
        return cls(retries=retries, budget_s=seconds(DEFAULT_BUDGET if budget is None else budget), **kw)

    def pause(self, retry: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.backoff_max_s, self.backoff_s * (2 ** max(0, retry - 1)))
        return (rng or random).uniform(ceiling / 2, ceiling)

    def as_dict(self) -> dict:
        return {"retries": self.retries, "budget_s": self.budget_s, "backoff_s": self.backoff_s,
                "backoff_max_s": self.backoff_max_s}


NO_RETRY = RetryPolicy(retries=0)


def is_lock_timeout(exc: BaseException | None) -> bool:
    """PostgreSQL cancelled a statement for ``lock_timeout`` (SQLSTATE 55P03), whatever the driver
    (psycopg2 ``pgcode``, psycopg ``sqlstate``, asyncpg ``sqlstate``), through SQLAlchemy's wrappers."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for candidate in (exc, getattr(exc, "orig", None)):
            code = getattr(candidate, "pgcode", None) or getattr(candidate, "sqlstate", None)
            if code == LOCK_NOT_AVAILABLE:
                return True
            if candidate is not None and type(candidate).__name__ in ("LockNotAvailable", "LockNotAvailableError"):
                return True
        exc = exc.__cause__ or exc.__context__
    return False


# -- who blocks --------------------------------------------------------------------------------

_STRING = re.compile(r"'(?:[^']|'')*'?")


def redact_query(query: str | None, url=None) -> str:
    """A blocker's query as the record may keep it: 200 characters, string literals masked (an
    application's data), every secret swrun knows scrubbed (swrun.redaction)."""
    from .database import scrub

    text = " ".join(str(query or "").split())[:200]
    return scrub(_STRING.sub("'***'", text), url)


@dataclass
class Blocker:
    """One session holding (or queued ahead for) a lock the migration waits for."""

    pid: int
    application_name: str = ""
    user: str = ""
    state: str = ""
    transaction_seconds: float | None = None
    query: str = ""

    def describe(self) -> str:
        open_for = f", transaction open {self.transaction_seconds:.1f}s" if self.transaction_seconds is not None else ""
        app = f"application {self.application_name!r}, " if self.application_name else ""
        return f"pid {self.pid} ({app}user {self.user!r}, {self.state or 'unknown state'}{open_for}): {self.query or '-'}"

    def as_dict(self) -> dict:
        return {"pid": self.pid, "application_name": self.application_name, "user": self.user, "state": self.state,
                "transaction_seconds": None if self.transaction_seconds is None else round(self.transaction_seconds, 2),
                "query": self.query}


def describe(blockers: list[Blocker]) -> str:
    if not blockers:
        return "no blocking session was seen (it left, or the wait was too short to sample)"
    more = f" (and {len(blockers) - 1} more)" if len(blockers) > 1 else ""
    return f"blocked by {blockers[0].describe()}{more}"


# one query: the waiting backend's blockers, asked only while it waits on a lock (pg_blocking_pids
# takes the lock manager's partition locks: cheap once per poll, not free)
_BLOCKERS = (
    "select b.pid, coalesce(b.application_name, ''), coalesce(b.usename::text, ''), coalesce(b.state, ''), "
    "extract(epoch from now() - b.xact_start)::float8, left(b.query, 200) "
    "from pg_stat_activity w cross join lateral unnest(pg_blocking_pids(w.pid)) as x(pid) "
    "join pg_stat_activity b on b.pid = x.pid "
    "where w.pid = %s and w.wait_event_type = 'Lock' order by b.xact_start nulls last, b.pid")
_WAITING = "select wait_event_type = 'Lock' from pg_stat_activity where pid = %s"


class BlockerWatcher:
    """While a revision runs, poll on swrun's own connection whether the migrating backend waits
    on a lock, and who blocks it. The last sample of a wait is at most one ``interval`` before
    PostgreSQL cancels it, so the blocker at a timeout is named from what was there, not guessed.

    ``watch(pid)`` points it at a backend (runtime calls it once env.py's connection is checked);
    ``take()`` hands over and resets what the current attempt saw. Errors of the watcher's own
    connection never touch the migration: it just stops naming blockers."""

    def __init__(self, url, interval: float, *, current_revision: Callable[[], str | None] = lambda: None,
                 on_wait: Callable[[str | None, float], None] | None = None):
        self.url, self.interval = url, max(0.01, interval)
        self.current_revision, self.on_wait = current_revision, on_wait
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._stop = threading.Event()
        self._reset()
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="swrun-lock-watch", daemon=True)

    def _reset(self) -> None:
        self.blockers: list[Blocker] = []
        self.waited: dict[str | None, float] = {}  # revision -> seconds seen waiting on a lock
        self._since: float | None = None

    def start(self) -> "BlockerWatcher":
        self._thread.start()
        return self

    def watch(self, pid: int | None) -> None:
        with self._lock:
            self._pid = pid
            self._since = None

    def take(self) -> tuple[list[Blocker], dict[str | None, float]]:
        with self._lock:
            if self._since is not None:  # the wait ended with the attempt: count it to now
                rev = self.current_revision()
                self.waited[rev] = self.waited.get(rev, 0.0) + time.monotonic() - self._since
            out = (self.blockers, self.waited)
            self._reset()
            self._pid = None
            return out

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        from .database import make_engine

        engine = make_engine(self.url, connect_args={"application_name": "swrun-lock-watch"})
        try:
            raw = engine.raw_connection()
        except Exception as exc:  # noqa: BLE001 - the migration goes on, unwatched
            self.error = type(exc).__name__
            engine.dispose()
            return
        try:
            raw.dbapi_connection.autocommit = True
            cursor = raw.dbapi_connection.cursor()
            last = time.monotonic()
            while not self._stop.wait(self.interval):
                with self._lock:
                    pid = self._pid
                if pid is None:
                    continue
                cursor.execute(_WAITING, (pid,))
                row = cursor.fetchone()
                now = time.monotonic()
                waiting = bool(row and row[0])
                found = []
                if waiting:
                    cursor.execute(_BLOCKERS, (pid,))
                    found = [Blocker(int(r[0]), r[1], r[2], r[3], r[4], redact_query(r[5], self.url))
                             for r in cursor.fetchall() if r[0] is not None]
                first = False
                with self._lock:
                    if pid != self._pid:  # the attempt ended meanwhile: this sample is not its
                        continue
                    rev = self.current_revision()
                    if waiting:
                        if self._since is None:
                            self._since, first = now - min(self.interval, now - last), True
                        if found:
                            self.blockers = found
                    elif self._since is not None:
                        self.waited[rev] = self.waited.get(rev, 0.0) + now - self._since
                        self._since = None
                last = now
                if first and self.on_wait is not None:
                    with contextlib.suppress(Exception):
                        self.on_wait(rev, now)
        except Exception as exc:  # noqa: BLE001 - a lost watcher connection never fails the migration
            self.error = type(exc).__name__
        finally:
            with contextlib.suppress(Exception):
                raw.close()
            engine.dispose()


# -- what a timed-out attempt left behind --------------------------------------------------------


@dataclass
class Leftovers:
    """What a revision's timed-out attempt left committed, and whether running it again is safe."""

    safe: bool = True
    why: str = ""
    invalid_index: str | None = None  # the quoted, qualified name of the index a cancelled CONCURRENTLY build began
    committed: list[str] = field(default_factory=list)  # statements that committed before the cancel (autocommit block)


def _idempotent(statement) -> bool:
    """Running it a second time changes nothing and does not fail."""
    node_kind = statement.kind
    if node_kind in ("SELECT", "VARIABLESET", "SET", "SHOW", "COMMENT", "GRANT", "REVOKE", "ANALYZE", "VACUUM"):
        return True
    actions = statement.actions
    if actions and all("if-not-exists" in a.flags or "if-exists" in a.flags for a in actions):
        return True
    node = statement.node
    return bool(getattr(node, "if_not_exists", False) or getattr(node, "missing_ok", False)
                or getattr(node, "skipIfNewValExists", False))


def autocommit_leftovers(entries: list[dict], revision: str | None) -> Leftovers:
    """From the statements an attempt executed (``runtime``'s capture: ``revision``, ``sql``,
    ``autocommit``, ``done``), the failing revision's state after a lock timeout.

    Alembic commits a revision's transaction when it enters an autocommit block, and each
    statement in the block commits by itself; a statement in the transaction after the block
    rolls back with it. So: everything of this revision up to its last autocommit statement
    committed. Running the revision again is safe when each of those is idempotent; the cancelled
    statement itself, if it was a ``CREATE INDEX CONCURRENTLY``, left its index ``INVALID``:
    :func:`drop_invalid_index` must go first."""
    from . import sql as sqltext

    mine = [e for e in entries if e.get("revision") == revision and not e.get("bookkeeping")]
    out = Leftovers()
    if not mine:
        return out
    failing = next((i for i in range(len(mine) - 1, -1, -1) if not mine[i].get("done")), None)
    before = mine if failing is None else mine[:failing]
    if failing is not None and mine[failing].get("autocommit"):
        committed = before  # the block's entry committed the transaction before it
        for st in sqltext.statements(mine[failing]["sql"]):
            for action in st.actions:
                if action.op == "create-index" and "concurrently" in action.flags and action.name and action.table:
                    out.invalid_index = sqltext.Table(action.table.schema, action.name).sql
    else:
        last = max((i for i, e in enumerate(before) if e.get("autocommit")), default=-1)
        committed = before[:last + 1]
    for entry in committed:
        parsed = sqltext.statements(entry["sql"])
        out.committed.append(" ".join(entry["sql"].split())[:200])
        if not parsed or not all(_idempotent(st) for st in parsed):
            out.safe = False
            out.why = (f"it committed part of its work before the cancelled statement (an autocommit block): "
                       f"{' '.join(entry['sql'].split())[:160]!r} would run twice")
    return out


def invalid_index_exists(conn, name: str) -> bool:
    row = conn.exec_driver_sql(
        "select not i.indisvalid from pg_index i where i.indexrelid = to_regclass(%(n)s)", {"n": name}).first()
    return bool(row and row[0])


def drop_invalid_index(url, name: str, lock_timeout: str | None, on_pid: Callable[[int], None] | None = None) -> bool:
    """``DROP INDEX CONCURRENTLY IF EXISTS`` the index a cancelled build left, if it is still
    INVALID (a valid one is never touched). It waits for the same locks the build waited for, so
    it runs under the same ``lock_timeout`` (its own lock timeout is retried like the revision's).
    ``name`` is already quoted (swrun.sql.quote_ident). True when one was dropped."""
    from sqlalchemy import text

    from .database import connect, make_engine

    engine = make_engine(url)
    try:
        with connect(engine) as raw:
            conn = raw.execution_options(isolation_level="AUTOCOMMIT")
            if not invalid_index_exists(conn, name):
                return False
            if lock_timeout:
                conn.execute(text("select set_config('lock_timeout', :v, false)"), {"v": lock_timeout})
            if on_pid is not None:
                on_pid(int(conn.exec_driver_sql("select pg_backend_pid()").scalar()))
            conn.exec_driver_sql(f"drop index concurrently if exists {name}")
            return True
    finally:
        engine.dispose()


# -- the record ---------------------------------------------------------------------------------


@dataclass
class Attempt:
    """One attempt at a revision that PostgreSQL cancelled for a lock timeout."""

    revision: str | None
    attempt: int
    seconds: float  # the attempt, from its start to the cancel
    waited_s: float  # of which waiting on a lock, as the watcher saw it
    blockers: list[Blocker] = field(default_factory=list)
    pause_s: float | None = None  # before the next attempt; None: no next attempt
    cleanup: str | None = None  # what was removed before the next attempt (an invalid index)

    def as_dict(self) -> dict:
        return {"revision": self.revision, "attempt": self.attempt, "seconds": round(self.seconds, 3),
                "waited_s": round(self.waited_s, 3), "blockers": [b.as_dict() for b in self.blockers],
                "pause_s": None if self.pause_s is None else round(self.pause_s, 3), "cleanup": self.cleanup}


@dataclass
class AttemptEvent:
    """What ``apply(on_attempt=...)`` is told: ``state`` is ``"waiting"`` (the revision's backend
    waits on a lock; called from the watcher's thread), ``"timeout"`` (PostgreSQL cancelled the
    wait; ``pause_s`` None: no retry follows) or ``"retry"`` (attempt ``attempt`` starts)."""

    state: str
    revision: str | None
    attempt: int
    retries: int
    waited_s: float = 0.0
    pause_s: float | None = None
    blockers: list[Blocker] = field(default_factory=list)
