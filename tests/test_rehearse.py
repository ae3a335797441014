"""Rehearsal, the rehearsal gate, lock and traffic estimates, the watch, and the psql script.

Real everything: the backup is a real pg_dump, restored with the real pg_restore into a
scratch database on the embedded server; the migrations run up, down and up on it; the
watch reads the real pg_stat views while real sessions misbehave; psql applies the script.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
import sqlalchemy as sa

from conftest import default_sigint, HEAD, add_revision, current_revision, new_database, run_cli, scalar
from swrun import activity, database, embedded, schema
from swrun.config import RunContext
from swrun.notebook import DEPLOY_STEPS
from swrun.steps import preflight, rehearse, upgrade, watch

DEMO_CHAIN = ["3b11939b5277", "5e1f0c2a9d41", "a1b2c3d4e5f6", "c7d8e9f0a1b2", "d4e5f6a7b8c9", "e1f2a3b4c5d6", HEAD]
NO_REHEARSAL = "preflight,status,preview,guards,backup,upgrade,verify"


@pytest.fixture
def fresh_db(pg):
    yield from new_database(pg)


def records(workdir: Path, env: str = "") -> list[Path]:
    return sorted((workdir / "reports" / env).rglob("*.ipynb"), key=lambda p: p.name)


def meta(path: Path) -> dict:
    return json.loads(path.read_text())["metadata"]["swrun"]


def step(path: Path, name: str) -> dict:
    return next(s for s in meta(path)["steps"] if s["step"] == name)


def error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("swrun: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def scratch_databases(pg) -> list[str]:
    found = scalar(pg.status().url("postgres"),
                   "select string_agg(datname, ',' order by datname) from pg_database where datname like 'swrun_rehearsal%%'")
    return found.split(",") if found else []


def at_head(url: str, project: Path | None = None, target: str = HEAD) -> None:
    upgrade.run(RunContext(database_url=url, project_path=str(project / "alembic.ini") if project else None), target=target)
    assert current_revision(url) == target


MIDDLE = "e1f2a3b4c5d6"  # the demo's next-to-last revision: the last one stays pending


def cell_text(record: Path, tag: str) -> tuple[str, str]:
    """The markdown above a tagged cell, and the cell's text outputs."""
    nb = nbformat.read(str(record), as_version=4)
    i = next(i for i, c in enumerate(nb.cells) if tag in c.metadata.get("tags", []))
    outputs = "\n".join(o.get("data", {}).get("text/plain", "") for o in nb.cells[i].outputs)
    return nb.cells[i - 1].source, outputs


# -- the rehearsal in a deploy -------------------------------------------------------------------


