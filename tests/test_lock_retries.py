"""Lock waits under live traffic: short waits, retried, the blocker named (swrun/lock_retry.py).

On the embedded server, with a real blocking session held by this test: a reader that leaves
after two timeouts, one that never leaves, a CONCURRENTLY index build cancelled half-way, the
psql script's DO-block retry, and one ``swrun upgrade`` run end to end. The blocker is released
from the retry loop's own ``on_attempt`` events (or when the test sees the waits end), never
after a sleep, so the outcomes do not depend on the machine's speed.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from conftest import REPO, current_revision, run_cli, scalar
from swrun import database, embedded, lock_retry
from swrun.config import RunContext
from swrun.errors import MigrationFailed
from swrun.steps import preview, upgrade

P_LOCKS = REPO / "tests" / "projects" / "p_locks" / "alembic.ini"
FAST = "200ms"  # the per-attempt lock wait in these tests


class Blocker:
    """A session of 'the application' holding a lock on accounts in an open transaction."""

    def __init__(self, url: str, sql: str):
        self.engine = database.make_engine(database.normalize_url(url), connect_args={"application_name": "lock-blocker"})
        self.raw = self.engine.raw_connection()
        cursor = self.raw.cursor()
        cursor.execute("select pg_backend_pid()")
        self.pid = cursor.fetchone()[0]
        cursor.execute(sql)

    def leave(self) -> None:
        if self.raw is not None:
            self.raw.rollback()
            self.raw.close()
            self.raw = None
            self.engine.dispose()


def ctx_for(url: str, **kw) -> RunContext:
    return RunContext(project_path=str(P_LOCKS), database_url=url, lock_timeout=FAST, **kw)


def at(url: str, rev: str) -> None:
    upgrade.run(ctx_for(url), target=rev)


def invalid_indexes(url: str) -> int:
    return int(scalar(url, "select count(*) from pg_index where not indisvalid"))


def test_a_blocker_that_leaves_after_two_timeouts_lets_the_third_attempt_apply(db_url):
    at(db_url, "l0000001")
    blocker = Blocker(db_url, "select * from accounts where name = 'customer-data'")
    seen = []

    def on_attempt(event):
        seen.append((event.state, event.revision, event.attempt))
        if event.state == "timeout" and event.attempt == 2:
            blocker.leave()

    try:
        result = upgrade.run(ctx_for(db_url, lock_retries=5), target="l0000002", on_attempt=on_attempt)
    finally:
        blocker.leave()
    [row] = result.data["applied"]
    assert row["revision"] == "l0000002" and row["attempts"] == 3
    assert [t["attempt"] for t in row["lock_timeouts"]] == [1, 2]
    for timeout in row["lock_timeouts"]:
        [who] = timeout["blockers"]
        assert who["pid"] == blocker.pid and who["application_name"] == "lock-blocker"
        assert who["state"] == "idle in transaction" and who["query"] == "select * from accounts where name = '***'"
        assert timeout["pause_s"] > 0
    assert "l0000002 applied after 3 attempts" in result.summary
    assert list(result.tables["applied"]["attempts"]) == [3]
    assert len(result.tables["lock timeouts"]) == 2 and f"pid {blocker.pid}" in result.tables["lock timeouts"]["blocker"][0]
    assert result.data["attempts"] == 3 and result.data["lock_retry"]["retries"] == 5
    assert ("retry", "l0000002", 3) in seen and ("waiting", "l0000002", 1) in seen  # the hook progress reporting uses
    assert current_revision(db_url) == "l0000002"
    assert result.data["ledger"]["recorded"] == 1  # credited once, by the attempt that committed


def test_a_blocker_that_never_leaves_fails_cleanly_and_the_next_deploy_works(db_url):
    at(db_url, "l0000001")
    blocker = Blocker(db_url, "select count(*) from accounts")
    try:
        with pytest.raises(MigrationFailed) as failed:
            upgrade.run(ctx_for(db_url, lock_retries=2), target="head")
    finally:
        still_there = scalar(db_url, f"select count(*) from pg_stat_activity where pid = {blocker.pid}")
        blocker.leave()
    err = failed.value
    line = err.line()
    assert err.exit_code == 8 and err.revision == "l0000002"
    assert line.startswith("revision l0000002 (l0000002_add_accounts_note.py:16) failed during upgrade: lock timeout (200ms per attempt) on 3 attempts")
    assert f"blocked by pid {blocker.pid} (application 'lock-blocker', user " in line and "idle in transaction" in line
    assert "select count(*) from accounts" in line and "2 retries used up (lock_retries)" in line
    assert line.endswith("the database is now at l0000001") and "\n" not in line
    assert [a["attempt"] for a in err.attempts] == [1, 2, 3] and err.attempts[-1]["pause_s"] is None
    assert err.blockers[0]["pid"] == blocker.pid and still_there == 1
    assert current_revision(db_url) == "l0000001"  # the last good revision; the cancelled one rolled back whole
    assert scalar(db_url, "select count(*) from information_schema.columns where table_name = 'accounts' and column_name = 'note'") == 0

    again = upgrade.run(ctx_for(db_url), target="head")
    assert [r["revision"] for r in again.data["applied"]] == ["l0000002", "l0000003"]
    assert all(r["attempts"] == 1 for r in again.data["applied"]) and current_revision(db_url) == "l0000003"


def test_a_concurrent_index_build_cancelled_once_leaves_no_invalid_index(db_url):
    at(db_url, "l0000002")
    # an open writer: CREATE INDEX CONCURRENTLY has already made its (INVALID) index when it waits for it
    blocker = Blocker(db_url, "insert into accounts (name) values ('z')")
    invalid_after_cancel = []

    def on_attempt(event):
        if event.state == "timeout":
            invalid_after_cancel.append(invalid_indexes(db_url))
            blocker.leave()

    try:
        result = upgrade.run(ctx_for(db_url), target="l0000003", on_attempt=on_attempt)
    finally:
        blocker.leave()
    [row] = result.data["applied"]
    assert row["attempts"] == 2 and invalid_after_cancel == [1]  # the cancelled build did leave one
    assert row["lock_timeouts"][0]["cleanup"] == "dropped the INVALID index ix_accounts_name its cancelled build left"
    assert row["lock_timeouts"][0]["blockers"][0]["query"] == "insert into accounts (name) values ('***')"
    assert invalid_indexes(db_url) == 0
    assert scalar(db_url, "select indisvalid from pg_index where indexrelid = 'ix_accounts_name'::regclass") is True


def test_a_revision_that_committed_part_of_its_work_is_not_run_twice():
    """What an autocommit block committed before the cancelled statement decides: idempotent, or not retried."""
    def entry(sql, autocommit=False, done=True):
        return {"revision": "r", "sql": sql, "autocommit": autocommit, "done": done}

    cic = 'CREATE INDEX CONCURRENTLY "Ix" ON app.t (a)'
    cancelled_build = [entry(cic, autocommit=True, done=False)]
    left = lock_retry.autocommit_leftovers(cancelled_build, "r")
    assert left.safe and left.invalid_index == 'app."Ix"'  # quoted where PostgreSQL needs it, in the table's schema

    after_a_column = [entry("ALTER TABLE t ADD COLUMN b int"), *cancelled_build]
    left = lock_retry.autocommit_leftovers(after_a_column, "r")
    assert not left.safe and "ALTER TABLE t ADD COLUMN b int" in left.why

    idempotent = [entry("CREATE TABLE IF NOT EXISTS u (a int)"), entry("ALTER TYPE mood ADD VALUE IF NOT EXISTS 'x'", True),
                  entry("ALTER TABLE t ADD COLUMN c int", done=False)]
    assert lock_retry.autocommit_leftovers(idempotent, "r").safe
    # all in the revision's transaction (no autocommit block): rolled back whole
    plain = [entry("ALTER TABLE t ADD COLUMN b int"), entry("ALTER TABLE t ADD COLUMN c int", done=False)]
    assert lock_retry.autocommit_leftovers(plain, "r").safe


def test_the_policy_and_the_blocker_text():
    policy = lock_retry.RetryPolicy.of(3, "90s")
    assert policy.retries == 3 and policy.budget_s == 90
    for n, ceiling in ((1, 0.5), (2, 1.0), (4, 4.0), (20, 30.0)):
        assert all(ceiling / 2 <= policy.pause(n) <= ceiling for _ in range(20))
    assert lock_retry.seconds("2s") == 2 and lock_retry.seconds("500ms") == 0.5 and lock_retry.seconds("5min") == 300
    with pytest.raises(Exception, match="lock_retries"):
        lock_retry.RetryPolicy.of(-1)
    shown = lock_retry.redact_query("update users set password = 'hunter22' where id = 1 " + "x" * 300)
    assert "hunter22" not in shown and shown.startswith("update users set password = ") and len(shown) <= 200

    import psycopg2.errors

    assert lock_retry.is_lock_timeout(psycopg2.errors.LockNotAvailable("canceling statement due to lock timeout"))
    assert not lock_retry.is_lock_timeout(psycopg2.errors.QueryCanceled("canceling statement due to statement timeout"))


def test_statement_timeout_bounds_a_revision_and_is_not_retried(db_url):
    at(db_url, "l0000001")
    blocker = Blocker(db_url, "select count(*) from accounts")
    try:  # the statement's bound shorter than the lock wait: PostgreSQL cancels for statement_timeout, no retry
        with pytest.raises(MigrationFailed, match="QueryCanceled: canceling statement due to statement timeout"):
            upgrade.run(RunContext(project_path=str(P_LOCKS), database_url=db_url, lock_timeout="5s",
                                   statement_timeout="100ms"), target="l0000002")
    finally:
        blocker.leave()
    assert current_revision(db_url) == "l0000001"


def _wait_until_waits_end(url: str, episodes: int, release, application: str | None = None, timeout: float = 60) -> threading.Thread:
    """Release the blocker once ``episodes`` distinct backends were seen waiting on a lock and the
    last of them stopped waiting (PostgreSQL cancelled it): the retry loop seen from outside."""
    def watch():
        engine = database.make_engine(database.normalize_url(url))
        seen: list[int] = []
        deadline = time.monotonic() + timeout
        try:
            with engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                who = "and application_name = %(app)s" if application else ""
                while time.monotonic() < deadline:
                    rows = conn.exec_driver_sql(
                        "select pid from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' "
                        f"and pid <> pg_backend_pid() {who}", {"app": application}).scalars().all()
                    for pid in rows:
                        if pid not in seen:
                            seen.append(pid)
                    if len(seen) >= episodes and seen[-1] not in rows:
                        break
                    time.sleep(0.02)
        finally:
            engine.dispose()
            release()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_the_psql_script_retries_a_lock_timeout_in_a_do_block(db_url, tmp_path):
    at(db_url, "l0000001")
    script = tmp_path / "apply.sql"
    proc = run_cli("preview", "--project", P_LOCKS, "--database-url", db_url, "--sql-file", script, "--out-dir", tmp_path,
                   "--to", "l0000002", "--lock-timeout", FAST, "--lock-retries", "5")
    assert proc.returncode == 0, proc.stderr
    text = script.read_text()
    assert "EXCEPTION WHEN lock_not_available THEN" in text and "SET lock_timeout = '200ms';" in text
    blocker = Blocker(db_url, "select count(*) from accounts")
    watcher = _wait_until_waits_end(db_url, 1, blocker.leave, application="psql")
    try:
        applied = subprocess.run([str(embedded.pg_tool("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db_url,
                                  "-f", str(script)], capture_output=True, text=True, timeout=120,
                                 env={"PGAPPNAME": "psql", "PATH": "/usr/bin:/bin"})
    finally:
        watcher.join(60)
        blocker.leave()
    assert applied.returncode == 0, applied.stderr
    assert "swrun: l0000002 cancelled for a lock timeout on attempt 1, next in" in applied.stderr
    assert current_revision(db_url) == "l0000002"
    # no retries asked for: the plain form, as before
    plain = preview.psql_script([], (), "head", lock_timeout="1s", statement_timeout="0", lock_retries=0)
    assert "lock_not_available" not in plain


def test_swrun_upgrade_end_to_end_records_every_attempt(db_url, workdir):
    at(db_url, "l0000001")
    blocker = Blocker(db_url, "select count(*) from accounts")
    watcher = _wait_until_waits_end(db_url, 2, blocker.leave)
    try:
        proc = run_cli("upgrade", "--project", P_LOCKS, "--database-url", db_url, "--to", "l0000002",
                       "--lock-timeout", FAST, "--lock-retries", "6", "--lock-retry-budget", "2min")
    finally:
        watcher.join(60)
        blocker.leave()
    assert proc.returncode == 0, proc.stderr
    [record] = sorted((workdir / "reports").rglob("*.ipynb"))
    steps = json.loads(record.read_text())["metadata"]["swrun"]["steps"]
    done = next(s for s in steps if s["step"] == "upgrade")
    [row] = done["data"]["applied"]
    # released from outside after two timed-out waits: 3 attempts (one more if a 20 ms poll missed a 200 ms wait)
    assert row["attempts"] >= 3 and done["data"]["lock_retry"]["retries"] == 6 and done["data"]["lock_timeout"] == FAST
    assert all(t["blockers"][0]["pid"] == blocker.pid for t in row["lock_timeouts"])
    assert f"l0000002 applied after {row['attempts']} attempts" in done["summary"]
    assert current_revision(db_url) == "l0000002"


def test_bad_retry_settings_are_one_line_and_exit_2(db_url, workdir):
    proc = run_cli("upgrade", "--project", P_LOCKS, "--database-url", db_url, "--lock-retry-budget", "soon")
    assert proc.returncode == 2 and "invalid lock_retry_budget 'soon'" in proc.stderr
    proc = run_cli("upgrade", "--project", P_LOCKS, "--database-url", db_url, "--lock-retries", "5000")
    assert proc.returncode == 2 and "'lock_retries' must be between 0 and 1000" in proc.stderr
    assert current_revision(db_url) is None


def test_a_rollback_retries_its_lock_timeouts_too(db_url):
    from swrun.recovery import rollback

    at(db_url, "l0000002")
    blocker = Blocker(db_url, "select count(*) from accounts")
    watcher = _wait_until_waits_end(db_url, 1, blocker.leave)
    try:
        result = rollback.run(ctx_for(db_url), target="l0000001")
    finally:
        watcher.join(60)
        blocker.leave()
    [row] = result.data["applied"]
    # released from outside once a timed-out wait is seen to end: 2 attempts, one more if a poll missed a wait
    assert row["revision"] == "l0000002" and row["direction"] == "downgrade" and row["attempts"] >= 2
    assert row["lock_timeouts"][0]["blockers"][0]["pid"] == blocker.pid
    assert f"l0000002 undone after {row['attempts']} attempts" in result.summary and current_revision(db_url) == "l0000001"