def test_deploy_rehearses_on_a_copy_and_records_timings_and_locks(pg, db_url, workdir):
    proc = run_cli("deploy", "--database-url", db_url, "--env", "staging")
    assert proc.returncode == 0, proc.stderr
    assert "✓ rehearse ok" in proc.stderr and proc.stderr.index("→ rehearse") < proc.stderr.index("→ upgrade")
    [record] = records(workdir)
    assert [s["step"] for s in meta(record)["steps"]] == list(DEPLOY_STEPS)
    done = step(record, "rehearse")
    data = done["data"]
    assert (data["rehearsed"], data["rollback_proven"], data["scratch_removed"]) == (True, True, True)
    assert (data["start"], data["target"], data["on"]) == ([], [HEAD], "embedded")
    assert "rollback plan proven: the downgrade to <base> ran on real data" in done["summary"]
    assert {s["stage"]: s["result"] for s in data["stages"]} == {
        "restore": "pass", "upgrade": "pass", "verify": "pass", "downgrade": "pass", "schema after downgrade": "pass",
        "rows after downgrade": "pass", "upgrade again": "pass", "scratch database": "pass", "executed SQL": "pass", "target's rights": "pass"}

    # every revision up, down and up again, each timed on the copy
    rows = {r["revision"]: r for r in data["revisions"]}
    assert [r["revision"] for r in data["revisions"]] == DEMO_CHAIN
    for r in data["revisions"]:
        assert all(isinstance(r[k], float) and r[k] >= 0 for k in ("up_seconds", "down_seconds", "up_again_seconds")), r
    # the locks each revision held, strongest mode per existing table
    assert rows["3b11939b5277"]["locks"] == {}  # it creates every table it touches: nobody else can wait on them
    assert rows["a1b2c3d4e5f6"]["locks"] == {"users": "ShareRowExclusiveLock"}  # the new table's foreign key
    assert rows["e1f2a3b4c5d6"]["locks"]["bins"] == "AccessExclusiveLock"  # ADD COLUMN
    assert rows["f7a8b9c0d1e2"]["locks"]["pickups"] == "AccessExclusiveLock" and "route_stops" not in rows["f7a8b9c0d1e2"]["locks"]
    assert rows["c7d8e9f0a1b2"]["locks"] == {}  # ADD VALUE runs outside the revision's transaction
    assert rows["c7d8e9f0a1b2"]["down_locks"]["users"] == "AccessExclusiveLock"  # its rollback rebuilds the column's type
    # the expected hold in production: the revision's transaction time on real data
    f7 = rows["f7a8b9c0d1e2"]
    assert f7["hold_seconds"] == round(max(f7["up_seconds"], f7["up_again_seconds"]), 4) > 0
    assert f7["blocks"]["pickups"] == "reads and writes" and rows["d4e5f6a7b8c9"]["blocks"] == {}
    # next to the traffic the preflight measured on the target
    traffic = step(record, "preflight")["data"]["activity"]
    assert {"sessions", "active", "tps", "sample_seconds", "transactions"} <= set(traffic) and data["activity"] == traffic
    assert any(c["check"] == "activity" and "transactions/s" in c["detail"] for c in step(record, "preflight")["data"]["checks"])

    # the record shows the same to people: the guide's words above, the table below
    section, shown = cell_text(record, "step:rehearse")
    assert "ALWAYS test migrations locally first" in section and "Have rollback plan ready" in section
    assert "expected hold" in shown and "pickups AccessExclusive" in shown and "schema after downgrade" in shown
    assert step(record, "watch")["outcome"] == "skipped"
    assert rehearse.scratch_name(meta(record)["run_id"]) not in scratch_databases(pg)
    assert current_revision(db_url) == HEAD

    # the deploy's preview kept the psql script and its sha256
    kept = step(record, "preview")["data"]["sql_file"]
    assert hashlib.sha256(Path(kept["file"]).read_bytes()).hexdigest() == kept["sha256"]


def test_rehearsal_catches_a_migration_that_only_real_rows_break(pg, db_url, fresh_db, project_copy, workdir):
    add_revision(project_copy, "9a0000000001", HEAD,
                 "op.alter_column('users', 'full_name', existing_type=sa.String(200), nullable=False)",
                 "op.alter_column('users', 'full_name', existing_type=sa.String(200), nullable=True)", slug="require_full_name")
    ini = project_copy / "alembic.ini"
    # where every user has a name (the demo's sample rows), the new revision passes, rehearsal and all
    fine = run_cli("deploy", "--database-url", fresh_db, "--project", ini)
    assert fine.returncode == 0, fine.stderr
    assert current_revision(fresh_db) == "9a0000000001"

    # the real database has a user without a name
    at_head(db_url, project_copy)
    scalar(db_url, "update users set full_name = null where email = 'citizen.dev@smartwaste.example' returning id")
    proc = run_cli("deploy", "--database-url", db_url, "--project", ini)
    assert proc.returncode == 9, proc.stderr
    assert "FAILED at rehearse" in proc.stderr and "Traceback" not in proc.stderr
    line = error_line(proc)
    assert "revision 9a0000000001 (9a0000000001_require_full_name.py:" in line and "failed during upgrade" in line and 'column "full_name" of relation "users" contains null values' in line
    assert f"the real database was not touched (still at {HEAD})" in line
    # the real database is where it was: revision, column, the row
    assert current_revision(db_url) == HEAD
    assert scalar(db_url, "select is_nullable from information_schema.columns where table_name = 'users' and column_name = 'full_name'") == "YES"
    assert scalar(db_url, "select count(*) from users where full_name is null") == 1
    [record] = records(workdir, "development")[-1:]
    outcomes = {s["step"]: s["outcome"] for s in meta(record)["steps"]}
    assert (outcomes["rehearse"], outcomes["upgrade"], outcomes["verify"]) == ("failed", "skipped", "skipped")
    data = step(record, "rehearse")["data"]
    assert data["failed_revision"] == "9a0000000001" and data["scratch_removed"] is True
    assert {s["stage"]: s["result"] for s in data["stages"]}["upgrade"] == "failed"
    assert [r["up_seconds"] is not None for r in data["revisions"]] == [False]  # it never committed on the copy
    assert scratch_databases(pg) == []


def test_a_broken_downgrade_is_named_and_production_needs_the_backup_as_its_rollback_plan(pg, db_url, fresh_db, project_copy, workdir):
    add_revision(project_copy, "9b0000000001", HEAD, "op.add_column('bins', sa.Column('owner', sa.Text(), nullable=True))",
                 "op.drop_column('bins', 'owner_name')", slug="bin_owner")  # the downgrade names the wrong column
    ini = project_copy / "alembic.ini"
    at_head(db_url, project_copy)
    proc = run_cli("rehearse", "--database-url", db_url, "--project", ini)
    # the upgrade passed on real data: the failed downgrade is a warning that names it, not a failed run
    assert proc.returncode == 0, proc.stderr
    assert "rollback plan NOT proven" in proc.stderr and "Traceback" not in proc.stderr
    assert current_revision(db_url) == HEAD
    assert scalar(db_url, "select count(*) from information_schema.columns where table_name = 'bins' and column_name = 'owner'") == 0
    [record] = records(workdir)
    outcomes = {s["step"]: s["outcome"] for s in meta(record)["steps"]}
    assert {k: outcomes[k] for k in ("preflight", "status", "backup", "rehearse")} == {
        "preflight": "ok", "status": "ok", "backup": "ok", "rehearse": "warning"}
    data = step(record, "rehearse")["data"]
    stages = {s["stage"]: s for s in data["stages"]}
    assert stages["downgrade"]["result"] == "warning" and stages["upgrade again"]["result"] == "skipped"
    assert "9b0000000001 (9b0000000001_bin_owner.py:" in stages["downgrade"]["detail"]
    assert 'column "owner_name" of relation "bins" does not exist' in stages["downgrade"]["detail"]
    [row] = data["revisions"]
    assert row["up_seconds"] is not None and row["down_seconds"] is None and row["failed"] == "downgrade"
    assert data["rollback_proven"] is False and data["rollback_failed_revision"] == "9b0000000001"
    assert data["scratch_removed"] is True and scratch_databases(pg) == []

    # production: the same set passed staging, but without a proven downgrade the upgrade waits for an explicit override
    at_head(fresh_db, project_copy)
    assert run_cli("deploy", "--database-url", fresh_db, "--project", ini, "--env", "staging").returncode == 0
    blocked = run_cli("deploy", "--database-url", db_url, "--project", ini, "--env", "production")
    assert blocked.returncode == 9, blocked.stderr
    line = error_line(blocked)
    assert "production requires a rollback plan" in line and "9b0000000001" in line and "--override-gates rehearsal" in line
    assert current_revision(db_url) == HEAD


def test_production_needs_this_runs_rehearsal_and_an_override_is_recorded(db_url, fresh_db, workdir):
    staging = run_cli("deploy", "--database-url", fresh_db, "--env", "staging")  # the staging gate
    assert staging.returncode == 0, staging.stderr
    blocked = run_cli("deploy", "--database-url", db_url, "--env", "production", "--steps", NO_REHEARSAL)
    assert blocked.returncode == 9, blocked.stderr
    line = error_line(blocked)
    assert "production requires a successful rehearsal of these migrations in this run" in line
    assert "--override-gates rehearsal" in line
    assert current_revision(db_url) is None

    forced = run_cli("deploy", "--database-url", db_url, "--env", "production", "--steps", NO_REHEARSAL,
                     "--override-gates", "rehearsal")
    assert forced.returncode == 0, forced.stderr
    assert current_revision(db_url) == HEAD
    record = records(workdir, "production")[-1]
    assert meta(record)["parameters"]["override_gates"] == "rehearsal"
    upgraded = step(record, "upgrade")
    assert upgraded["data"]["overridden"] == ["rehearsal"] and "rehearsal gate was overridden" in upgraded["summary"]
    gates = {g["gate"]: g["result"] for g in step(record, "guards")["data"]["gates"]}
    assert gates["rehearsal"] == "overridden"


# -- bad input -----------------------------------------------------------------------------------


def test_a_backup_that_does_not_restore_stops_the_rehearsal(pg, db_url, workdir):
    at_head(db_url, target=MIDDLE)
    # a check that calls a function reading another table: pg_restore runs it with an empty search_path
    scalar(db_url, "create function bin_code_free(c text) returns boolean language sql stable as "
                   "$$ select not exists (select 1 from users where email = c) $$; "
                   "alter table bins add constraint ck_bins_code_free check (bin_code_free(code)); select 1")
    proc = run_cli("rehearse", "--database-url", db_url)
    assert proc.returncode == 9, proc.stderr
    line = error_line(proc)
    assert "does not restore into the scratch database" in line and 'COPY failed for table "bins"' in line
    assert "would not restore in an emergency either" in line and "Traceback" not in proc.stderr
    assert current_revision(db_url) == MIDDLE
    assert scalar(db_url, "select count(*) from pg_constraint where conname = 'ck_bins_code_free'") == 1
    data = step(records(workdir)[-1], "rehearse")["data"]
    assert {s["stage"]: s["result"] for s in data["stages"]} == {"restore": "failed", "scratch database": "pass"}
    assert scratch_databases(pg) == []


def test_no_room_for_the_scratch_database(db_url, workdir, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a small filesystem here")
    server = embedded.EmbeddedServer(small)
    try:
        server.start()  # the rehearsal's embedded server, on a small disk
        free = shutil.disk_usage(server.data_dir).free
        at_head(db_url, target=MIDDLE)
        while scalar(db_url, "select pg_database_size(current_database())") * rehearse.ROOM_FACTOR < free + (4 << 20):
            scalar(db_url, "insert into pickups (route_id, bin_id, weight_kg) select 1, 1, 1 from generate_series(1, 100000); select 1")
        proc = run_cli("rehearse", "--database-url", db_url, env={"SWRUN_HOME": str(small)})
        assert proc.returncode == 9, proc.stderr
        line = error_line(proc)
        assert "no room for the scratch database" in line and f"MiB free in {server.data_dir}" in line
        assert "--rehearse-on target" in line and "Traceback" not in proc.stderr
        assert current_revision(db_url) == MIDDLE
        assert scalar(server.status().url("postgres"), "select count(*) from pg_database where datname like 'swrun_rehearsal%%'") == 0
    finally:
        server.stop()
        subprocess.run(["umount", "-l", str(small)], capture_output=True)


def test_interrupted_rehearsal_leaves_no_scratch_database(pg, db_url, project_copy, workdir):
    add_revision(project_copy, "510e00000009", HEAD, "op.execute('select pg_sleep(30)')", slug="slow")
    at_head(db_url, project_copy)
    proc = subprocess.Popen([sys.executable, "-m", "swrun", "deploy", "--database-url", db_url, "--project",
                             str(project_copy / "alembic.ini")], stderr=subprocess.PIPE, text=True, cwd=workdir,
                            preexec_fn=default_sigint)
    for line in proc.stderr:
        if "→ rehearse" in line:
            break
    deadline = time.time() + 30
    while not scratch_databases(pg) and time.time() < deadline:  # restored, now sleeping in the slow revision
        time.sleep(0.1)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, rest
    assert "removed the rehearsal's scratch database swrun_rehearsal_" in rest
    assert scratch_databases(pg) == []
    assert current_revision(db_url) == HEAD


def owners_left(pg) -> int:
    return scalar(pg.status().url("postgres"), "select count(*) from pg_locks where locktype = 'advisory' and granted "
                                               f"and objsubid = 2 and classid = {rehearse.OWNER_CLASS}")


def test_a_killed_rehearsals_copy_is_removed_by_the_next_rehearsal_and_a_live_ones_is_not(pg, db_url, fresh_db, project_copy,
                                                                                           workdir):
    add_revision(project_copy, "510e00000009", HEAD, "op.execute('select pg_sleep(120)')", slug="slow")
    at_head(db_url, project_copy, target=HEAD)
    killed = subprocess.Popen([sys.executable, "-m", "swrun", "deploy", "--database-url", db_url, "--project",
                               str(project_copy / "alembic.ini")], stderr=subprocess.DEVNULL, cwd=workdir)
    deadline = time.time() + 60
    while not (scratch_databases(pg) and owners_left(pg)) and time.time() < deadline:  # restored, sleeping in "slow"
        time.sleep(0.1)
    copy = scratch_databases(pg)
    assert len(copy) == 1, copy
    try:
        # another run while that one is alive: its copy is in use and stays
        live = run_cli("rehearse", "--database-url", fresh_db, cwd=workdir)
        assert live.returncode == 0, live.stderr
        assert "leftovers" not in {s["stage"] for s in step(records(workdir)[-1], "rehearse")["data"]["stages"]}
        assert scratch_databases(pg) == copy
    finally:
        killed.kill()  # SIGKILL: no cleanup of its own runs; its kernel exits with it
        killed.wait(timeout=30)
    deadline = time.time() + 30
    while owners_left(pg) and time.time() < deadline:
        time.sleep(0.1)
    assert owners_left(pg) == 0 and scratch_databases(pg) == copy  # a copy of real data nobody holds
    after = run_cli("rehearse", "--database-url", fresh_db, cwd=workdir)
    assert after.returncode == 0, after.stderr
    data = step(records(workdir)[-1], "rehearse")["data"]
    stages = {s["stage"]: s for s in data["stages"]}
    assert stages["leftovers"]["result"] == "pass" and copy[0] in stages["leftovers"]["detail"], stages
    assert data["leftovers"] == [{"database": copy[0], "removed": True}]
    assert scratch_databases(pg) == [] and owners_left(pg) == 0
    assert current_revision(db_url) == HEAD


def test_rehearse_on_the_target_server_as_a_role_with_a_password(pg, db_url, workdir):
    password = "Rh3arse-s3cret-pw"
    dbname = db_url.split("?", 1)[0].rsplit("/", 1)[-1]
    scalar(db_url, f"create role rehearser login createdb password '{password}'; "
                   f"grant create on schema public to rehearser; select 1")
    try:
        url = pg.status().tcp_url(database=dbname, user="rehearser", password=password)
        proc = run_cli("rehearse", "--database-url", url, "--rehearse-on", "target")
        assert proc.returncode == 0, proc.stderr
        data = step(records(workdir)[-1], "rehearse")["data"]
        assert data["on"] == "target" and data["rehearsed"] and data["scratch_removed"]
        assert "(the target server (127.0.0.1:" in step(records(workdir)[-1], "rehearse")["summary"]
        assert current_revision(db_url) is None  # a rehearsal never migrates the real database
        assert scratch_databases(pg) == []
        leaks = [p for p in workdir.rglob("*") if p.is_file() and password.encode() in p.read_bytes()]
        assert leaks == [] and password not in proc.stderr + proc.stdout
    finally:
        scalar(db_url, "drop owned by rehearser; drop role rehearser; select 1")


# -- the watch -----------------------------------------------------------------------------------


def trouble(url: str) -> None:
    """What a bad deploy looks like from the database: failing statements, a lock queue, a deadlock."""
    engine = database.make_engine(database.normalize_url(url))
    try:
        for _ in range(8):  # each one a rolled-back transaction
            with engine.connect() as conn:
                with pytest.raises(sa.exc.DataError):
                    conn.exec_driver_sql("select 1/0")
        holder = engine.connect()
        holder.exec_driver_sql("lock table bins in access exclusive mode")
        waiter = threading.Thread(target=lambda: _run(engine, "select count(*) from bins"))
        waiter.start()
        left, right = engine.connect(), engine.connect()
        left.exec_driver_sql("update users set full_name = full_name where id = 1")
        right.exec_driver_sql("update users set full_name = full_name where id = 2")
        crossed = threading.Thread(target=_update_or_roll_back, args=(left, 2))
        crossed.start()
        time.sleep(0.2)
        _update_or_roll_back(right, 1)  # the two wait on each other: one is chosen after deadlock_timeout (1 s)
        crossed.join(10)
        for conn in (left, right):
            conn.rollback()
            conn.close()
        time.sleep(0.3)
        holder.rollback()
        holder.close()
        waiter.join(10)
    finally:
        engine.dispose()


def _run(engine, sql: str) -> None:
    with engine.connect() as conn:
        conn.exec_driver_sql(sql)


def _update_or_roll_back(conn, user_id: int) -> None:
    try:
        conn.exec_driver_sql(f"update users set full_name = full_name where id = {user_id}")
    except sa.exc.DBAPIError:
        conn.rollback()  # the deadlock's victim lets the other one through


def test_watch_flags_a_rise_after_the_upgrade_and_fails_when_asked(db_url, workdir):
    at_head(db_url)  # sample rows to lock and to deadlock over; nothing pending
    proc = subprocess.Popen([sys.executable, "-m", "swrun", "deploy", "--database-url", db_url, "--watch", "4", "--fail-on-rise"],
                            stderr=subprocess.PIPE, text=True, cwd=workdir)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "→ watch" in line:
            break
    trouble(db_url)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 9, "".join(seen) + rest
    assert "FAILED at watch" in rest and "error signals rose" in rest and "rollbacks" in rest
    watched = step(records(workdir)[-1], "watch")
    data = watched["data"]
    assert {"xact_rollback", "deadlocks", "lock_waits"} <= set(data["risen"]), data
    assert data["before"]["seconds"] >= 4 and data["after"]["seconds"] >= 4
    assert data["before"]["lock_waits_max"] == 0 and data["after"]["lock_waits_max"] >= 1
    assert data["after"]["deltas"]["deadlocks"] >= 1 and data["before"]["deltas"]["deadlocks"] == 0
    _, shown = cell_text(records(workdir)[-1], "step:watch")
    assert "rise" in shown and "deadlocks" in shown
    assert current_revision(db_url) == HEAD  # the watch flags; it never undoes anything


def test_watch_of_a_quiet_database_passes(db_url):
    ctx = RunContext(database_url=db_url)
    try:
        before = activity.window(ctx.engine, 0.6, interval=0.2)
        result = watch.run(ctx, seconds=0.6, before=before, fail_on_rise=True, interval=0.2)
    finally:
        ctx.close()
    assert result.outcome == "ok", result.summary
    assert result.data["risen"] == [] and result.data["before"]["samples"] >= 3
    assert {s["key"] for s in result.data["signals"]} >= {"xact_rollback", "deadlocks", "conflicts", "sessions_fatal", "lock_waits"}
    assert watch.run(ctx, seconds=0).outcome == "skipped"


def test_preflight_measures_transactions_per_second(db_url, tmp_path):
    ctx = RunContext(database_url=db_url, backup_dir=tmp_path)

    def busy():
        time.sleep(0.4)
        engine = database.make_engine(database.normalize_url(db_url))
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            for _ in range(40):  # forty committed transactions
                conn.exec_driver_sql("select 1")
        engine.dispose()

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        result = preflight.run(ctx, activity_seconds=1.5)
    finally:
        worker.join()
        ctx.close()
    traffic = result.data["activity"]
    assert traffic["transactions"] >= 40 and traffic["tps"] >= 40 / traffic["sample_seconds"] - 1
    assert next(c for c in result.data["checks"] if c["check"] == "activity")["detail"].endswith(
        f"{traffic['tps']:g} transactions/s over {traffic['sample_seconds']:.1f}s")


# -- the psql script -----------------------------------------------------------------------------


def psql_file(url: str, path: Path):
    return subprocess.run([str(embedded.pg_tool("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(path)],
                          capture_output=True, text=True)


def snapshot(url: str) -> dict:
    engine = database.make_engine(database.normalize_url(url))
    try:
        with engine.connect() as conn:
            return {"schema": schema.snapshot(conn), "rows": schema.row_counts(conn)}
    finally:
        engine.dispose()


def test_sql_file_brings_a_fresh_database_to_head_with_psql(db_url, fresh_db, tmp_path):
    whole = tmp_path / "whole.sql"
    proc = run_cli("preview", "--database-url", fresh_db, "--sql-file", whole, "--out-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"for psql: {whole}" in proc.stdout
    applied = psql_file(fresh_db, whole)
    assert applied.returncode == 0, applied.stderr
    assert current_revision(fresh_db) == HEAD

    # from the middle of the chain: the enum's ADD VALUE stands outside every transaction
    upgrade.run(RunContext(database_url=db_url), target="a1b2c3d4e5f6")
    rest = tmp_path / "rest.sql"
    proc = run_cli("preview", "--database-url", db_url, "--sql-file", rest, "--lock-timeout", "3s",
                   "--statement-timeout", "5min", "--out-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = rest.read_text()
    assert "SET lock_timeout = '3s';" in text and "SET statement_timeout = '5min';" in text and "\\set ON_ERROR_STOP on" in text
    inside, transactions = False, 0
    for line in text.splitlines():
        if line == "BEGIN;":
            assert not inside
            inside, transactions = True, transactions + 1
        elif line == "COMMIT;":
            assert inside
            inside = False
        elif "ADD VALUE" in line:
            assert not inside, "ALTER TYPE ... ADD VALUE inside a transaction block"
        elif line.startswith(("UPDATE", "ALTER TABLE", "CREATE", "INSERT")):
            assert inside, line
    assert transactions == 4 and text.count("CREATE TABLE users") == 0  # one per pending revision, nothing from before
    applied = psql_file(db_url, rest)
    assert applied.returncode == 0, applied.stderr
    assert current_revision(db_url) == HEAD
    assert snapshot(db_url) == snapshot(fresh_db)  # the same database as the whole script made

    # the wrong database for the file: it stops before any revision
    again = psql_file(db_url, rest)
    assert again.returncode != 0
    assert "this file upgrades a database at a1b2c3d4e5f6, this one is at f7a8b9c0d1e2" in again.stderr
    assert current_revision(db_url) == HEAD


def test_an_env_py_that_ignores_the_url_cannot_turn_the_rehearsal_on_the_real_database(pg, db_url, project_copy, workdir):
    env_py = project_copy / "migrations" / "env.py"
    text = env_py.read_text()
    assert 'url = (config.get_main_option("sqlalchemy.url") or "").strip()' in text
    env_py.write_text(text.replace('url = (config.get_main_option("sqlalchemy.url") or "").strip()',
                                   'url = os.environ.get("APP_DATABASE_URL") or (config.get_main_option("sqlalchemy.url") or "").strip()')
                      .replace('shared = config.attributes.get("connection")', "shared = None")  # swrun's own connection ignored too
                      .replace("import sys\n", "import os\nimport sys\n", 1))
    at_head(db_url, target=MIDDLE)
    proc = run_cli("rehearse", "--database-url", db_url, "--project", project_copy / "alembic.ini",
                   env={"APP_DATABASE_URL": db_url.replace("postgresql://", "postgresql+psycopg2://")})  # points at the real database
    assert proc.returncode == 9, proc.stderr
    line = error_line(proc)
    assert "the project's env.py connected to" in line and "swrun_rehearsal_" in line and "nothing was run there" in line
    assert current_revision(db_url) == MIDDLE  # not upgraded, downgraded and upgraded again behind our back
    assert scratch_databases(pg) == []
